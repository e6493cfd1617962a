"""NUTS compiled as one loop (``fit --sampler compiled``) against closed forms and NumPyro's NUTS.

Each posterior is known exactly (a correlated Gaussian, a Dirichlet after
multinomial counts) or sampled by NumPyro's NUTS on the same model; means and
variances are compared with tolerances scaled by Monte Carlo standard errors
(ArviZ's bulk ESS).
"""

import json

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayesmatrix.data.errors import InputError
from bayesmatrix.inference.compiled_nuts import _chunk_steps, compiled_nuts

COVARIANCE = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 0.01]])
MEAN = np.array([1.0, -2.0, 0.5])
PRIOR = np.array([2.0, 1.0, 1.0, 0.5])
COUNTS = np.array([12, 30, 7, 1])


def gaussian():
    """A correlated, badly scaled Gaussian (sd 1 and 0.1; correlation 0.9): the mass matrix must adapt."""
    numpyro.sample("x", dist.MultivariateNormal(MEAN, COVARIANCE))


def dirichlet_multinomial(counts=None):
    """p ~ Dirichlet(PRIOR), counts ~ Multinomial(n, p): the posterior is Dirichlet(PRIOR + counts)."""
    p = numpyro.sample("p", dist.Dirichlet(PRIOR))
    numpyro.sample("counts", dist.Multinomial(int(COUNTS.sum()), p), obs=counts)


def z_scores(draws: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chain, draw, k) draws against the exact mean and variance: z of the sample mean (MC error sd/sqrt(ESS))
    and of the sample variance (MC error of a variance, about var sqrt(2/ESS), for a near-Gaussian marginal)."""
    ess = _ess(draws)
    flat = draws.reshape(-1, draws.shape[-1])
    z_mean = (flat.mean(0) - mean) / np.sqrt(variance / ess)
    z_var = (flat.var(0) - variance) / (variance * np.sqrt(2 / ess))
    return z_mean, z_var


def _ess(draws: np.ndarray) -> np.ndarray:
    import arviz_stats as azs

    return np.array([float(azs.ess(draws[..., k], method="bulk")) for k in range(draws.shape[-1])])


@pytest.fixture(scope="module")
def gaussian_run():
    return compiled_nuts(gaussian, {}, num_samples=2000, num_warmup=500, num_chains=2, seed=3, progress_bar=False)


def test_a_correlated_gaussian_is_sampled_at_its_moments(gaussian_run):
    draws = np.asarray(gaussian_run.datatree["posterior"]["x"])
    assert draws.shape == (2, 2000, 3)
    z_mean, z_var = z_scores(draws, MEAN, np.diag(COVARIANCE))
    assert np.abs(z_mean).max() < 4.5, z_mean
    assert np.abs(z_var).max() < 4.5, z_var
    correlation = np.corrcoef(draws.reshape(-1, 3).T)[0, 1]
    assert abs(correlation - 0.9) < 0.03
    assert gaussian_run.num_divergences == 0
    stats = gaussian_run.datatree["sample_stats"]
    # NUTS's acceptance statistic sits near the target the step size was adapted to (0.9)
    assert 0.8 < float(stats["acceptance_rate"].mean()) < 0.97
    # A tree of depth d has 2 ** (d - 1) - 1 steps before its last doubling, and that doubling stops within a
    # block (BLOCK_STEPS) of its first U-turn or divergence: every step counted, few wasted.
    steps, depth = np.asarray(stats["n_steps"]), np.asarray(stats["tree_depth"])
    assert (steps <= 2**depth - 1).all() and (steps >= 2 ** (depth - 1)).all()
    assert (steps < 2**depth - 1).any()  # some trees stopped inside their last doubling
    assert gaussian_run.num_gradient_evals == int(stats["n_steps"].sum())


def test_a_dirichlet_posterior_through_the_simplex_transform():
    run = compiled_nuts(dirichlet_multinomial, {"counts": COUNTS}, num_samples=1500, num_warmup=500, num_chains=2,
                        seed=4, progress_bar=False)  # fmt: skip
    posterior = PRIOR + COUNTS
    total = posterior.sum()
    mean = posterior / total
    variance = mean * (1 - mean) / (total + 1)
    draws = np.asarray(run.datatree["posterior"]["p"])
    np.testing.assert_allclose(draws.sum(-1), 1.0, rtol=1e-5)
    z_mean, z_var = z_scores(draws, mean, variance)
    assert np.abs(z_mean).max() < 4.5, z_mean
    # the smallest component's marginal is skewed (Beta(1.5, 54.5)): its variance's error is wider than 2/ESS
    assert np.abs(z_var[:3]).max() < 4.5, z_var
    assert abs(draws[..., 3].var() / variance[3] - 1) < 0.25
    # the log-likelihood and observed data are NumPyro's, as from_numpyro gives them
    log_likelihood = run.datatree["log_likelihood"]["counts"]
    assert log_likelihood.shape == (2, 1500)
    expected = dist.Multinomial(int(COUNTS.sum()), draws).log_prob(COUNTS)
    np.testing.assert_allclose(log_likelihood, expected, rtol=1e-4)
    np.testing.assert_array_equal(run.datatree["observed_data"]["counts"], COUNTS)


def test_the_same_seed_gives_the_same_draws():
    first, second = (compiled_nuts(dirichlet_multinomial, {"counts": COUNTS}, num_samples=50, num_warmup=50,
                                   num_chains=2, seed=9, progress_bar=False) for _ in range(2))  # fmt: skip
    np.testing.assert_array_equal(first.datatree["posterior"]["p"], second.datatree["posterior"]["p"])
    other = compiled_nuts(dirichlet_multinomial, {"counts": COUNTS}, num_samples=50, num_warmup=50, num_chains=2,
                          seed=10, progress_bar=False)  # fmt: skip
    assert not np.array_equal(first.datatree["posterior"]["p"], other.datatree["posterior"]["p"])
    # the chains start and move apart
    p = np.asarray(first.datatree["posterior"]["p"])
    assert not np.array_equal(p[0], p[1])


@pytest.mark.parametrize(("num_warmup", "total", "chunk"), [(1000, 2000, 500), (500, 2500, 500), (150, 250, 150),
                                                           (60, 120, 60), (997, 1997, 500), (0, 30, 30), (5, 8, 8)])  # fmt: skip
def test_warmup_ends_where_a_compiled_call_ends_when_it_can(num_warmup, total, chunk):
    assert _chunk_steps(num_warmup, total) == chunk


@pytest.mark.slow
def test_the_matrix_model_agrees_with_numpyros_nuts():
    """The sufficient-statistic matrix model (the sampler-overhead benchmark's), by both samplers."""
    from bayesmatrix.inference.nuts import nuts
    from bayesmatrix.inference.simulate import simulate_matrix
    from bayesmatrix.models import matrix
    from bayesmatrix.models.sufficient import count_statistics

    log = simulate_matrix(300, np.array([3.0, 2.0, 1.0, 1.0]), counts_per_row=30, seed=5)
    counts = log["counts"].values[:, :4]  # the four categories (the last column is <other>, never drawn)
    assert counts.sum() == 300 * 30
    kwargs = {"num_rows": 300, "num_cols": 4, "observe": ("counts",), "count_statistics": count_statistics(counts)}
    runs = [sampler(matrix, kwargs, num_samples=1000, num_warmup=500, num_chains=2, seed=2, progress_bar=False,
                    log_likelihood=False) for sampler in (compiled_nuts, nuts)]  # fmt: skip
    for site in ("s", "m"):
        ours, theirs = (np.asarray(run.datatree["posterior"][site]) for run in runs)
        ours, theirs = (a.reshape(2, 1000, -1) for a in (ours, theirs))
        error = np.sqrt(ours.reshape(-1, ours.shape[-1]).var(0) / _ess(ours)
                        + theirs.reshape(-1, theirs.shape[-1]).var(0) / _ess(theirs))  # fmt: skip
        z = (ours.reshape(-1, ours.shape[-1]).mean(0) - theirs.reshape(-1, theirs.shape[-1]).mean(0)) / error
        assert np.abs(z).max() < 4.5, (site, z)
    # the same work per draw, give or take: the sub-trees taken past a U-turn are few
    steps = [run.num_gradient_evals for run in runs]
    assert 0.8 < steps[0] / steps[1] < 1.3, steps


@pytest.mark.slow
def test_fit_with_the_compiled_sampler_writes_the_same_run_directory(tmp_path):
    import xarray as xr

    from bayesmatrix.analysis.diagnostics import diagnose_datatree
    from bayesmatrix.data.llmlog import write_log
    from bayesmatrix.inference.fit import FitOptions, fit
    from bayesmatrix.inference.simulate import simulate_matrix

    log = write_log(simulate_matrix(60, np.array([3.0, 2.0, 1.0]), counts_per_row=20, seed=2), tmp_path / "m.nc")
    tiny = dict(model="matrix", observe=("counts",), num_samples=500, num_warmup=300, num_chains=2, seed=1,
                progress_bar=False)  # fmt: skip
    paths = {sampler: fit(log, FitOptions(sampler=sampler, **tiny), tmp_path / sampler).path
             for sampler in ("compiled", "numpyro")}  # fmt: skip
    trees = {}
    for sampler, path in paths.items():
        with xr.open_datatree(path / "posterior.nc") as opened:
            trees[sampler] = opened.load()
    ours, theirs = trees["compiled"], trees["numpyro"]
    assert set(ours.children) == set(theirs.children)
    for group in ("posterior", "log_likelihood", "observed_data", "posterior_predictive"):
        assert set(ours[group].data_vars) == set(theirs[group].data_vars), group
        for name in ours[group].data_vars:
            assert ours[group][name].dims == theirs[group][name].dims, (group, name)
            assert ours[group][name].shape == theirs[group][name].shape, (group, name)
    assert set(theirs["sample_stats"].data_vars) <= set(ours["sample_stats"].data_vars)
    info = json.loads((paths["compiled"] / "run.json").read_text())
    assert info["options"]["sampler"] == "compiled" and info["num_gradient_evals"] > 0
    diagnosis = diagnose_datatree(ours, "nuts")
    assert not diagnosis.flags, diagnosis.flags


def test_the_compiled_sampler_is_a_nuts_sampler():
    from bayesmatrix.inference.fit import FitOptions

    with pytest.raises(InputError, match="nuts method") as error:
        FitOptions(model="matrix", method="svi", sampler="compiled")
    assert error.value.field == "sampler"
    with pytest.raises(InputError, match="unknown sampler"):
        FitOptions(model="matrix", sampler="stan")


TRANSITIONS = 4


@pytest.mark.parametrize(("step_size", "deepest"), [(0.1, 6), (0.25, 5), (0.8, 4)])
def test_one_transition_from_the_target_stays_on_the_target(step_size, deepest):
    """The kernel leaves a non-Gaussian target invariant: 4,000 chains, each started at an exact draw of a
    banana (x ~ N(0, 1), y | x ~ N(x^2 / 2, 0.5^2)), TRANSITIONS transitions each with a fixed step size
    and mass matrix; the points they move to are again draws of the target (Kolmogorov-Smirnov per margin
    and of y - x^2 / 2, which is N(0, 0.5^2) only on the target). Moving to every valid new sub-tree, in
    place of the biased progressive choice between the tree and it, fails this test (tried); subtler
    errors may not, which the closed-form and NumPyro comparisons above cover in part."""
    import jax
    import jax.numpy as jnp
    from scipy import stats

    from bayesmatrix.inference.compiled_nuts import nuts_transition

    def potential(z):
        x, y = z
        return 0.5 * x**2 + 0.5 * ((y - 0.5 * x**2) / 0.5) ** 2

    rng = np.random.default_rng(11)
    x = rng.normal(size=4000)
    start = np.stack([x, rng.normal(0.5 * x**2, 0.5)], axis=1).astype(np.float32)
    transition = nuts_transition(potential)
    inverse_mass = jnp.array([1.0, 0.7])

    @jax.jit
    def move(keys, z):
        def one(keys, z):
            def step(z, key):
                potential_energy, grad = jax.value_and_grad(potential)(z)
                t = transition(key, z, potential_energy, grad, step_size, inverse_mass, 1 / jnp.sqrt(inverse_mass))
                return t.z, t.tree_depth

            return jax.lax.scan(step, z, keys)

        return jax.vmap(one)(keys, z)

    z, depths = move(jax.random.split(jax.random.PRNGKey(2), (len(start), TRANSITIONS)), jnp.asarray(start))
    z, depths = np.asarray(z), np.asarray(depths)
    assert np.abs(z - start).max(axis=1).mean() > 0.3  # the chains moved
    # through trees of several doublings, past one block (BLOCK_STEPS) in the last of them
    assert int(depths.max()) >= deepest, np.bincount(depths.ravel())
    x, y = z[:, 0], z[:, 1]
    _, reference_y = np.random.default_rng(12).normal(size=(2, 200000))
    reference_y = 0.5 * np.random.default_rng(13).normal(size=200000) ** 2 + 0.5 * reference_y
    pvalues = [stats.kstest(x, "norm").pvalue, stats.ks_2samp(y, reference_y).pvalue,
               stats.kstest((y - 0.5 * x**2) / 0.5, "norm").pvalue]  # fmt: skip
    assert min(pvalues) > 1e-3, pvalues
