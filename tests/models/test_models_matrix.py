"""The matrix model against closed forms: the conjugate posterior mean and the collapsed likelihood."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.handlers import condition, seed, trace
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import log_density, log_likelihood
from scipy.special import gammaln

from bayesmatrix.models import MODELS, clip_simplex, dirichlet_predictive
from bayesmatrix.models.matrix import matrix

M_TRUE = np.array([0.5, 0.3, 0.2])
S_TRUE = 4.0
ALPHA = S_TRUE * M_TRUE
COUNTS = np.array([[3, 0, 1], [0, 0, 0], [10, 2, 7]])


@pytest.mark.slow
def test_explicit_posterior_mean_matches_conjugate_update():
    """NUTS on pi_r ~ Dirichlet(alpha), counts_r ~ Multinomial(pi_r) with alpha fixed recovers (alpha + n) / (S + N)."""
    conditioned = condition(matrix, {"m": M_TRUE, "s": S_TRUE})
    mcmc = MCMC(NUTS(conditioned), num_warmup=300, num_samples=1000, num_chains=1, progress_bar=False)
    mcmc.run(
        jax.random.PRNGKey(0),
        num_rows=3,
        num_cols=3,
        counts=COUNTS,
        total_count=COUNTS.sum(1),
        observe=("counts",),
        explicit=True,
    )
    pi = np.asarray(mcmc.get_samples()["probs"])  # (draws, rows, cols)
    ess = effective_sample_size(pi[None])
    mcse = pi.std(axis=0) / np.sqrt(ess)
    truth = dirichlet_predictive(ALPHA, COUNTS)
    z = np.abs(pi.mean(axis=0) - truth) / mcse
    assert z.max() < 4, z


def test_collapsed_likelihood_matches_monte_carlo_marginal():
    """DirichletMultinomial(alpha, N) equals the average Multinomial likelihood over pi ~ Dirichlet(alpha)."""
    rng = np.random.default_rng(1)
    counts = np.array([[3, 0, 1], [1, 2, 2], [0, 6, 0]])
    pointwise = log_likelihood(
        matrix,
        {"m": M_TRUE[None], "s": np.array([S_TRUE])},
        num_rows=3,
        num_cols=3,
        counts=counts,
        total_count=counts.sum(1),
        observe=("counts",),
    )["counts"][0]
    pi = rng.dirichlet(ALPHA, size=200_000)
    for row, n in enumerate(counts):
        log_coefficient = gammaln(n.sum() + 1) - gammaln(n + 1).sum()
        likelihood = np.exp(log_coefficient + (n * np.log(pi)).sum(axis=1))
        mean, se = likelihood.mean(), likelihood.std() / np.sqrt(len(likelihood))
        assert abs(np.exp(pointwise[row]) - mean) / se < 4


def test_counts_given_observed_rows_leave_the_posterior_unchanged():
    """With probs and counts both observed, the counts add the same constant at every (m, s)."""
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(ALPHA, size=4)
    counts = np.stack([rng.multinomial(20, p) for p in probs])
    data = dict(num_rows=4, num_cols=3, probs=probs)
    both = dict(data, counts=counts, total_count=counts.sum(1), observe=("probs", "counts"))
    differences = []
    for m, s in [(M_TRUE, S_TRUE), (np.array([0.1, 0.1, 0.8]), 0.7), (np.ones(3) / 3, 30.0)]:
        params = {"m": m, "s": s}
        differences.append(log_density(matrix, (), both, params)[0] - log_density(matrix, (), data, params)[0])
    assert np.ptp(np.asarray(differences)) < 1e-4 * abs(differences[0])


def test_rows_with_zero_probabilities_are_clipped_to_finite_likelihoods():
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.8, 0.0]])
    pointwise = log_likelihood(matrix, {"m": M_TRUE[None], "s": np.array([S_TRUE])}, num_rows=2, num_cols=3, probs=probs)
    assert np.isfinite(pointwise["probs"]).all()
    clipped = np.asarray(clip_simplex(probs, 1e-6))
    np.testing.assert_allclose(clipped.sum(axis=1), 1.0, rtol=1e-6)
    assert clipped.min() > 0.5e-6


@pytest.mark.parametrize("name", ["matrix", "mixture"])
@pytest.mark.parametrize("observe", [("probs",), ("counts",), ("probs", "counts")])
@pytest.mark.parametrize("explicit", [False, True])
def test_prior_predictive_gives_simplex_rows_and_counts(name, observe, explicit):
    total = np.array([5, 0, 12, 1])
    kwargs = dict(num_rows=4, num_cols=3, observe=observe, explicit=explicit)
    if "counts" in observe:
        kwargs["total_count"] = total
    draws = prior_draws(MODELS[name].function, **kwargs)
    if "probs" in draws:
        probs = draws["probs"]
        assert probs.shape == (10, 4, 3) and (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    if "counts" in observe:
        assert (draws["counts"].sum(-1) == total).all()
    np.testing.assert_allclose(draws["alpha"].sum(-1), draws["s"], rtol=1e-5)


def prior_draws(model, num_draws: int = 10, **kwargs) -> dict[str, np.ndarray]:
    """Eager draws from a model's prior predictive: compiling every variant under jit costs more than drawing."""
    traces = [trace(seed(model, key)).get_trace(**kwargs) for key in range(num_draws)]
    sites = [name for name, site in traces[0].items() if site["type"] in ("sample", "deterministic")]
    return {name: np.stack([np.asarray(t[name]["value"]) for t in traces]) for name in sites}


def test_observe_must_match_the_data_given():
    with pytest.raises(ValueError, match="total_count"):
        prior_draws(matrix, num_draws=1, num_rows=2, num_cols=3, observe=("counts",))
    with pytest.raises(ValueError, match="not in observe"):
        log_likelihood(matrix, {"m": M_TRUE[None], "s": np.array([S_TRUE])}, num_rows=1, num_cols=3, counts=COUNTS[:1])
