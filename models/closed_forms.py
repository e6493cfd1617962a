"""Closed forms of the models: conjugate updates, exact predictives and the updater's pieces.

Plain JAX functions on arrays (NumPy arrays work too), shared by the NumPyro
models, the tests and the analysis. Counts broadcast over leading axes:
``counts`` is ``(..., C)``, a prior ``alpha`` is ``(C,)``, a mixture's
``weights`` ``(K,)`` and ``alphas`` ``(K, C)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln


def clip_simplex(probs, epsilon: float):
    """Rows clipped below at ``epsilon`` and renormalised.

    LLM rows put almost no mass on some columns; the Dirichlet log density has a
    ``(concentration - 1) * log(p)`` term that a p of 1e-30 would dominate, so
    every observed row passes through here first. The model then assumes no
    reported probability is really below ``epsilon``.
    """
    clipped = jnp.clip(jnp.asarray(probs), epsilon, None)
    return clipped / clipped.sum(axis=-1, keepdims=True)


def dirichlet_predictive(alpha, counts):
    """Posterior predictive (= posterior mean) of Dirichlet(alpha) after ``counts``: ``(alpha + n) / (sum alpha + sum n)``."""
    updated = jnp.asarray(alpha) + jnp.asarray(counts)
    return updated / updated.sum(axis=-1, keepdims=True)


def log_evidence(alpha, counts):
    """Log probability of one particular sequence with these category ``counts`` under Dirichlet(alpha).

    ``log B(alpha + n) - log B(alpha)`` with ``B`` the multivariate Beta function.
    The Dirichlet-multinomial pmf of the counts adds the multinomial coefficient,
    which is the same for every prior and cancels wherever priors are compared.
    """
    alpha = jnp.asarray(alpha)
    updated = alpha + jnp.asarray(counts)
    return _log_beta(updated) - _log_beta(alpha)


def _log_beta(alpha):
    return gammaln(alpha).sum(axis=-1) - gammaln(alpha.sum(axis=-1))


def mixture_posterior(weights, alphas, counts):
    """Conjugate update of the prior ``sum_k w_k Dirichlet(alpha_k)`` after ``counts``.

    Returns ``(weights', alphas')`` with ``alphas'_k = alpha_k + n`` and
    ``w'_k ∝ w_k DirMult(n | alpha_k)`` (computed in log space). Shapes:
    ``weights'`` ``(..., K)``, ``alphas'`` ``(..., K, C)``.
    """
    weights = jnp.asarray(weights)
    alphas = jnp.asarray(alphas)
    counts = jnp.asarray(counts)[..., None, :]  # (..., 1, C) against (K, C)
    log_weights = jnp.log(weights) + log_evidence(alphas, counts)
    return jax.nn.softmax(log_weights, axis=-1), alphas + counts


def mixture_predictive(weights, alphas, counts):
    """Posterior predictive of the mixture prior after ``counts``: ``sum_k w'_k (alpha_k + n) / (s_k + k)``."""
    posterior_weights, posterior_alphas = mixture_posterior(weights, alphas, counts)
    component_means = posterior_alphas / posterior_alphas.sum(axis=-1, keepdims=True)
    return jnp.einsum("...k,...kc->...c", posterior_weights, component_means)


def sort_components(weights, means, strengths):
    """A mixture's components in a canonical order: increasing ``alpha_k[0] = s_k m_k[0]``.

    A mixture's likelihood is the same under every relabelling of its
    components, so NUTS chains settle on arbitrary, different labellings.
    Sampling the components exchangeably and sorting each draw afterwards gives
    every chain the same labels. (An ordering constraint on the sampled
    parameters does the same on paper, but it walls chains into local modes on
    the wrong side of the constraint.) The first column's concentration
    separates components that differ in their mean of that column or in
    strength; components equal in it remain weakly labelled.
    Shapes ``(..., K)``, ``(..., K, C)``, ``(..., K)``.
    """
    weights, means, strengths = jnp.asarray(weights), jnp.asarray(means), jnp.asarray(strengths)
    order = jnp.argsort(strengths * means[..., 0], axis=-1)
    return (
        jnp.take_along_axis(weights, order, axis=-1),
        jnp.take_along_axis(means, order[..., None], axis=-2),
        jnp.take_along_axis(strengths, order, axis=-1),
    )


@jax.jit  # eagerly, the scan's many differently shaped slices would each compile on their own
def decayed_counts(last_example, episode_start, decay):
    """Recency-weighted counts ``w_r = decay * w_(r-1) + onehot(y_r)``, restarted at every episode.

    ``last_example`` ``(rows, C)`` holds the example that arrived just before row
    ``r`` (zeros at an episode start) and ``episode_start`` ``(rows,)`` flags
    the first row of each episode. The recurrence ``w_r = a_r w_(r-1) + b_r``
    (``a_r = 0`` at a start, ``decay`` elsewhere) is linear, so an associative
    scan evaluates it exactly in O(log rows) depth for any mix of episode
    lengths, instead of a sequential loop over rows inside every gradient.
    """
    factor = jnp.where(jnp.asarray(episode_start), 0.0, decay)
    last_example = jnp.asarray(last_example, dtype=factor.dtype)  # counts may come as integers
    factor = jnp.broadcast_to(factor[:, None], last_example.shape)

    def compose(earlier, later):
        factor_earlier, sum_earlier = earlier
        factor_later, sum_later = later
        return factor_earlier * factor_later, factor_later * sum_earlier + sum_later

    _, weighted = jax.lax.associative_scan(compose, (factor, last_example))
    return weighted


def tempered(probs, temperature):
    """``q ∝ probs^(1/temperature)``, normalised in log space (temperature 1 returns ``probs``)."""
    return jax.nn.softmax(jnp.log(jnp.asarray(probs)) / temperature, axis=-1)


def frequency_predictive(counts, pseudocount):
    """Smoothed relative frequency ``(n + eps) / (k + C eps)``: exact Bayes with the uniform prior ``eps * 1``."""
    return dirichlet_predictive(pseudocount * jnp.ones(jnp.shape(counts)[-1]), counts)
