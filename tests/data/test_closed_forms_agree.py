"""The NumPy closed forms (bayesmatrix.data.closed_forms): by hand, against brute-force integrals, and
equal to their JAX twins (bayesmatrix.models.closed_forms) on random inputs; KL in bits and categorical draws."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import integrate, stats

from bayesmatrix.data import closed_forms as numpy_forms
from bayesmatrix.data.closed_forms import (
    categorical,
    dirichlet_predictive,
    kl_bits,
    mixture_posterior,
    mixture_predictive,
    tempered,
    weighted_counts,
)
from bayesmatrix.models import closed_forms as jax_forms

# float64 on both sides: the twins differ only by the rounding of their gammaln and softmax
RTOL = 1e-10


def random_inputs(seed: int, shape=(7, 4), components: int = 3):
    """Positive priors over several orders of magnitude, decayed (non-integer) counts, mixture weights."""
    rng = np.random.default_rng(seed)
    C = shape[-1]
    alpha = np.exp(rng.uniform(np.log(1e-2), np.log(50.0), size=C))
    alphas = np.exp(rng.uniform(np.log(1e-2), np.log(50.0), size=(components, C)))
    weights = rng.dirichlet(np.ones(components))
    counts = rng.gamma(0.7, 3.0, size=shape)
    return alpha, alphas, weights, counts


def as_numpy(value):
    return np.asarray(value, dtype=np.float64)


# --- the NumPy forms by hand and against integrals ---------------------------


def test_weighted_counts_by_hand():
    counts = weighted_counts(np.array([0, 1, 0]), 2, decay=0.5)
    np.testing.assert_array_equal(counts, [[0, 0], [1, 0], [0.5, 1], [1.25, 0.5]])
    np.testing.assert_array_equal(weighted_counts(np.array([[2, 2]]), 3)[0, -1], [0, 0, 2])


def test_updater_predictive_is_the_dirichlet_posterior_mean_and_tempers():
    alpha = np.array([0.5, 1.0, 2.5])
    counts = np.array([3.0, 0.0, 1.0])
    np.testing.assert_allclose(dirichlet_predictive(alpha, counts), (alpha + counts) / 8.0, rtol=1e-14)
    hot = tempered(dirichlet_predictive(alpha, counts), temperature=2.0)
    expected = np.sqrt((alpha + counts) / 8.0)
    np.testing.assert_allclose(hot, expected / expected.sum(), rtol=1e-14)


@pytest.mark.parametrize("counts", [(0.0, 0.0), (3.0, 1.0), (1.75, 0.5), (12.0, 0.0)])
def test_mixture_predictive_matches_numerical_integration_for_two_categories(counts):
    weights = np.array([0.3, 0.7])
    alphas = np.array([[4.0, 1.0], [0.7, 2.5]])
    n0, n1 = counts

    def posterior(theta):  # unnormalised: sum_j w_j Beta(theta; alpha_j) theta^n0 (1 - theta)^n1
        prior = sum(w * stats.beta.pdf(theta, a, b) for w, (a, b) in zip(weights, alphas))
        return prior * theta**n0 * (1.0 - theta) ** n1

    evidence = integrate.quad(posterior, 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0]
    first = integrate.quad(lambda t: t * posterior(t), 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0]
    predictive = mixture_predictive(weights, alphas, np.array(counts))
    np.testing.assert_allclose(predictive, [first / evidence, 1 - first / evidence], rtol=1e-8)


def test_mixture_predictive_with_one_component_is_the_updater():
    alpha = np.array([[1.5, 0.5, 2.0]])
    counts = weighted_counts(np.array([[0, 2, 2, 1]]), 3, decay=0.8)
    np.testing.assert_allclose(
        mixture_predictive([1.0], alpha, counts), dirichlet_predictive(alpha[0], counts), rtol=1e-14
    )
    np.testing.assert_allclose(mixture_posterior([1.0], alpha, counts)[0], 1.0)


# --- the twins agree ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_dirichlet_predictive_log_evidence_and_tempering_agree(seed):
    alpha, _, _, counts = random_inputs(seed)
    temperature = np.random.default_rng(seed).uniform(0.2, 3.0)
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            dirichlet_predictive(alpha, counts), as_numpy(jax_forms.dirichlet_predictive(alpha, counts)), rtol=RTOL
        )
        np.testing.assert_allclose(
            numpy_forms.log_evidence(alpha, counts), as_numpy(jax_forms.log_evidence(alpha, counts)), rtol=RTOL
        )
        predictive = dirichlet_predictive(alpha, counts)
        np.testing.assert_allclose(
            tempered(predictive, temperature), as_numpy(jax_forms.tempered(predictive, temperature)), rtol=RTOL
        )


@pytest.mark.parametrize("seed", range(5))
def test_mixture_posterior_weights_and_predictive_agree(seed):
    _, alphas, weights, counts = random_inputs(seed, shape=(3, 5, 4))
    with jax.enable_x64(True):
        numpy_weights, numpy_alphas = mixture_posterior(weights, alphas, counts)
        jax_weights, jax_alphas = jax_forms.mixture_posterior(weights, alphas, counts)
        assert numpy_weights.shape == (3, 5, 3) and numpy_alphas.shape == (3, 5, 3, 4)
        np.testing.assert_allclose(numpy_weights, as_numpy(jax_weights), rtol=RTOL, atol=1e-300)
        np.testing.assert_allclose(numpy_alphas, as_numpy(jax_alphas), rtol=RTOL)
        np.testing.assert_allclose(
            mixture_predictive(weights, alphas, counts),
            as_numpy(jax_forms.mixture_predictive(weights, alphas, counts)),
            rtol=RTOL,
        )


@pytest.mark.parametrize("decay", [1.0, 0.8, 0.3])
def test_weighted_counts_agree_with_the_decayed_counts_of_log_rows(decay):
    """Along sequences (NumPy) and along a log's rows with episode restarts (JAX): the same recurrence."""
    rng = np.random.default_rng(int(decay * 10))
    episodes, length, C = 4, 6, 3
    observations = rng.integers(C, size=(episodes, length))
    along_sequences = weighted_counts(observations, C, decay).reshape(-1, C)  # (episodes * (length + 1), C)
    # the log's rows: position 0 has seen nothing, row k the example y_k just before it
    last_example = np.zeros((episodes, length + 1, C))
    last_example[:, 1:] = np.eye(C)[observations]
    episode_start = np.zeros((episodes, length + 1), dtype=bool)
    episode_start[:, 0] = True
    with jax.enable_x64(True):
        along_rows = jax_forms.decayed_counts(last_example.reshape(-1, C), episode_start.reshape(-1), decay)
        np.testing.assert_allclose(along_sequences, as_numpy(along_rows), rtol=RTOL, atol=1e-15)


def test_clip_simplex_agrees():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(5, 0.05), size=20)
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            numpy_forms.clip_simplex(probs, 1e-6), as_numpy(jax_forms.clip_simplex(probs, 1e-6)), rtol=RTOL
        )


# --- KL in bits, one function with one contract ------------------------------


def test_kl_bits_renormalises_neither_row():
    """The strict wind-tunnel score: a model's mass outside the categories counts against it."""
    exact = np.array([0.5, 0.3, 0.2])
    model = np.array([0.45, 0.3, 0.2])  # 0.05 of its mass elsewhere
    renormalised = model / model.sum()
    np.testing.assert_allclose(kl_bits(exact, model), kl_bits(exact, renormalised) - np.log2(model.sum()), rtol=1e-12)
    assert kl_bits(exact, model) > kl_bits(exact, renormalised) > 0


def test_kl_bits_zero_terms_broadcasting_and_support_mismatch():
    assert kl_bits([1.0, 0.0], [0.5, 0.5]) == pytest.approx(1.0)
    assert np.isinf(kl_bits([0.5, 0.5], [1.0, 0.0]))  # no warning either (warnings are errors here)
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    np.testing.assert_allclose(kl_bits(p, np.array([0.5, 0.5])), [0.0, kl_bits(p[1], [0.5, 0.5])])


def test_analysis_and_the_wind_tunnel_score_with_the_same_kl():
    from bayesmatrix.analysis import metrics
    from bayesmatrix.data.windtunnel import evaluation

    assert metrics.kl_bits is kl_bits and evaluation.kl_bits is kl_bits


# --- categorical draws -------------------------------------------------------


def test_categorical_frequencies_and_shapes():
    rng = np.random.default_rng(4)
    probs = np.array([[0.2, 0.5, 0.3], [0.0, 0.0, 1.0]])
    drawn = categorical(rng, probs, 20000)
    assert drawn.shape == (2, 20000)
    frequencies = np.stack([np.bincount(row, minlength=3) / 20000 for row in drawn])
    standard_error = np.sqrt(probs * (1 - probs) / 20000)
    assert np.all(np.abs(frequencies - probs) <= 5 * standard_error + 1e-12)
    assert categorical(rng, probs).shape == (2,)
    # unnormalised rows are scaled by their total; a total that rounds low never gives index C
    assert set(categorical(rng, np.array([[2.0, 2.0]] * 1000)).tolist()) == {0, 1}
    assert categorical(rng, np.array([[0.3, 0.7 - 1e-17]] * 1000)).max() <= 1
