"""Closed forms of the models against their definitions: exact small cases, brute force and Monte Carlo (z < 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp

from bayesmatrix.models.closed_forms import (
    clip_simplex,
    decayed_counts,
    dirichlet_predictive,
    frequency_predictive,
    log_evidence,
    mixture_posterior,
    mixture_predictive,
    sort_components,
    tempered,
)

RNG = np.random.default_rng(12)
DRAWS = 200_000


def test_clip_simplex_floors_and_renormalises_and_leaves_safe_rows_alone():
    rows = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    clipped = np.asarray(clip_simplex(rows, 1e-3))
    np.testing.assert_allclose(clipped.sum(axis=1), 1.0, rtol=1e-6)
    assert clipped.min() >= 1e-3 / (1 + 2e-3) * (1 - 1e-6)
    np.testing.assert_allclose(clipped[1], rows[1], rtol=1e-6)


def test_dirichlet_predictive_is_the_posterior_mean_by_importance_sampling():
    alpha, counts = np.array([2.0, 1.0, 0.5]), np.array([3, 0, 1])
    prior = RNG.dirichlet(alpha, size=DRAWS)
    weight = np.prod(prior**counts, axis=1)  # likelihood of one sequence with these counts
    weight /= weight.sum()
    estimate = weight @ prior
    # self-normalised importance sampling: MCSE from the weighted residuals
    mcse = np.sqrt(np.sum(weight[:, None] ** 2 * (prior - estimate) ** 2, axis=0))
    exact = np.asarray(dirichlet_predictive(alpha, counts))
    np.testing.assert_allclose(exact, (alpha + counts) / (alpha.sum() + counts.sum()), rtol=1e-6)
    assert np.all(np.abs(estimate - exact) / mcse < 4)


@pytest.mark.parametrize("heads, tails", [(0, 0), (1, 0), (2, 3), (5, 1)])
def test_log_evidence_of_a_sequence_under_a_uniform_prior(heads, tails):
    # Beta(1, 1): p(sequence) = B(1 + h, 1 + t) = h! t! / (h + t + 1)!
    exact = math.lgamma(heads + 1) + math.lgamma(tails + 1) - math.lgamma(heads + tails + 2)
    assert float(log_evidence(np.ones(2), np.array([heads, tails]))) == pytest.approx(exact, abs=1e-5)


def test_log_evidence_against_a_monte_carlo_marginal():
    alpha, counts = np.array([0.7, 1.5, 3.0]), np.array([2, 1, 4])
    likelihood = np.prod(RNG.dirichlet(alpha, size=DRAWS) ** counts, axis=1)
    mean, mcse = likelihood.mean(), likelihood.std(ddof=1) / math.sqrt(DRAWS)
    exact = math.exp(float(log_evidence(alpha, counts)))
    assert abs(mean - exact) / mcse < 4


def test_mixture_posterior_and_predictive_by_explicit_logsumexp():
    weights = np.array([0.3, 0.7])
    alphas = np.array([[4.0, 1.0, 1.0], [1.0, 1.0, 4.0]])
    counts = np.array([[0, 0, 0], [3, 0, 1], [0, 1, 5]])
    new_weights, new_alphas = (np.asarray(a) for a in mixture_posterior(weights, alphas, counts))

    def log_beta(a):
        return gammaln(a).sum(-1) - gammaln(a.sum(-1))

    for row, n in enumerate(counts):
        log_w = np.log(weights) + log_beta(alphas + n) - log_beta(alphas)
        np.testing.assert_allclose(new_weights[row], np.exp(log_w - logsumexp(log_w)), rtol=1e-5)
        np.testing.assert_allclose(new_alphas[row], alphas + n)
        means = (alphas + n) / (alphas + n).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(np.asarray(mixture_predictive(weights, alphas, n)), new_weights[row] @ means,
                                   rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(new_weights[0], weights, rtol=1e-6)  # no data: the prior's weights


def test_mixture_predictive_by_importance_sampling_from_the_mixture_prior():
    weights, alphas, counts = np.array([0.4, 0.6]), np.array([[5.0, 1.0], [1.0, 2.0]]), np.array([4, 1])
    component = RNG.choice(2, size=DRAWS, p=weights)
    gammas = RNG.gamma(alphas[component])
    prior = gammas / gammas.sum(axis=1, keepdims=True)
    weight = np.prod(prior**counts, axis=1)
    weight /= weight.sum()
    estimate = weight @ prior
    mcse = np.sqrt(np.sum(weight[:, None] ** 2 * (prior - estimate) ** 2, axis=0))
    assert np.all(np.abs(estimate - np.asarray(mixture_predictive(weights, alphas, counts))) / mcse < 4)


def test_sort_components_orders_by_the_first_concentration_whatever_the_labels():
    weights, means, strengths = np.array([0.5, 0.2, 0.3]), RNG.dirichlet(np.ones(3), size=3), np.array([4.0, 1.0, 9.0])
    sorted_w, sorted_m, sorted_s = (np.asarray(a) for a in sort_components(weights, means, strengths))
    first = sorted_s * sorted_m[:, 0]
    assert np.all(np.diff(first) >= 0)
    for permutation in ([2, 0, 1], [1, 2, 0]):
        again = sort_components(weights[permutation], means[permutation], strengths[permutation])
        for got, want in zip(again, (sorted_w, sorted_m, sorted_s)):
            np.testing.assert_allclose(np.asarray(got), want)


def test_decayed_counts_follow_the_recurrence_and_restart_at_episodes():
    categories, rows = 3, 12
    last_example = np.eye(categories)[RNG.integers(categories, size=rows)]
    episode_start = np.zeros(rows, dtype=bool)
    episode_start[[0, 5, 6]] = True
    last_example[episode_start] = 0.0
    decay = 0.7
    expected, weighted = np.zeros((rows, categories)), np.zeros(categories)
    for r in range(rows):
        weighted = last_example[r] if episode_start[r] else decay * weighted + last_example[r]
        expected[r] = weighted
    np.testing.assert_allclose(np.asarray(decayed_counts(last_example, episode_start, decay)), expected, rtol=1e-5)
    # decay 1 is plain counting within each episode
    ones = np.asarray(decayed_counts(last_example, episode_start, 1.0))
    np.testing.assert_allclose(ones[4], last_example[:5].sum(axis=0), rtol=1e-6)


def test_tempered_and_frequency_predictives():
    probs = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(np.asarray(tempered(probs, 1.0)), probs, rtol=1e-6)
    sharp = probs**2 / np.sum(probs**2)
    np.testing.assert_allclose(np.asarray(tempered(probs, 0.5)), sharp, rtol=1e-5)
    counts, eps = np.array([3.0, 0.0, 1.0]), 0.1
    np.testing.assert_allclose(np.asarray(frequency_predictive(counts, eps)), (counts + eps) / (4 + 3 * eps), rtol=1e-6)
