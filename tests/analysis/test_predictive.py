"""A run's predictives: the updater read off the model's trace equals the closed form for each draw."""

import numpy as np
import pytest

from bayesmatrix.analysis.predictive import fitted_predictive, posterior_predictive_datatree, thinned_draws
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
    fitted = fitted_predictive(icl_run(), icl_log(), num_draws=5)
    tree = posterior_predictive_datatree(fitted)
    assert sorted(tree["posterior_predictive"].data_vars) == ["p(a)", "p(b)"]
    assert tree["posterior_predictive"]["p(a)"].shape == (1, 5, 8)
    assert tree["observed_data"]["p(b)"].shape == (8,)


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
