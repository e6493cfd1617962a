"""The Dirichlet-mixture model: conjugate update against integration, likelihood against a brute-force logsumexp."""

from __future__ import annotations

import numpy as np
import pytest
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.util import log_likelihood
from scipy import integrate, stats
from scipy.special import logsumexp

from bayesmatrix.models import mixture_posterior, mixture_predictive, sort_components
from bayesmatrix.models.matrix import matrix
from bayesmatrix.models.mixture import mixture

WEIGHTS = np.array([0.3, 0.7])
ALPHAS = np.array([[2.0, 5.0], [6.0, 1.5]])


@pytest.mark.parametrize("counts", [[0, 0], [3, 1], [0, 7], [12, 9]])
def test_conjugate_update_matches_numerical_integration(counts):
    """Two categories: the prior is a Beta mixture; integrate the posterior with quad."""
    n1, n2 = counts

    def unnormalised(p, k):
        return WEIGHTS[k] * stats.beta.pdf(p, *ALPHAS[k]) * p**n1 * (1 - p) ** n2

    mass = np.array([integrate.quad(unnormalised, 0, 1, args=(k,), epsabs=0, epsrel=1e-10)[0] for k in range(2)])
    first_moment = sum(integrate.quad(lambda p: p * unnormalised(p, k), 0, 1, epsabs=0, epsrel=1e-10)[0] for k in range(2))
    weights, alphas = mixture_posterior(WEIGHTS, ALPHAS, np.array(counts, dtype=float))
    np.testing.assert_allclose(weights, mass / mass.sum(), rtol=1e-4)
    np.testing.assert_allclose(alphas, ALPHAS + np.array(counts), rtol=1e-6)
    np.testing.assert_allclose(mixture_predictive(WEIGHTS, ALPHAS, np.array(counts, dtype=float))[0], first_moment / mass.sum(), rtol=1e-4)


def test_conjugate_update_broadcasts_over_rows():
    counts = np.array([[0, 0], [3, 1], [0, 7]], dtype=float)
    weights, alphas = mixture_posterior(WEIGHTS, ALPHAS, counts)
    assert weights.shape == (3, 2) and alphas.shape == (3, 2, 2)
    for row, n in enumerate(counts):
        np.testing.assert_allclose(weights[row], mixture_posterior(WEIGHTS, ALPHAS, n)[0], rtol=1e-6)
    np.testing.assert_allclose(weights[0], WEIGHTS, rtol=1e-6)  # no data, no update


def mixture_params(w, m, s):
    """One draw of the mixture's sample sites from weights, mean rows and strengths."""
    return {"w_unlabelled": np.array([w]), "m_unlabelled": np.array([m], dtype=float), "s_unlabelled": np.array([s])}


MEANS = np.array([[0.1, 0.3, 0.6], [0.7, 0.2, 0.1]])
STRENGTHS = np.array([8.0, 1.5])
PARAMS = mixture_params([0.6, 0.4], MEANS, STRENGTHS)


def _alphas():
    return STRENGTHS[:, None] * MEANS


def test_probs_likelihood_matches_brute_force_logsumexp():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=5)
    pointwise = log_likelihood(mixture, PARAMS, num_rows=5, num_cols=3, probs=probs, epsilon=1e-12)["probs"][0]
    w, alphas = PARAMS["w_unlabelled"][0], _alphas()
    expected = [logsumexp([np.log(w[k]) + stats.dirichlet.logpdf(row, alphas[k]) for k in range(2)]) for row in probs]
    np.testing.assert_allclose(pointwise, expected, rtol=1e-4)


def test_counts_likelihood_matches_brute_force_logsumexp():
    counts = np.array([[3, 0, 1], [0, 0, 0], [1, 5, 9]])
    pointwise = log_likelihood(
        mixture, PARAMS, num_rows=3, num_cols=3, counts=counts, total_count=counts.sum(1), observe=("counts",)
    )["counts"][0]
    w, alphas = PARAMS["w_unlabelled"][0], _alphas()
    expected = [
        logsumexp([np.log(w[k]) + stats.dirichlet_multinomial.logpmf(n, alphas[k], n.sum()) for k in range(2)])
        for n in counts
    ]
    np.testing.assert_allclose(pointwise, expected, rtol=1e-4, atol=1e-5)


def test_one_component_is_the_matrix_model():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([2.0, 1.0, 1.0], size=4)
    one = mixture_params([1.0], MEANS[:1], STRENGTHS[:1])
    single = {"m": MEANS[:1], "s": STRENGTHS[:1]}
    mixed = log_likelihood(mixture, one, num_rows=4, num_cols=3, components=1, probs=probs)["probs"]
    plain = log_likelihood(matrix, single, num_rows=4, num_cols=3, probs=probs)["probs"]
    np.testing.assert_allclose(mixed, plain, rtol=1e-5)


def test_relabelling_sorts_by_the_first_concentration_and_keeps_the_likelihood():
    w, m, s = sort_components(np.array([0.4, 0.6]), MEANS[::-1], STRENGTHS[::-1])
    np.testing.assert_allclose(w, [0.6, 0.4])  # alpha[:, 0] is 0.8 for the first component, 1.05 for the second
    np.testing.assert_allclose(m, MEANS)
    np.testing.assert_allclose(s, STRENGTHS)
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=4)
    swapped = mixture_params([0.4, 0.6], MEANS[::-1], STRENGTHS[::-1])
    for params in (PARAMS, swapped):
        draws = trace(substitute(seed(mixture, 0), {k: v[0] for k, v in params.items()})).get_trace(
            num_rows=4, num_cols=3, probs=probs
        )
        np.testing.assert_allclose(draws["w"]["value"], [0.6, 0.4], rtol=1e-6)
        np.testing.assert_allclose(draws["alpha"]["value"], _alphas(), rtol=1e-6)
    likelihoods = [log_likelihood(mixture, params, num_rows=4, num_cols=3, probs=probs)["probs"] for params in (PARAMS, swapped)]
    np.testing.assert_allclose(likelihoods[0], likelihoods[1], rtol=1e-6)


@pytest.mark.slow
def test_chains_agree_on_component_labels():
    """Relabelled components agree across chains from different starts (the raw labels need not)."""
    import jax
    from numpyro.diagnostics import split_gelman_rubin
    from numpyro.infer import MCMC, NUTS

    rng = np.random.default_rng(7)
    alphas = np.array([[1.4, 0.4, 0.2], [4.0, 6.0, 10.0]])  # strengths 2 and 20
    component = rng.choice(2, size=150, p=[0.4, 0.6])
    probs = np.stack([rng.dirichlet(alphas[k]) for k in component])
    mcmc = MCMC(NUTS(mixture), num_warmup=300, num_samples=200, num_chains=3, chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(8), num_rows=150, num_cols=3, probs=probs)
    samples = mcmc.get_samples(group_by_chain=True)
    for name in ("w", "m", "s"):
        assert (np.asarray(split_gelman_rubin(samples[name])) < 1.05).all(), name
    s = np.asarray(samples["s"]).reshape(-1, 2)  # sorted by alpha[:, 0]: 1.4 before 4.0
    assert abs(s[:, 0].mean() - 2.0) / s[:, 0].std() < 4 and abs(s[:, 1].mean() - 20.0) / s[:, 1].std() < 4
