"""Sufficient statistics of Dirichlet-multinomial counts (models.sufficient) against the per-row likelihood."""

import jax
import numpy as np
import numpyro.distributions as dist
import pytest

from bayesmatrix.models.sufficient import CountStatistics, count_statistics, dirmult_log_likelihood


@jax.jit  # one compilation instead of dispatching each small operation eagerly
def direct_log_likelihood(alpha, counts):
    """The sum over rows of NumPyro's own DirichletMultinomial log pmf."""
    return dist.DirichletMultinomial(alpha, total_count=counts.sum(axis=1)).log_prob(counts).sum()


def ragged_counts(rng, rows, cols, zero_rows=True):
    """Counts with ragged totals (0 to 60 per row), many zero cells and, optionally, rows of all zeros."""
    totals = rng.integers(0 if zero_rows else 1, 60, size=rows)
    probs = rng.dirichlet(np.full(cols, 0.3), size=rows)
    return np.stack([rng.multinomial(n, p) for n, p in zip(totals, probs)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_sum_of_per_row_log_pmfs_in_float64(seed):
    rng = np.random.default_rng(seed)
    counts = ragged_counts(rng, rows=300, cols=7)
    assert (counts == 0).mean() > 0.3 and (counts.sum(axis=1) == 0).any()
    statistics = count_statistics(counts)
    with jax.enable_x64(True):
        for alpha in (rng.gamma(1.0, 1.0, size=7), np.full(7, 1e-3), np.full(7, 40.0)):
            expected = float(direct_log_likelihood(alpha, counts))
            got = float(jax.jit(dirmult_log_likelihood)(alpha, statistics))
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_batched_alpha_and_float32():
    rng = np.random.default_rng(3)
    counts = ragged_counts(rng, rows=200, cols=4, zero_rows=False)
    statistics = count_statistics(counts)
    alphas = rng.gamma(2.0, 1.0, size=(5, 4))
    got = np.asarray(dirmult_log_likelihood(alphas, statistics))
    assert got.shape == (5,) and got.dtype == np.float32
    expected = np.array([float(direct_log_likelihood(alpha, counts)) for alpha in alphas])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gradient_matches_the_per_row_gradient():
    rng = np.random.default_rng(4)
    counts = ragged_counts(rng, rows=100, cols=5)
    statistics = count_statistics(counts)
    alpha = rng.gamma(2.0, 1.0, size=5)
    with jax.enable_x64(True):
        got = jax.jit(jax.grad(lambda a: dirmult_log_likelihood(a, statistics)))(alpha)
        expected = jax.jit(jax.grad(lambda a: direct_log_likelihood(a, counts)))(alpha)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_statistic_is_histograms_of_counts_and_totals():
    counts = np.array([[0, 2], [1, 0], [3, 1]])
    statistics = count_statistics(counts)
    # column 0 has counts 0, 1, 3: exceeding 0, 1, 2 -> 2, 1, 1; column 1 has 2, 0, 1 -> 2, 1, 0
    np.testing.assert_array_equal(statistics.exceed, [[2, 1, 1], [2, 1, 0]])
    # totals 2, 1, 4: exceeding 0..3 -> 3, 2, 1, 1
    np.testing.assert_array_equal(statistics.total_exceed, [3, 2, 1, 1])
    expected = np.log(1) + np.log(1) + np.log(4)  # 2!/(0!2!), 1!/(1!0!), 4!/(3!1!)
    assert float(statistics.log_coefficient) == pytest.approx(expected, rel=1e-12)


def test_size_does_not_grow_with_rows():
    rng = np.random.default_rng(5)
    small = count_statistics(rng.multinomial(20, [0.5, 0.3, 0.2], size=100))
    large = count_statistics(rng.multinomial(20, [0.5, 0.3, 0.2], size=100_000))
    assert isinstance(large, CountStatistics)
    assert large.exceed.shape[0] == 3 and large.exceed.shape[1] <= 20 and large.total_exceed.shape == (20,)
    assert large.exceed.size <= small.exceed.size + 3 * 20


@pytest.mark.parametrize(
    "counts, message",
    [
        (np.array([[1, -1]]), "non-negative"),
        (np.array([[0.5, 1.0]]), "whole numbers"),
        (np.array([1, 2]), "rows, cols"),
    ],
)
def test_bad_counts_are_refused(counts, message):
    with pytest.raises(ValueError, match=message):
        count_statistics(counts)


# ----------------------------------------------------------------------------- the matrix model fitted through it


@pytest.fixture(scope="module")
def counts_log():
    from bayesmatrix.inference.simulate import simulate_matrix

    return simulate_matrix(300, np.array([2.0, 1.0, 0.5, 0.5]), counts_per_row=20, seed=0)


def test_prepare_fits_counts_alone_through_the_statistic(counts_log):
    from bayesmatrix.inference.prepare import prepare

    counts_only = prepare(counts_log, "matrix", observe=("counts",))
    assert "counts" in counts_only.kwargs and "counts" not in counts_only.fit_kwargs
    np.testing.assert_array_equal(
        counts_only.fit_kwargs["count_statistics"].exceed, count_statistics(counts_only.kwargs["counts"]).exceed
    )
    for observe in (("probs",), ("probs", "counts")):
        other = prepare(counts_log, "matrix", observe=observe)
        assert other.fit_kwargs is other.kwargs


def test_matrix_log_density_is_the_same_with_the_statistic(counts_log):
    from numpyro.infer.util import log_density

    from bayesmatrix.inference.prepare import prepare
    from bayesmatrix.models import matrix

    prepared = prepare(counts_log, "matrix", observe=("counts",))
    rng = np.random.default_rng(0)
    for _ in range(3):
        params = {"m": rng.dirichlet(np.ones(4)), "s": rng.lognormal(1.0, 1.0)}
        per_row, _ = log_density(matrix, (), prepared.kwargs, params)
        sufficient, _ = log_density(matrix, (), prepared.fit_kwargs, params)
        assert float(sufficient) == pytest.approx(float(per_row), rel=1e-5)


def test_the_statistic_stands_for_counts_alone(counts_log):
    from numpyro import handlers

    from bayesmatrix.inference.prepare import prepare
    from bayesmatrix.models import matrix

    statistics = prepare(counts_log, "matrix", observe=("counts",)).fit_kwargs["count_statistics"]
    with pytest.raises(ValueError, match="observe=\\('counts',\\)"):
        handlers.seed(matrix, 0)(num_rows=300, num_cols=4, observe=("probs",), count_statistics=statistics)
    with pytest.raises(ValueError, match="not both"):
        handlers.seed(matrix, 0)(
            num_rows=300, num_cols=4, observe=("counts",), counts=np.zeros((300, 4), int), count_statistics=statistics
        )


@pytest.mark.slow
def test_nuts_through_the_statistic_gives_the_pointwise_log_likelihood_for_loo(counts_log):
    """The posterior is the same by the log-density test above; here the run directory's groups."""
    import arviz_stats as azs
    from numpyro.infer import log_likelihood

    from bayesmatrix.inference.nuts import nuts
    from bayesmatrix.inference.prepare import prepare
    from bayesmatrix.models import matrix

    prepared = prepare(counts_log, "matrix", observe=("counts",))
    result = nuts(matrix, prepared.fit_kwargs, num_samples=200, num_warmup=200, num_chains=2, coords=prepared.coords,
                  dims=prepared.dims, progress_bar=False, pointwise_kwargs=prepared.kwargs)  # fmt: skip
    tree = result.datatree
    assert tree["log_likelihood"]["counts"].dims == ("chain", "draw", "row")
    assert list(tree["observed_data"].data_vars) == ["counts"]
    np.testing.assert_array_equal(tree["observed_data"]["counts"].values, prepared.kwargs["counts"])
    samples = result.mcmc.get_samples(group_by_chain=True)
    expected = log_likelihood(matrix, samples, batch_ndims=2, **prepared.kwargs)["counts"]
    np.testing.assert_allclose(tree["log_likelihood"]["counts"].values, expected, rtol=1e-6)
    assert np.isfinite(azs.loo(tree).elpd)


def test_fit_observe_counts_from_the_command_line_and_read_back(counts_log, tmp_path, capsys):
    """``fit --observe counts`` reaches the statistic; run.json holds the option and reading the run back
    with it rebuilds the same input (the statistic to fit, per-row counts for LOO)."""
    from bayesmatrix.cli import main
    from bayesmatrix.data.llmlog import read_log, write_log
    from bayesmatrix.inference.fit import FitOptions, prepare_for
    from bayesmatrix.inference.rundir import read_run

    log = write_log(counts_log, tmp_path / "counts.nc")
    out = tmp_path / "run"
    status = main(["fit", str(log), "--model", "matrix", "--observe", "counts", "--num-samples", "100",
                   "--num-warmup", "100", "--num-chains", "1", "--no-plots", "--quiet", "--out", str(out)])  # fmt: skip
    capsys.readouterr()
    assert status == 0
    run = read_run(out)
    assert run.info["options"]["observe"] == ["counts"]
    read_back = prepare_for(read_log(log), FitOptions(**run.info["options"]))
    assert read_back.observed == ("counts",) and "count_statistics" in read_back.fit_kwargs
    np.testing.assert_array_equal(read_back.fit_kwargs["count_statistics"].exceed,
                                  count_statistics(counts_log["counts"].values[:, :-1]).exceed)  # fmt: skip
    assert run.datatree["log_likelihood"]["counts"].dims == ("chain", "draw", "row")
    assert "probs" not in run.datatree["observed_data"]
    # a run written before the option existed reads back as observing probs, as it was fitted
    legacy = {name: value for name, value in run.info["options"].items() if name != "observe"}
    assert prepare_for(read_log(log), FitOptions(**legacy)).observed == ("probs",)


# ----------------------------------------------------------------------------- the benchmark scripts, tiny settings


@pytest.mark.long  # two benchmark scripts whole: make test-long
def test_sufficient_and_overhead_benchmarks_run_with_tiny_settings(capsys):
    from benchmarks import overhead, sufficient

    results = sufficient.main(sufficient.parse_args(["--rows", "100", "2000", "--cols", "4", "--per-row", "10",
                                                     "--num-samples", "50", "--num-warmup", "50",
                                                     "--gradient-repeats", "2", "--no-x64",
                                                     "--no-discard-first", "--step-seeds", "0"]))  # fmt: skip
    assert [r["rows"] for r in results] == [100, 2000]
    assert all(r["gradients"] > 0 and r["nuts"] > 0 and r["statistic_size"] <= 4 * 10 + 10 for r in results)
    rows = overhead.main(overhead.parse_args(["--rows", "50", "--cols", "3", "--num-samples", "50", "--num-warmup",
                                              "50", "--gradient-repeats", "5", "--runs", "2"]))  # fmt: skip
    assert len(rows) == 4 and all(row[7] > 0 for row in rows)  # overhead ratios: numpyro and compiled, two models
    printed = capsys.readouterr().out
    assert "NUTS without compilation" in printed and "overhead incl. compile" in printed


@pytest.mark.long  # a benchmark script whole: make test-long
def test_peers_benchmark_runs_our_side_with_tiny_settings(capsys):
    from benchmarks import peers

    results = peers.main(peers.parse_args(["--rows", "60", "--cols", "3", "--num-samples", "100", "--num-warmup", "100",
                                           "--num-chains", "2", "--samplers", "numpyro-sufficient"]))  # fmt: skip
    ours = results["numpyro-sufficient"]
    assert ours["ess"] > 20 and ours["sampling"] > 0 and ours["divergences"] == 0
    assert "| numpyro-sufficient" in capsys.readouterr().out


def test_the_compile_clock_counts_only_what_falls_in_its_window():
    from benchmarks import CompileClock

    clock = CompileClock()
    clock._intervals = [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (9.0, 12.0)]  # overlapping, apart, after
    assert clock.seconds() == 7.0
    assert clock.seconds(1.5, 5.5) == 2.0  # 1.5 to 3, and 5 to 5.5
    assert clock.seconds(6.5, 8.0) == 0.0  # nothing in the window, none of what comes after it
