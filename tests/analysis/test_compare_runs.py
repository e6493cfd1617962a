"""compare refuses what LOO cannot compare: runs of other observations, other logs, other columns, one run twice."""

import numpy as np
import pytest

from bayesmatrix.analysis.compare import compare_runs
from bayesmatrix.data.errors import InputError
from bayesmatrix.inference.rundir import write_run_dir


def a_run(folder, **info):
    import arviz_base as azb

    rng = np.random.default_rng(0)
    tree = azb.from_dict({"posterior": {"s": rng.gamma(2.0, size=(2, 20))},
                          "log_likelihood": {"probs": rng.normal(size=(2, 20, 5))}})  # fmt: skip
    base = {"model": "matrix", "method": "nuts", "data_file": "log.nc", "data_sha256": "abc",
            "columns": ["a", "b"], "options": {"observe": ["probs"]}}  # fmt: skip
    return write_run_dir(folder, tree, {**base, **info})


@pytest.mark.parametrize(
    "other, message",
    [
        ({"options": {"observe": ["counts"]}}, "observes counts"),
        ({"data_sha256": "def", "data_file": "other.nc"}, "was fitted to 'other.nc'"),
        ({"columns": ["a", "b", "<other>"]}, "over columns"),
    ],
)
def test_runs_of_other_observations_are_refused(tmp_path, other, message):
    first = a_run(tmp_path / "first")
    second = a_run(tmp_path / "second", **other)
    with pytest.raises(InputError, match=message):
        compare_runs([first, second])


def test_the_same_run_twice_is_refused(tmp_path):
    run = a_run(tmp_path / "run")
    with pytest.raises(InputError, match="given twice"):
        compare_runs([run, tmp_path / "." / "run"])


def comparison_table(diffs, dses):
    import pandas as pd

    labels = ["best"] + [f"run{i}" for i in range(len(diffs))]
    return pd.DataFrame({"elpd_diff": [0.0, *diffs], "dse": [0.0, *dses]}, index=labels)


def test_verdict_names_every_run_within_two_standard_errors():
    from bayesmatrix.analysis.compare import verdict

    text = verdict(comparison_table([11.4, 30.0, 3.0], [5.7, 4.0, 2.0]))
    assert "not distinguishable" in text and "run0 (11.4 ± 5.7)" in text and "run2 (3.0 ± 2.0)" in text
    assert "run1" not in text and text.startswith("LOO ranks best first")


def test_verdict_prefers_only_beyond_two_standard_errors():
    from bayesmatrix.analysis.compare import verdict

    text = verdict(comparison_table([11.5, 40.0], [5.7, 4.0]))
    assert text.startswith("LOO prefers best") and "not distinguishable" not in text
    assert "weak preference" in text and "run0" in text  # 2.02 standard errors: preferred, but only just
    assert "weak" not in verdict(comparison_table([40.0], [4.0]))  # ten standard errors


def test_a_weak_preference_names_what_it_does_not_rule_out():
    from bayesmatrix.analysis.compare import verdict

    text = verdict(comparison_table([11.4], [5.6]), descriptions={"run0": "no updating"})
    assert "2.04 standard errors" in text and "run0 = no updating is not ruled out" in text


def test_rows_whose_likelihood_does_not_vary_get_their_exact_loo(tmp_path):
    """A row with the same log-likelihood under every draw (counts with no token on the categories) has
    uniform importance weights, so its leave-one-out elpd is that value; PSIS cannot fit a tail to it
    (ArviZ raises), so compare gives it k 0 and smooths the other rows as it would without it."""
    import arviz_base as azb
    import arviz_stats as azs

    from bayesmatrix.analysis.compare import loo_of

    rng = np.random.default_rng(1)
    mu = rng.normal(0.0, 0.2, size=(2, 400))
    y = rng.normal(size=12)
    log_lik = -0.5 * (y - mu[..., None]) ** 2
    constant = [2, 9]
    log_lik[..., constant] = [-0.0, -1.5]

    def tree(values):
        return azb.from_dict({"posterior": {"mu": mu}, "log_likelihood": {"probs": values}},
                             dims={"probs": ["row"]})  # fmt: skip

    with pytest.raises(ValueError, match="tail values"):
        azs.loo(tree(log_lik), pointwise=True)
    full = loo_of(tree(log_lik))
    alone = azs.loo(tree(np.delete(log_lik, constant, axis=2)), pointwise=True)
    elpd_i, k = np.asarray(full.elpd_i), np.asarray(full.pareto_k)
    np.testing.assert_allclose(elpd_i[constant], [0.0, -1.5], atol=1e-12)
    np.testing.assert_array_equal(k[constant], 0.0)
    np.testing.assert_allclose(np.delete(elpd_i, constant), np.asarray(alone.elpd_i), rtol=1e-12)
    np.testing.assert_allclose(np.delete(k, constant), np.asarray(alone.pareto_k), rtol=1e-12)
    assert full.elpd == pytest.approx(alone.elpd - 1.5, abs=1e-9)
    assert full.p == pytest.approx(alone.p, abs=1e-9)

    # the same up to float32 rounding: log(0.5) from different draws differs in its last bit
    rounded = log_lik.astype(np.float32)
    rounded[..., constant] = np.float32(np.log(0.5))
    rounded[:, ::7, constant[0]] = np.nextafter(np.float32(np.log(0.5)), np.float32(0))
    tied = loo_of(tree(rounded))
    assert np.isfinite(tied.elpd)
    np.testing.assert_allclose(np.asarray(tied.elpd_i)[constant], np.log(0.5), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(tied.pareto_k)[constant], 0.0)

    runs = []
    for index, shift in enumerate((0.0, 0.3)):
        values = -0.5 * (y - mu[..., None] - shift) ** 2
        values[..., constant] = -1.5
        shared = {"model": "matrix", "method": "nuts", "data_file": "log.nc", "data_sha256": "abc",
                  "columns": ["a", "b"], "options": {"observe": ["probs"]}}  # fmt: skip
        runs.append(write_run_dir(tmp_path / f"run{index}", tree(values), shared))
    comparison = compare_runs(runs)
    assert comparison.table.index[0].endswith("[run0]")
    assert not comparison.warnings
