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
