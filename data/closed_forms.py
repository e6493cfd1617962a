"""The exact Dirichlet and Dirichlet-mixture predictives in NumPy, KL in bits, and categorical draws.

The NumPyro models compute their closed forms in JAX (:mod:`bayesmatrix.models.closed_forms`).
The data layer may not import the models, and the wind tunnel scores a
transformer against the exact posterior predictive without JAX, so the few
closed forms it needs exist here a second time, in float64 NumPy, under the
same names and with the same contracts. ``tests/data/test_closed_forms_agree.py``
checks on random inputs that each one here equals its JAX twin; change
them together.

Shapes broadcast over leading axes: ``counts`` is ``(..., C)``, a prior
``alpha`` ``(C,)``, a mixture's ``weights`` ``(K,)`` and ``alphas`` ``(K, C)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp, softmax


def _as_float(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# ---------------------------------------------------------------------------
# Twins of bayesmatrix.models.closed_forms
# ---------------------------------------------------------------------------


def dirichlet_predictive(alpha, counts) -> np.ndarray:
    """Posterior predictive of Dirichlet(alpha) after ``counts``: ``(alpha + n) / (sum alpha + sum n)``."""
    updated = _as_float(alpha) + _as_float(counts)
    return updated / updated.sum(axis=-1, keepdims=True)


def tempered(probs, temperature: float) -> np.ndarray:
    """``q ∝ probs^(1/temperature)``, normalised in log space (temperature 1 returns ``probs``)."""
    with np.errstate(divide="ignore"):  # a zero probability stays zero
        log_probs = np.log(_as_float(probs))
    return softmax(log_probs / temperature, axis=-1)


def log_evidence(alpha, counts) -> np.ndarray:
    """``log B(alpha + n) - log B(alpha)``: one sequence with these counts under Dirichlet(alpha).

    The multinomial coefficient is left out: it is the same for every prior and
    cancels wherever priors are compared, so the formula holds for non-integer
    (decayed) counts too.
    """
    alpha = _as_float(alpha)
    updated = alpha + _as_float(counts)
    return _log_beta(updated) - _log_beta(alpha)


def _log_beta(alpha: np.ndarray) -> np.ndarray:
    return gammaln(alpha).sum(axis=-1) - gammaln(alpha.sum(axis=-1))


def mixture_posterior(weights, alphas, counts) -> tuple[np.ndarray, np.ndarray]:
    """Conjugate update of ``sum_k w_k Dirichlet(alpha_k)`` after ``counts``: ``(weights', alphas')``.

    ``alphas'_k = alpha_k + n`` and ``w'_k ∝ w_k DirMult(n | alpha_k)`` (in log
    space). Shapes ``(..., K)`` and ``(..., K, C)``.
    """
    alphas = _as_float(alphas)
    counts = _as_float(counts)[..., None, :]  # (..., 1, C) against (K, C)
    with np.errstate(divide="ignore"):  # a zero weight is a component that is never chosen
        log_weights = np.log(_as_float(weights)) + log_evidence(alphas, counts)
    return np.exp(log_weights - logsumexp(log_weights, axis=-1, keepdims=True)), alphas + counts


def mixture_predictive(weights, alphas, counts) -> np.ndarray:
    """Posterior predictive of the mixture prior after ``counts``: ``sum_k w'_k (alpha_k + n) / (s_k + k)``."""
    posterior_weights, posterior_alphas = mixture_posterior(weights, alphas, counts)
    component_means = posterior_alphas / posterior_alphas.sum(axis=-1, keepdims=True)
    return np.einsum("...k,...kc->...c", posterior_weights, component_means)


def weighted_counts(observations, num_categories: int, decay: float = 1.0) -> np.ndarray:
    """Recency-weighted counts along sequences: ``w_0 = 0``, ``w_k = decay * w_(k-1) + onehot(y_k)``.

    ``observations`` ``(..., K)`` holds category indices; returns ``w_0 .. w_K``,
    ``(..., K + 1, C)``. With ``decay = 1`` these are the raw counts. This is
    the recurrence of :func:`bayesmatrix.models.closed_forms.decayed_counts`,
    written along a sequence instead of along a log's rows.
    """
    observations = np.asarray(observations)
    if observations.size and (observations.min() < 0 or observations.max() >= num_categories):
        raise ValueError(f"observations must lie in 0..{num_categories - 1}")
    onehot = np.eye(num_categories, dtype=np.float64)[observations]  # (..., K, C)
    counts = np.zeros(observations.shape[:-1] + (observations.shape[-1] + 1, num_categories))
    for k in range(observations.shape[-1]):
        counts[..., k + 1, :] = decay * counts[..., k, :] + onehot[..., k, :]
    return counts


def clip_simplex(probs, epsilon: float) -> np.ndarray:
    """Rows clipped below at ``epsilon`` and renormalised: the rows a model's Dirichlet density sees."""
    clipped = np.clip(_as_float(probs), epsilon, None)
    return clipped / clipped.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------
# Scoring and drawing
# ---------------------------------------------------------------------------


def kl_bits(p, q) -> np.ndarray:
    """``KL(p || q) = sum_c p_c log2(p_c / q_c)`` in bits over the last axis; leading axes broadcast.

    Neither argument is renormalised. Given a model's probabilities of the
    categories as they are, the mass it puts elsewhere counts against it (the
    strict score of the wind tunnel, ``-log2(sum q)`` above the KL to the
    renormalised ``q``); to score the renormalised row, divide ``q`` by its sum
    first. Terms with ``p_c = 0`` contribute 0 (the limit of ``x log x``); a
    ``q_c = 0`` where ``p_c > 0`` gives ``inf``, without a warning.
    """
    p, q = np.broadcast_arrays(_as_float(p), _as_float(q))
    positive = p > 0
    with np.errstate(divide="ignore"):
        log_ratio = np.log2(np.where(positive, p, 1.0)) - np.log2(np.where(positive, q, 1.0))
    return np.sum(np.where(positive, p * log_ratio, 0.0), axis=-1)


def categorical(rng: np.random.Generator, probs, draws: int | None = None) -> np.ndarray:
    """Category indices drawn from each row of ``probs`` (..., C) by inverting its cumulative sum.

    One draw per row (shape ``probs.shape[:-1]``), or ``draws`` per row (shape
    ``probs.shape[:-1] + (draws,)``), from ``rng.random`` of that shape. Rows
    need not sum to 1 exactly: the uniforms are scaled by each row's total, and
    the index is capped at ``C - 1`` against a cumulative sum that rounds low.
    """
    probs = _as_float(probs)
    cumulative = np.cumsum(probs, axis=-1)  # (..., C)
    if draws is None:
        uniform = rng.random(probs.shape[:-1]) * cumulative[..., -1]
        index = (uniform[..., None] >= cumulative).sum(axis=-1)
    else:
        uniform = rng.random(probs.shape[:-1] + (draws,)) * cumulative[..., -1:]
        index = (uniform[..., None] >= cumulative[..., None, :]).sum(axis=-1)
    return np.minimum(index, probs.shape[-1] - 1)
