"""Measures of embedding compression and continuity on plain arrays: JS, Dirichlet fits, baselines, Lipschitz bounds.

Pure NumPy/SciPy functions (no JAX, no xarray), used by the study
(:mod:`bayesmatrix.analysis.embedding.study`) and by the tests. The protocol
they serve is described in :mod:`bayesmatrix.analysis.embedding`.

References: Minka (2000), "Estimating a Dirichlet distribution" (the global
Dirichlet); Lin (1991), "Divergence measures based on the Shannon entropy"
(Jensen-Shannon); Björck & Golub (1973) (principal angles).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import optimize
from scipy.special import digamma, gammaln, logsumexp

from bayesmatrix.analysis.metrics import kl_bits

EPSILON = 1e-6
"""The models' clip of observed rows (:func:`bayesmatrix.data.closed_forms.clip_simplex` in NumPy)."""
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
LIPSCHITZ_QUANTILES = (0.5, 0.9, 0.99)


def js_bits(p, q) -> np.ndarray:
    """Jensen-Shannon divergence ``KL(p || a) / 2 + KL(q || a) / 2`` with ``a = (p + q) / 2``, in bits, in [0, 1]."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    average = 0.5 * (p + q)
    return 0.5 * kl_bits(p, average) + 0.5 * kl_bits(q, average)


def dirichlet_log_density(probs, concentration) -> np.ndarray:
    """``log Dirichlet(probs_r | concentration_r)`` over the last axis; rows should be clipped first."""
    probs = np.asarray(probs, dtype=np.float64)
    concentration = np.broadcast_to(np.asarray(concentration, dtype=np.float64), probs.shape)
    return (
        gammaln(concentration.sum(axis=-1))
        - gammaln(concentration).sum(axis=-1)
        + ((concentration - 1.0) * np.log(probs)).sum(axis=-1)
    )


def fit_dirichlet(probs) -> np.ndarray:
    """Maximum-likelihood ``alpha`` of one Dirichlet for rows ``probs`` (clipped rows; concave in alpha)."""
    mean_log = np.log(np.asarray(probs, dtype=np.float64)).mean(axis=0)

    def negative(log_alpha):
        alpha = np.exp(log_alpha)
        total = alpha.sum()
        value = gammaln(total) - gammaln(alpha).sum() + ((alpha - 1.0) * mean_log).sum()
        gradient = (digamma(total) - digamma(alpha) + mean_log) * alpha
        return -value, -gradient

    # Moment-free start: the mean row at unit strength per column.
    start = np.log(np.exp(mean_log) / np.exp(mean_log).sum() * len(mean_log))
    result = optimize.minimize(negative, start, jac=True, method="L-BFGS-B", options={"maxiter": 5000})
    return np.exp(result.x)


def fit_concentration(probs, means) -> float:
    """The ``s`` maximising ``sum_r log Dirichlet(probs_r | s means_r)`` (clipped rows, fixed means)."""
    probs, means = np.asarray(probs, dtype=np.float64), np.asarray(means, dtype=np.float64)
    result = optimize.minimize_scalar(
        lambda log_s: -dirichlet_log_density(probs, math.exp(log_s) * means).sum(),
        bounds=(math.log(1e-3), math.log(1e7)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(result.x))


def squared_distances(a, b) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` (n, D) and ``b`` (m, D): (n, m)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    squared = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.maximum(squared, 0.0)


def neighbour_means(
    train_features, train_probs, query_features, k: int, *, leave_one_out: bool = False, average: str = "arithmetic"
) -> np.ndarray:
    """Mean row of each query's ``k`` nearest training rows in feature space: (queries, C).

    ``average="arithmetic"`` averages the probabilities; ``"geometric"`` averages
    their logarithms and renormalises (rows must be clipped above 0), which
    keeps a column small when most neighbours make it small, as the Dirichlet
    density's ``log p`` terms reward. ``leave_one_out=True`` (queries are the
    training rows themselves) skips each row's own entry.
    """
    distances = squared_distances(query_features, train_features)
    if leave_one_out:
        np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    rows = np.asarray(train_probs, dtype=np.float64)[nearest]  # (queries, k, C)
    if average == "arithmetic":
        return rows.mean(axis=1)
    if average == "geometric":
        log_mean = np.log(rows).mean(axis=1)
        return np.exp(log_mean - logsumexp(log_mean, axis=1, keepdims=True))
    raise ValueError(f"average must be 'arithmetic' or 'geometric', not {average!r}")


class NeighbourBaseline(NamedTuple):
    """Nearest neighbours fitted as :func:`neighbour_baseline` does."""

    k: int
    """Neighbours, chosen by validation density."""
    s: float
    """Dirichlet precision around the neighbours' mean, fitted on the training rows by leave-one-out."""
    scores: dict
    """Validation log density per row for every ``k`` tried."""


def neighbour_baseline(train_features, train_probs, validation_features, validation_probs, neighbours,
                       average: str = "arithmetic") -> NeighbourBaseline:
    """Fit the nearest-neighbour baseline: for each ``k``, the precision ``s`` by leave-one-out on the
    training rows, then the ``k`` whose ``Dirichlet(s * neighbour mean)`` scores the validation rows best."""
    fitted = {}
    for k in neighbours:
        if k >= len(train_probs):
            continue
        loo = neighbour_means(train_features, train_probs, train_features, k, leave_one_out=True, average=average)
        s = fit_concentration(train_probs, loo)
        means = neighbour_means(train_features, train_probs, validation_features, k, average=average)
        fitted[k] = (s, float(dirichlet_log_density(validation_probs, s * means).mean()))
    best = max(fitted, key=lambda k: fitted[k][1])
    return NeighbourBaseline(k=best, s=fitted[best][0], scores={k: score for k, (_, score) in fitted.items()})


def lipschitz_ratios(distribution_distance, embedding_distance) -> np.ndarray:
    """Ratios ``distribution distance / embedding distance`` over pairs at a positive embedding distance."""
    distribution_distance = np.asarray(distribution_distance, dtype=np.float64)
    embedding_distance = np.asarray(embedding_distance, dtype=np.float64)
    apart = embedding_distance > 0
    return distribution_distance[apart] / embedding_distance[apart]


def lipschitz_summary(ratios, quantiles: Sequence[float] = LIPSCHITZ_QUANTILES) -> dict[str, float]:
    """Quantiles (``q50``, ``q90``, ``q99``...) and the ``max`` of the ratios: empirical Lipschitz bounds."""
    ratios = np.asarray(ratios, dtype=np.float64)
    summary = {f"q{round(100 * q):d}": float(np.quantile(ratios, q)) for q in quantiles}
    summary["max"] = float(ratios.max())
    return summary


def map_lipschitz_bound(W) -> float:
    """Bits of JS per unit of embedding distance that ``m(e) = softmax(b + W e)`` cannot exceed.

    ``JS <= (KL(p||q) + KL(q||p)) / 4`` (KL is convex in its second argument),
    and for two softmaxes the symmetric KL is ``sum_c (p_c - q_c)(z_c - z'_c)``,
    at most ``||p - q||_1 * range(dz) / 2 <= range(dz) <= max_{c,c'} ||W_c - W_c'|| ||de||``.
    So ``JS_bits <= max_{c,c'} ||W_c - W_c'|| ||de|| / (4 ln 2)``. ``W`` is (C, D).
    """
    W = np.asarray(W, dtype=np.float64)
    squared = squared_distances(W, W)
    return float(np.sqrt(squared.max()) / (4.0 * math.log(2.0)))


def principal_angles(a, b) -> np.ndarray:
    """Principal angles in degrees (ascending) between the column spaces of ``a`` and ``b``."""
    from scipy.linalg import subspace_angles

    return np.sort(np.degrees(subspace_angles(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))))


def map_subspace_angles(W_true, W_fit, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal angles (degrees) between the leading rank-``rank`` subspaces of two logit maps (C, D).

    Returns (column-side angles, embedding-side angles): the span of the logit
    directions in R^C and of the embedding directions read in R^D. Both maps
    should be centred over columns (:func:`models.embedding.logit_map`).
    """
    left_true, _, right_true = np.linalg.svd(np.asarray(W_true, dtype=np.float64), full_matrices=False)
    left_fit, _, right_fit = np.linalg.svd(np.asarray(W_fit, dtype=np.float64), full_matrices=False)
    return (
        principal_angles(left_true[:, :rank], left_fit[:, :rank]),
        principal_angles(right_true[:rank].T, right_fit[:rank].T),
    )


def choose_rank(density_by_rank: dict[int, np.ndarray]) -> int:
    """The smallest rank whose held-out density is within one standard error of the best rank's.

    ``density_by_rank`` maps each rank to the log density of the same held-out
    rows (rows,). The standard error is that of the paired per-row difference
    from the best rank, so row-to-row variation common to all ranks cancels;
    within it, the extra parameters of a larger rank have not earned their keep.
    """
    best = max(density_by_rank, key=lambda rank: density_by_rank[rank].mean())
    for rank in sorted(density_by_rank):
        gap = density_by_rank[best] - density_by_rank[rank]
        standard_error = gap.std(ddof=1) / math.sqrt(len(gap)) if len(gap) > 1 else 0.0
        if gap.mean() <= standard_error:
            return rank
    return best


def compression_ratio(num_rows: int, num_cols: int, embed_dim: int, rank: int) -> float:
    """Rows x columns over the parameters ``C R + D R + C + 1`` of the rank-R map."""
    from bayesmatrix.models.embedding import num_parameters

    return num_rows * num_cols / num_parameters(num_cols, embed_dim, rank)


def split_rows(num_rows: int, fractions: Sequence[float] = SPLIT_FRACTIONS, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A fixed random partition of ``range(num_rows)`` into parts of the given fractions, each sorted."""
    order = np.random.default_rng(seed).permutation(num_rows)
    cuts = np.round(np.cumsum(fractions)[:-1] * num_rows).astype(int)
    return tuple(np.sort(part) for part in np.split(order, cuts))


def random_pairs(num_rows: int, num_pairs: int, seed: int = 0) -> np.ndarray:
    """``num_pairs`` pairs ``(i, j)``, ``i != j``, drawn uniformly with replacement: (pairs, 2)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, num_rows, num_pairs)
    second = (first + rng.integers(1, num_rows, num_pairs)) % num_rows  # never equal to first
    return np.stack([first, second], axis=1)


def nearest_pairs(features) -> np.ndarray:
    """Each row with its nearest other row in feature space: (rows, 2)."""
    distances = squared_distances(features, features)
    np.fill_diagonal(distances, np.inf)
    return np.stack([np.arange(len(distances)), distances.argmin(axis=1)], axis=1)

