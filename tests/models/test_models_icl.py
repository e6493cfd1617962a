"""The ICL models against their formulas: the exact predictive, decayed counts, and the reductions between models."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from numpyro.handlers import condition, seed, trace
from numpyro.infer.util import log_likelihood
from scipy.special import gammaln, logsumexp

from bayesmatrix.models import MODELS, decayed_counts, mixture_predictive, tempered
from bayesmatrix.models.icl import icl, icl_frequency, icl_general, icl_mixture, icl_none

# Two episodes of lengths 4 and 3 over three categories: examples y_1.. of each.
EXAMPLES = [[0, 2, 0], [1, 1]]
M = np.array([0.5, 0.3, 0.2])
S = 3.0
TAU = 25.0


def episode_arrays(episodes, num_cols=3):
    """Per row: context counts, one-hot of the last example (zeros at a start) and start flags; positions 0..K."""
    context, last, start = [], [], []
    for examples in episodes:
        counts = np.zeros(num_cols)
        for position in range(len(examples) + 1):
            example = np.zeros(num_cols)
            if position > 0:
                example[examples[position - 1]] = 1.0
                counts = counts + example
            context.append(counts.copy())
            last.append(example)
            start.append(position == 0)
    return np.array(context), np.array(last), np.array(start)


CONTEXT, LAST, START = episode_arrays(EXAMPLES)
PROBS = np.random.default_rng(0).dirichlet([2.0, 2.0, 2.0], size=len(CONTEXT))


def concentration(model, params, **kwargs):
    """The Dirichlet concentration of the observed site at fixed parameters."""
    return np.asarray(trace(seed(condition(model, params), 0)).get_trace(**kwargs)["probs"]["fn"].concentration)


def test_icl_predictive_is_the_exact_update():
    got = concentration(icl, {"m": M, "s": S, "tau": TAU}, context_counts=CONTEXT)
    expected = TAU * (S * M + CONTEXT) / (S + CONTEXT.sum(1, keepdims=True))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("decay", [0.0, 0.35, 0.9, 1.0])
def test_decayed_counts_match_a_python_loop(decay):
    rng = np.random.default_rng(1)
    episodes = [list(rng.integers(0, 3, size=length)) for length in (5, 0, 9, 1)]
    _, last, start = episode_arrays(episodes)
    expected, weighted = [], np.zeros(3)
    for example, first in zip(last, start):
        weighted = example if first else decay * weighted + example
        expected.append(weighted)
    np.testing.assert_allclose(decayed_counts(last, start, decay), np.array(expected), rtol=1e-5, atol=1e-6)


def test_general_with_decay_one_and_temperature_one_is_exact_bayes():
    params = {"m": M[None], "s": np.array([S]), "tau": np.array([TAU])}
    general = {**params, "decay": np.array([1.0]), "temperature": np.array([1.0])}
    exact = log_likelihood(icl, params, context_counts=CONTEXT, probs=PROBS)["probs"]
    generalised = log_likelihood(icl_general, general, last_example=LAST, episode_start=START, probs=PROBS)["probs"]
    np.testing.assert_allclose(generalised, exact, rtol=1e-5)


def test_general_predictive_is_decayed_and_tempered():
    decay, temperature = 0.6, 0.7
    got = concentration(
        icl_general,
        {"m": M, "s": S, "tau": TAU, "decay": decay, "temperature": temperature},
        last_example=LAST,
        episode_start=START,
    )
    weighted = np.asarray(decayed_counts(LAST, START, decay))
    predictive = (S * M + weighted) / (S + weighted.sum(1, keepdims=True))
    sharpened = predictive ** (1 / temperature)
    np.testing.assert_allclose(got, TAU * sharpened / sharpened.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(tempered(predictive, 1.0), predictive, rtol=1e-6)


def test_mixture_predictive_is_the_ratio_of_evidences():
    """P(next = c | n) = sum_k w_k B(alpha_k + n + e_c) / B(alpha_k) over sum_k w_k B(alpha_k + n) / B(alpha_k)."""
    weights = np.array([0.25, 0.75])
    alphas = np.array([[4.0, 1.0, 1.0], [0.5, 0.5, 3.0]])

    def log_evidence(counts):
        log_beta = lambda a: gammaln(a).sum(-1) - gammaln(a.sum(-1))  # noqa: E731
        return logsumexp(np.log(weights) + log_beta(alphas + counts) - log_beta(alphas))

    for counts in CONTEXT:
        expected = [np.exp(log_evidence(counts + np.eye(3)[c]) - log_evidence(counts)) for c in range(3)]
        np.testing.assert_allclose(mixture_predictive(weights, alphas, counts), expected, rtol=1e-4)


def test_icl_mixture_uses_the_mixture_predictive_and_one_component_is_icl():
    weights, means, strengths = np.array([0.25, 0.75]), np.array([[0.1, 0.1, 0.8], [0.6, 0.2, 0.2]]), np.array([6.0, 2.0])
    params = {"w_unlabelled": weights, "m_unlabelled": means, "s_unlabelled": strengths}
    got = concentration(icl_mixture, {**params, "tau": TAU}, context_counts=CONTEXT)
    alphas = strengths[:, None] * means
    np.testing.assert_allclose(got, TAU * np.asarray(mixture_predictive(weights, alphas, CONTEXT)), rtol=1e-5)

    one = {"w_unlabelled": np.array([[1.0]]), "m_unlabelled": M[None, None], "s_unlabelled": np.array([[S]]), "tau": np.array([TAU])}
    single = {"m": M[None], "s": np.array([S]), "tau": np.array([TAU])}
    mixed = log_likelihood(icl_mixture, one, context_counts=CONTEXT, components=1, probs=PROBS)["probs"]
    np.testing.assert_allclose(mixed, log_likelihood(icl, single, context_counts=CONTEXT, probs=PROBS)["probs"], rtol=1e-5)


def test_frequency_is_exact_bayes_with_a_uniform_prior_and_none_ignores_the_context():
    eps = 0.2
    frequency = concentration(icl_frequency, {"pseudocount": eps, "tau": TAU}, context_counts=CONTEXT)
    uniform = concentration(icl, {"m": np.ones(3) / 3, "s": 3 * eps, "tau": TAU}, context_counts=CONTEXT)
    np.testing.assert_allclose(frequency, uniform, rtol=1e-5)
    none = concentration(icl_none, {"m": M, "tau": TAU}, context_counts=CONTEXT)
    np.testing.assert_allclose(none, np.broadcast_to(TAU * M, CONTEXT.shape), rtol=1e-6)


def test_a_lambda_weight_per_example_is_exact_bayes_with_a_scaled_prior():
    """(alpha + lam n) / (S + lam k) = (alpha/lam + n) / (S/lam + k): lam is absorbed by the prior."""
    lam = 0.4
    weighted = (S * M + lam * CONTEXT) / (S + lam * CONTEXT.sum(1, keepdims=True))
    scaled = concentration(icl, {"m": M, "s": S / lam, "tau": 1.0}, context_counts=CONTEXT)
    np.testing.assert_allclose(scaled, weighted, rtol=1e-5)


@pytest.mark.parametrize("name", ["icl", "icl-general", "icl-mixture", "icl-none", "icl-frequency"])
def test_prior_predictive_gives_simplex_rows(name):
    data = {"last_example": LAST, "episode_start": START} if name == "icl-general" else {"context_counts": CONTEXT}
    for key in range(5):
        probs = np.asarray(trace(seed(MODELS[name].function, key)).get_trace(**data)["probs"]["value"])
        assert probs.shape == CONTEXT.shape and (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_observed_rows_with_zeros_give_finite_likelihoods():
    probs = np.tile([1.0, 0.0, 0.0], (len(CONTEXT), 1))
    params = {"m": M[None], "s": np.array([S]), "tau": np.array([TAU])}
    assert np.isfinite(log_likelihood(icl, params, context_counts=CONTEXT, probs=probs)["probs"]).all()


def test_decayed_counts_are_differentiable_in_decay():
    gradient = jax.grad(lambda d: decayed_counts(LAST, START, d).sum())(0.5)
    # d/d decay of sum_r w_r: each example j positions back contributes j decay^(j-1)
    expected = 0.0
    for examples in EXAMPLES:
        for k in range(1, len(examples) + 1):
            expected += sum(j * 0.5 ** (j - 1) for j in range(1, k))
    np.testing.assert_allclose(gradient, expected, rtol=1e-5)


@pytest.mark.slow
def test_nuts_recovers_the_generalised_updater():
    """Rows simulated from icl-general at known parameters; NUTS puts the truth within the posterior."""
    from numpyro.infer import MCMC, NUTS

    rng = np.random.default_rng(3)
    truth = {"m": np.array([0.6, 0.3, 0.1]), "s": 2.0, "decay": 0.8, "temperature": 1.3, "tau": 40.0}
    examples = [list(rng.choice(3, size=8, p=rng.dirichlet(2.0 * truth["m"]))) for _ in range(30)]
    _, last, start = episode_arrays(examples)
    simulated = trace(seed(condition(icl_general, truth), 4)).get_trace(last_example=last, episode_start=start)
    probs = np.asarray(simulated["probs"]["value"])

    mcmc = MCMC(NUTS(icl_general), num_warmup=300, num_samples=300, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(5), last_example=last, episode_start=start, probs=probs)
    samples = mcmc.get_samples()
    for name in ("s", "decay", "temperature", "tau"):
        draws = np.asarray(samples[name])
        assert abs(draws.mean() - truth[name]) / draws.std() < 4, (name, draws.mean(), draws.std())
    assert (np.abs(np.asarray(samples["m"]).mean(0) - truth["m"]) / np.asarray(samples["m"]).std(0) < 4).all()


def test_counts_likelihood_is_the_dirichlet_multinomial_marginal_of_the_row():
    """counts_r ~ DirichletMultinomial(tau q_r, N_r) against a Monte Carlo average of Multinomial(N_r, probs_r)."""
    from scipy.stats import multinomial

    counts = np.random.default_rng(1).multinomial(5, [0.5, 0.3, 0.2], size=len(CONTEXT))
    params = {"m": M[None], "s": np.array([S]), "tau": np.array([TAU])}
    loglik = log_likelihood(icl, params, context_counts=CONTEXT, counts=counts, total_count=counts.sum(1),
                            observe=("counts",))["counts"][0]
    concentration_q = TAU * (S * M + CONTEXT) / (S + CONTEXT.sum(1, keepdims=True))
    rng = np.random.default_rng(2)
    for r in range(len(CONTEXT)):
        rows = rng.dirichlet(concentration_q[r], size=200_000)
        pmf = multinomial.pmf(counts[r], n=counts[r].sum(), p=rows)
        mean, mcse = pmf.mean(), pmf.std() / np.sqrt(len(pmf))
        assert abs(np.exp(loglik[r]) - mean) < 4 * mcse, (r, np.exp(loglik[r]), mean, mcse)


@pytest.mark.parametrize("name", ["icl", "icl-general", "icl-mixture", "icl-none", "icl-frequency"])
def test_counts_prior_predictive_has_the_row_totals(name):
    data = {"last_example": LAST, "episode_start": START} if name == "icl-general" else {"context_counts": CONTEXT}
    total = np.arange(len(CONTEXT)) % 4 + 1
    site = trace(seed(MODELS[name].function, 3)).get_trace(**data, total_count=total, observe=("counts",))
    assert "probs" not in site
    counts = np.asarray(site["counts"]["value"])
    assert counts.shape == CONTEXT.shape and (counts >= 0).all()
    np.testing.assert_array_equal(counts.sum(-1), total)


@pytest.mark.slow
def test_nuts_recovers_the_generalised_updater_from_sampled_tokens():
    """Only tokens sampled from each row are seen: the row is integrated out, the updater still recovered."""
    from numpyro.infer import MCMC, NUTS

    rng = np.random.default_rng(3)
    truth = {"m": np.array([0.6, 0.3, 0.1]), "s": 2.0, "decay": 0.7, "temperature": 1.0, "tau": 40.0}
    examples = [list(rng.choice(3, size=12, p=rng.dirichlet(2.0 * truth["m"]))) for _ in range(60)]
    _, last, start = episode_arrays(examples)
    total = np.full(len(last), 20)
    simulated = trace(seed(condition(icl_general, truth), 4)).get_trace(
        last_example=last, episode_start=start, total_count=total, observe=("counts",))
    counts = np.asarray(simulated["counts"]["value"])

    mcmc = MCMC(NUTS(icl_general), num_warmup=300, num_samples=300, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(5), last_example=last, episode_start=start, counts=counts, total_count=total,
             observe=("counts",))
    samples = mcmc.get_samples()
    for name in ("s", "decay", "temperature"):
        draws = np.asarray(samples[name])
        assert abs(draws.mean() - truth[name]) / draws.std() < 4, (name, draws.mean(), draws.std())
    assert (np.abs(np.asarray(samples["m"]).mean(0) - truth["m"]) / np.asarray(samples["m"]).std(0) < 4).all()


@pytest.mark.parametrize("tau", [0.5, 25.0, 1e4])
def test_precision_dirichlet_multinomial_equals_the_gamma_form(tau):
    from bayesmatrix.models.icl import PrecisionDirichletMultinomial

    rng = np.random.default_rng(7)
    q = rng.dirichlet([1.0, 2.0, 3.0], size=20)
    counts = rng.multinomial(9, [0.2, 0.3, 0.5], size=20)
    counts[:3] = 0  # rows with no sampled token
    stable = PrecisionDirichletMultinomial(tau, q, counts.sum(1), total_count_max=9).log_prob(counts)
    a, n, total = tau * q, counts, counts.sum(1)  # the gamma-function form, in float64
    exact = (gammaln(total + 1) - gammaln(n + 1).sum(1) + gammaln(tau) - gammaln(tau + total)
             + (gammaln(a + n) - gammaln(a)).sum(1))
    np.testing.assert_allclose(stable, exact, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(stable[:3]), 0.0, atol=1e-5)


def test_precision_dirichlet_multinomial_tends_to_the_multinomial():
    from scipy.stats import multinomial

    from bayesmatrix.models.icl import PrecisionDirichletMultinomial

    q = np.array([0.7, 0.2, 0.1])
    counts = np.array([5, 3, 2])
    # float32: the gamma-function form at this tau has no correct digit left; this one is exact.
    value = PrecisionDirichletMultinomial(1e20, q, 10, total_count_max=10).log_prob(counts)
    np.testing.assert_allclose(value, multinomial.logpmf(counts, 10, q), rtol=1e-6)
