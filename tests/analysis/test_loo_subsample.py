"""Subsampled PSIS-LOO (analysis.loo) against full PSIS-LOO on the same draws, at 10,000 rows."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmatrix.analysis.loo import difference_estimate, loo_subsample, loo_tree, pointwise_log_likelihood
from bayesmatrix.models import matrix

NUM_ROWS, NUM_COLS = 10_000, 5


@pytest.fixture(scope="module")
def counts_and_draws():
    """Counts from the matrix model, and 2 x 40 draws near its posterior (for LOO, any draws serve)."""
    rng = np.random.default_rng(0)
    m_true, s_true = np.array([0.4, 0.25, 0.15, 0.12, 0.08]), 6.0
    total = rng.integers(5, 30, size=NUM_ROWS)
    counts = np.stack([rng.multinomial(n, p) for n, p in zip(total, rng.dirichlet(s_true * m_true, size=NUM_ROWS))])
    m = rng.dirichlet(counts.sum(axis=0) / 4 + 1, size=(2, 40)).astype(np.float32)
    s = (s_true * np.exp(0.03 * rng.standard_normal((2, 40)))).astype(np.float32)
    kwargs = {"num_rows": NUM_ROWS, "num_cols": NUM_COLS, "observe": ("counts",), "counts": counts,
              "total_count": total}  # fmt: skip
    return kwargs, {"m": m, "s": s}


def full_loo(kwargs, draws):
    import warnings

    import arviz_stats as azs

    pointwise = pointwise_log_likelihood(matrix, draws, {}, kwargs, NUM_ROWS, np.arange(NUM_ROWS), ("counts",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a few rows past the Pareto-k threshold of 80 draws
        return azs.loo(loo_tree(pointwise, draws), pointwise=True)


@pytest.mark.slow  # full PSIS-LOO of 10,000 rows: about 4 s idle, 10 s on a loaded machine
def test_subsample_agrees_with_full_loo_within_its_stated_error(counts_and_draws):
    kwargs, draws = counts_and_draws
    full = full_loo(kwargs, draws)
    for seed in (0, 1):
        sub = loo_subsample(matrix, draws, kwargs, num_rows=NUM_ROWS, observed=("counts",), subsample_size=400,
                            seed=seed)  # fmt: skip
        assert sub.rows.size == 400 and sub.subsampling_se > 0
        # The surrogate alone is off by far more than the stated error: the correction does the work.
        assert abs(sub.surrogate.sum() - full.elpd) > 5 * sub.subsampling_se
        assert abs(sub.elpd - full.elpd) / sub.subsampling_se < 3.5
        # The standard error over rows, estimated from the subsample, is full LOO's to a few percent.
        assert sub.se == pytest.approx(full.se, rel=0.1)
        np.testing.assert_allclose(sub.elpd_i, np.asarray(full.elpd_i)[sub.rows], rtol=1e-5)


def test_every_row_is_full_loo(counts_and_draws):
    kwargs, draws = counts_and_draws
    small = {**kwargs, "num_rows": 300, "counts": kwargs["counts"][:300], "total_count": kwargs["total_count"][:300]}
    sub = loo_subsample(matrix, draws, small, num_rows=300, observed=("counts",), subsample_size=10_000)
    assert sub.rows.size == 300 and sub.subsampling_se == 0
    assert sub.elpd == pytest.approx(sub.elpd_i.sum())


def test_difference_estimate_is_exact_for_an_exact_surrogate():
    values = np.random.default_rng(1).normal(-3.0, 1.0, size=1000)
    rows = np.arange(0, 1000, 10)
    elpd, se, subsampling_se = difference_estimate(values, values[rows], rows)
    assert elpd == pytest.approx(values.sum())
    assert subsampling_se == 0
    assert se == pytest.approx(np.sqrt(values.size * values.var()), rel=1e-9)


def test_a_run_without_log_likelihood_needs_the_log(tmp_path):
    import arviz_base as azb

    from bayesmatrix.analysis.compare import compare_runs
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.inference.rundir import write_run_dir

    info = {"model": "matrix", "method": "nuts", "data_file": "log.nc", "data_sha256": "abc", "columns": ["a", "b"],
            "options": {"observe": ["counts"]}, "log_likelihood_stored": False}  # fmt: skip
    tree = azb.from_dict({"posterior": {"s": np.random.default_rng(0).gamma(2.0, size=(2, 20))}})
    runs = [write_run_dir(tmp_path / name, tree, info) for name in ("first", "second")]
    with pytest.raises(InputError, match="stores no pointwise log-likelihood") as raised:
        compare_runs(runs)
    assert raised.value.field == "log"
