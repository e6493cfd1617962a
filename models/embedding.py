"""The embedding model: a low-rank continuous map from a prompt's embedding to its row of the matrix.

README, "Embedding compression": the LLM does not store
rows; it maps prompt ``r`` to an embedding ``e_r`` (a hidden state) and the
embedding to a distribution. Here that map is ``m_r = softmax(b + U V^T e_r)``
with rank ``R`` much smaller than the number of columns ``C`` and the
embedding dimension ``D``, and the LLM's row scatters around it,
``pi_r ~ Dirichlet(s * m_r)``. The whole matrix is then held by
``C R + D R + C + 1`` numbers.

The embedding is prepared before it reaches the model, never inside it:
:func:`fit_features` centres the hidden states, projects them on their
leading principal components and divides by one scalar so that the entries
have unit mean square (distances keep their geometry up to that scale).
:func:`apply_features` applies training statistics to new rows, which
held-out evaluation needs.

Identifiability: ``U V^T = (U A)(V A^{-T})^T`` for any invertible ``R x R``
matrix ``A``, so ``U`` and ``V`` alone are defined only up to rotation and
scale (the priors fix the scale loosely, nothing fixes the rotation), and a
constant added to every logit changes nothing (``b`` and the column means of
``U V^T`` trade off; the prior on ``b`` settles it). Compare fits through the
product ``W = U V^T`` (centred over columns) or the subspaces it spans
(:func:`logit_map`), never through ``U`` or ``V`` alone.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesmatrix.models.closed_forms import clip_simplex
from bayesmatrix.models.matrix import check_observe, observe_rows
from bayesmatrix.models.priors import tau_prior

# The scale of the bias prior: LLM rows spread their logits over about ten
# nats (probabilities from 1 to the clipping floor of 1e-6), far more than
# the unit scale that suits the simulator.
BIAS_SCALE = 3.0
# A softmax over logits spread by more than ~87 nats underflows to exact zeros in
# float32, and a Dirichlet with a zero concentration has no density; the floor
# keeps every row a proper Dirichlet (it only binds far from any useful fit).
CONCENTRATION_FLOOR = 1e-30
DEFAULT_RANK = 4
DEFAULT_FEATURES = 64


def embedding(
    *,
    embedding,
    num_cols: int,
    rank: int = DEFAULT_RANK,
    probs=None,
    counts=None,
    total_count=None,
    observe: Sequence[str] = ("probs",),
    batch_size: int | None = None,
    epsilon: float = 1e-6,
):
    """Rows as a low-rank softmax map of the prompt embedding.

    U_ci ~ Normal(0, 1/sqrt(R))          (C, R) column loadings, site ``U`` = ``U_unit`` / sqrt(R)
    V_di ~ Normal(0, 1/sqrt(D))          (D, R) embedding read-out, site ``V`` = ``V_unit`` / sqrt(D)
    b_c  ~ Normal(0, 3)                  (C,)   bias: the logits at the mean embedding
    s    ~ LogNormal(log 10, 3)          concentration of rows around their mean
    m_r  = softmax(b + U V^T e_r)        (row, col), not stored (rows x cols per draw)
    probs_r  ~ Dirichlet(s m_r)                       the LLM's row, clipped at ``epsilon``
    counts_r ~ DirichletMultinomial(s m_r, N_r)       sampled tokens, the row integrated out

    ``embedding`` (rows, D) holds prepared features (:func:`fit_features`):
    with unit mean-square entries the prior scales give ``V^T e_r`` and
    ``U V^T e_r`` unit variance per entry. ``observe`` and ``epsilon`` act as
    in :func:`models.matrix.observe_rows` (``("probs", "counts")`` is the
    joint density, the counts drawn from the observed row).

    ``U`` and ``V`` are sampled as standard normals ``U_unit`` and ``V_unit``
    and scaled (non-centred): samplers and optimisers then start with logits
    of order one whatever ``D`` is, instead of logits spread over hundreds of
    nats (a softmax that underflows to exact zeros). ``U`` and ``V`` are
    deterministic sites.

    ``batch_size``: with an integer, each evaluation sees a random minibatch of
    rows (plate ``row`` with ``subsample_size``) and NumPyro scales its
    log-likelihood by ``rows / batch_size``, an unbiased estimate of the
    full-data term for stochastic variational inference. ``None`` (the
    default) uses every row: pass it for NUTS, predictions and evaluation.
    """
    check_observe(observe, probs=probs, counts=counts, total_count=total_count)
    embedding = jnp.asarray(embedding)
    num_rows, embed_dim = embedding.shape
    # A plate keeps one dim in a model (autoguides require it): ``col`` and ``feature`` are
    # dim -2 beside ``rank``, so the bias's column axis is an event axis (named in the registry).
    with numpyro.plate("rank", rank, dim=-1):
        with numpyro.plate("col", num_cols, dim=-2):
            U_unit = numpyro.sample("U_unit", dist.Normal(0.0, 1.0))  # (C, R)
            U = numpyro.deterministic("U", U_unit / np.sqrt(rank))
        with numpyro.plate("feature", embed_dim, dim=-2):
            V_unit = numpyro.sample("V_unit", dist.Normal(0.0, 1.0))  # (D, R)
            V = numpyro.deterministic("V", V_unit / np.sqrt(embed_dim))
    b = numpyro.sample("b", dist.Normal(0.0, BIAS_SCALE).expand([num_cols]).to_event(1))
    s = numpyro.sample("s", tau_prior())
    with numpyro.plate("row", num_rows, subsample_size=batch_size):
        batch_embedding = numpyro.subsample(embedding, event_dim=1)
        concentration = row_concentration(U, V, b, s, batch_embedding)  # (batch, C)
        observe_rows(
            dist.Dirichlet(concentration),
            lambda total, total_max: dist.DirichletMultinomial(concentration, total, total_count_max=total_max),
            probs=None if probs is None else numpyro.subsample(jnp.asarray(probs), event_dim=1),
            counts=None if counts is None else numpyro.subsample(jnp.asarray(counts), event_dim=1),
            total_count=None if total_count is None else numpyro.subsample(jnp.asarray(total_count), event_dim=0),
            observe=observe,
            explicit=False,
            epsilon=epsilon,
        )


def row_means(U, V, b, embedding):
    """``m_r = softmax(b + U V^T e_r)`` for every row of ``embedding`` (rows, D); returns (rows, C).

    Leading axes of the parameters broadcast (draws): ``U`` (..., C, R), ``V`` (..., D, R), ``b`` (..., C).
    """
    read_out = jnp.einsum("...rd,...dk->...rk", jnp.asarray(embedding), V)  # (..., rows, R)
    logits = jnp.expand_dims(b, -2) + jnp.einsum("...rk,...ck->...rc", read_out, U)
    return jax.nn.softmax(logits, axis=-1)


def row_concentration(U, V, b, s, embedding):
    """``s m_r`` for every row (rows, C), floored at :data:`CONCENTRATION_FLOOR`; ``s`` is a scalar or (draws,)."""
    concentration = jnp.expand_dims(jnp.asarray(s), (-1, -2)) * row_means(U, V, b, embedding)
    return jnp.maximum(concentration, CONCENTRATION_FLOOR)


def row_log_density(probs, embedding, U, V, b, s, epsilon: float = 1e-6):
    """``log Dirichlet(clip(probs_r) | s m_r)`` for each row: (rows,), or (draws, rows) with leading draw axes."""
    return dist.Dirichlet(row_concentration(U, V, b, s, embedding)).log_prob(clip_simplex(probs, epsilon))


def logit_map(U, V):
    """``W = U V^T`` (C, D) with each column centred over the ``C`` logits.

    The softmax ignores a constant added to every logit, so only the centred
    product is identified; it is what to compare between fits.
    """
    product = jnp.asarray(U) @ jnp.swapaxes(jnp.asarray(V), -1, -2)
    return product - product.mean(axis=-2, keepdims=True)


def num_parameters(num_cols: int, embed_dim: int, rank: int) -> int:
    """Free numbers of the model: ``U`` (C R), ``V`` (D R), ``b`` (C) and ``s``."""
    return num_cols * rank + embed_dim * rank + num_cols + 1


class EmbeddingFeatures(NamedTuple):
    """A fitted embedding preparation: centre, project on principal components, rescale."""

    mean: np.ndarray
    """(D_raw,) the training rows' mean hidden state."""
    basis: np.ndarray
    """(D_raw, D) the leading principal directions, orthonormal columns."""
    scale: float
    """The root mean square of the projected training entries; features are divided by it."""


def fit_features(embedding: np.ndarray, components: int | None = DEFAULT_FEATURES) -> EmbeddingFeatures:
    """Fit :class:`EmbeddingFeatures` on (training) hidden states ``embedding`` (rows, D_raw).

    ``components``: how many principal components to keep (at most the rank of
    the centred embedding); ``None`` keeps every direction (a rotation, no loss).
    One scale for all features keeps relative distances, so continuity measured
    on features is continuity of the hidden states, up to the dropped components.
    """
    embedding = np.asarray(embedding, dtype=np.float64)
    mean = embedding.mean(axis=0)
    _, singular, directions = np.linalg.svd(embedding - mean, full_matrices=False)
    available = int(np.sum(singular > singular[0] * 1e-10)) if singular.size else 0
    keep = available if components is None else min(int(components), available)
    if keep < 1:
        raise ValueError("the embedding has no variation to keep")
    basis = directions[:keep].T
    projected = (embedding - mean) @ basis
    scale = float(np.sqrt(np.mean(projected**2)))
    return EmbeddingFeatures(mean=mean, basis=basis, scale=scale)


def apply_features(features: EmbeddingFeatures, embedding: np.ndarray) -> np.ndarray:
    """The prepared features (rows, D) of hidden states ``embedding`` (rows, D_raw)."""
    return (np.asarray(embedding, dtype=np.float64) - features.mean) @ features.basis / features.scale
