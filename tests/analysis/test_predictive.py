"""A run's predictives: the updater read off the model's trace equals the closed form for each draw."""

import numpy as np
import pytest

from bayesmatrix.analysis.predictive import fitted_predictive, loo_pit, posterior_predictive_datatree, thinned_draws
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log
from bayesmatrix.inference.rundir import Run


def icl_log():
    # two episodes of three examples over categories a, b: rows at positions 0..3
    context = np.array([[0, 0], [1, 0], [1, 1], [2, 1], [0, 0], [0, 1], [0, 2], [1, 2]])
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([5.0, 5.0], size=len(context))
    return make_log(
        np.c_[probs, np.zeros(len(context))],
        ["a", "b", OTHER],
        model="test",
        context_counts=np.c_[context, np.zeros(len(context), dtype=int)],
        episode=np.repeat([0, 1], 4),
    )


def icl_run(num_chains=2, num_draws=6):
    import arviz_base as azb

    rng = np.random.default_rng(2)
    m = rng.dirichlet([2.0, 2.0], size=(num_chains, num_draws))
    s = rng.gamma(3.0, size=(num_chains, num_draws))
    tau = rng.gamma(20.0, size=(num_chains, num_draws))
    posterior = {"m": m, "s": s, "alpha": s[..., None] * m, "tau": tau}
    datatree = azb.from_dict({"posterior": posterior}, dims={"m": ["col"], "alpha": ["col"]}, coords={"col": ["a", "b"]})
    return Run(path=None, datatree=datatree, info={"model": "icl", "options": {"model": "icl"}})


def test_thinned_draws_are_evenly_spaced_and_capped():
    run = icl_run(num_chains=2, num_draws=6)
    draws = thinned_draws(run.datatree["posterior"], 4)
    assert draws["s"].shape == (4,) and draws["m"].shape == (4, 2)
    flat = run.datatree["posterior"]["s"].values.reshape(-1)
    np.testing.assert_array_equal(draws["s"], flat[[0, 4, 7, 11]])  # linspace(0, 11, 4) rounded
    assert thinned_draws(run.datatree["posterior"], 100)["s"].shape == (12,)


def test_updater_is_the_exact_bayesian_predictive_of_each_draw():
    ds = icl_log()
    run = icl_run()
    fitted = fitted_predictive(run, ds, num_draws=12)
    draws = thinned_draws(run.datatree["posterior"], 12)
    context = ds["context_counts"].values[:, :2]
    expected = (draws["alpha"][:, None, :] + context[None]) / (draws["s"][:, None, None] + context.sum(1)[None, :, None])
    np.testing.assert_allclose(fitted.updater, expected, rtol=1e-5)
    assert fitted.columns == ["a", "b"]
    assert fitted.posterior_predictive.shape == expected.shape
    np.testing.assert_allclose(fitted.posterior_predictive.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(fitted.observed, ds["probs"].values[:, :2], rtol=1e-12)


def test_posterior_predictive_tree_holds_one_variable_per_column():
    """The PPC tree is the run's stored posterior_predictive group, split by column, draws kept as stored."""
    import arviz_base as azb

    rng = np.random.default_rng(5)
    predictive = rng.dirichlet([2.0, 3.0], size=(1, 5, 8))  # (chain, draw, row, col)
    observed = icl_log()["probs"].values[:, :2]
    run = azb.from_dict({"posterior": {"tau": rng.gamma(2.0, size=(1, 10))}, "observed_data": {"probs": observed}},
                        dims={"probs": ["row", "col"]}, coords={"col": ["a", "b"]})  # fmt: skip
    run["posterior_predictive"] = azb.from_dict({"posterior_predictive": {"probs": predictive}}, dims={"probs": ["row", "col"]},
                                                coords={"col": ["a", "b"], "draw": [0, 2, 4, 7, 9]})["posterior_predictive"]  # fmt: skip
    tree = posterior_predictive_datatree(run)
    assert sorted(tree["posterior_predictive"].data_vars) == ["p(a)", "p(b)"]
    assert tree["posterior_predictive"]["p(a)"].shape == (1, 5, 8)
    np.testing.assert_array_equal(tree["posterior_predictive"]["p(b)"].values, predictive[..., 1])
    np.testing.assert_array_equal(tree["posterior_predictive"]["draw"].values, [0, 2, 4, 7, 9])
    assert tree["observed_data"]["p(b)"].shape == (8,)
    np.testing.assert_array_equal(tree["observed_data"]["p(a)"].values, observed[:, 0])
    assert sorted(posterior_predictive_datatree(run, rows=np.array([1, 3]))["observed_data"]["p(a)"].values) == sorted(observed[[1, 3], 0])


def test_a_run_without_a_stored_predictive_is_refused_by_name():
    with pytest.raises(InputError, match="no posterior_predictive group") as error:
        posterior_predictive_datatree(icl_run().datatree)
    assert error.value.field == "posterior_predictive"


@pytest.mark.parametrize("num_draws", [1, 3])
def test_predictive_draws_follow_their_dirichlet(num_draws):
    """Many predictive draws for one posterior draw: their mean is the updater (z-score by Monte Carlo error)."""
    ds = icl_log()
    run = icl_run(num_chains=1, num_draws=num_draws)
    means = []
    for seed in range(150):
        means.append(fitted_predictive(run, ds, num_draws=num_draws, seed=seed).posterior_predictive)
    draws = np.stack(means)  # (seeds, draws, rows, C)
    updater = fitted_predictive(run, ds, num_draws=num_draws).updater
    mcse = draws.std(axis=0) / np.sqrt(draws.shape[0])
    z = np.abs(draws.mean(axis=0) - updater) / mcse
    assert z.max() < 4.5


# ---------------------------------------------------------------------------
# The posterior_predictive group of a run directory, read by ArviZ as it is
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_runs(tmp_path_factory):
    """An exact-Bayes ICL log fitted by NUTS (2 chains x 60 draws) and SVI, and a counts log fitted through
    the counts' sufficient statistic."""
    from bayesmatrix.data.llmlog import write_log
    from bayesmatrix.inference.fit import FitOptions, fit
    from bayesmatrix.inference.simulate import simulate_icl, simulate_matrix

    folder = tmp_path_factory.mktemp("ppc")
    log = write_log(simulate_icl(10, 6, np.array([2.0, 1.0, 1.0]), tau=50.0, seed=4), folder / "icl.nc")
    counts = write_log(simulate_matrix(40, np.array([3.0, 2.0, 1.0]), counts_per_row=20, seed=2), folder / "counts.nc")
    tiny = dict(num_samples=60, num_warmup=60, num_chains=2, seed=1, progress_bar=False)
    return {
        "nuts": fit(log, FitOptions(model="icl", **tiny), folder / "nuts").path,
        "svi": fit(log, FitOptions(model="icl", method="svi", max_steps=1500, num_samples=120, seed=1,
                                   progress_bar=False), folder / "svi").path,
        "counts": fit(counts, FitOptions(model="matrix", observe=("counts",), **tiny), folder / "counts").path,
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "svi"])
def test_arviz_reads_the_predictive_of_a_run_as_written(fitted_runs, method):
    import arviz_plots as azp
    import arviz_stats as azs
    import xarray as xr

    from bayesmatrix.analysis.plots.backend import pyplot

    pyplot()  # the Agg backend
    with xr.open_datatree(fitted_runs[method] / "posterior.nc") as opened:
        tree = opened.load()
    predictive, observed = tree["posterior_predictive"]["probs"], tree["observed_data"]["probs"]
    assert predictive.dims == ("chain", "draw", *observed.dims)
    assert (predictive["draw"].values == tree["log_likelihood"]["draw"].values).all()  # a draw for every draw
    np.testing.assert_allclose(predictive.sum("col"), 1.0, rtol=1e-4)
    azp.plot_ppc_dist(tree, backend="matplotlib")
    # arviz_stats cannot broadcast a row's weights over its columns by itself (loo_pit's docstring):
    # 0.8 raises an IndexError, 1.x a ValueError
    with pytest.raises((IndexError, ValueError)):
        azs.loo_pit(tree)
    pit = loo_pit(tree)["probs"]
    assert pit.shape == observed.shape and float(pit.min()) >= 0 and float(pit.max()) <= 1 + 1e-9
    # The log was drawn from the model fitted: its LOO-PIT values are about uniform (mean 1/2, sd 1/sqrt(12)).
    values = np.asarray(pit).ravel()
    assert abs(values.mean() - 0.5) < 4 / np.sqrt(12 * values.size) + 0.05
    assert 0.15 < values.std() < 0.45


@pytest.mark.slow
def test_counts_are_predicted_as_whole_numbers_per_row(fitted_runs):
    import xarray as xr

    with xr.open_datatree(fitted_runs["counts"] / "posterior.nc") as opened:
        tree = opened.load()
    predictive, observed = tree["posterior_predictive"]["counts"], tree["observed_data"]["counts"]
    assert predictive.dims == ("chain", "draw", *observed.dims) and predictive.shape[2:] == observed.shape
    assert np.issubdtype(predictive.dtype, np.integer)
    np.testing.assert_array_equal(predictive.sum("col"), observed.sum("col").broadcast_like(predictive.sum("col")))


def test_a_large_predictive_keeps_evenly_spaced_draws_of_each_chain():
    import arviz_base as azb
    import numpyro
    import numpyro.distributions as dist

    from bayesmatrix.inference.fit import add_posterior_predictive

    def normal_rows(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("row", 5):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    mu = np.arange(2 * 40, dtype=float).reshape(2, 40) * 100.0  # each draw's mean tells which draw it is
    tree = azb.from_dict({"posterior": {"mu": mu}, "observed_data": {"y": np.zeros(5)}}, dims={"y": ["row"]})
    add_posterior_predictive(tree, normal_rows, {"y": np.zeros(5)}, dims={"y": ["row"]}, max_values=2 * 10 * 5)
    predictive = tree["posterior_predictive"]["y"]
    assert predictive.shape == (2, 10, 5) and predictive.dims == ("chain", "draw", "row")
    np.testing.assert_array_equal(predictive["draw"], np.linspace(0, 39, 10).round().astype(int))
    # each kept draw is predicted from its own posterior draw
    assert np.abs(predictive.mean("row") - mu[:, predictive["draw"].values]).max() < 5


def test_loo_pit_pairs_the_kept_draws_with_their_own_log_likelihoods():
    """A thinned predictive (MAX_PREDICTIVE_DRAWS) against every draw's log-likelihood: LOO-PIT uses the kept ones.
    An observation far above the rest is above (nearly) every predictive draw: its PIT is near 1."""
    import arviz_base as azb
    import numpyro
    import numpyro.distributions as dist
    from scipy import stats

    from bayesmatrix.inference.fit import add_posterior_predictive

    def normal_rows(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("row", 6):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    rng = np.random.default_rng(3)
    y = np.array([-0.5, 0.0, 0.2, 0.4, 0.9, 6.0])
    mu = rng.normal(y.mean(), 1 / np.sqrt(6), size=(2, 1000))  # the posterior of mu, flat prior
    tree = azb.from_dict({"posterior": {"mu": mu}, "log_likelihood": {"y": stats.norm(mu[..., None], 1.0).logpdf(y)},
                          "observed_data": {"y": y}}, dims={"y": ["row"]})  # fmt: skip
    add_posterior_predictive(tree, normal_rows, {"y": y}, dims={"y": ["row"]}, max_draws=400)
    assert tree["posterior_predictive"]["y"].shape == (2, 200, 6)
    pit = loo_pit(tree)["y"]
    assert pit.shape == (6,) and 0 <= float(pit.min()) and float(pit.max()) <= 1 + 1e-9
    assert float(pit[-1]) > 0.95 and 0.05 < float(pit[2]) < 0.95
