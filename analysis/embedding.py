"""Embedding compression and continuity: held-out density, choice of rank, compression ratio, Lipschitz bounds.

DESIGN.md §1: the LLM holds its enormous matrix as a continuous map from a
prompt's embedding to a row. This module measures how well the low-rank map
of :mod:`models.embedding` stands in for the LLM on rows it never saw, and how
continuous the LLM's own map is.

- **Held-out rows.** One fixed random split of the rows into training,
  validation and test (70/15/15). The embedding model is fitted by SVI on the
  training rows only; the rank is the smallest whose validation density is
  within one standard error of the best (:func:`choose_rank`); the test rows
  are scored once, by the posterior predictive density
  ``log mean_j Dirichlet(p_r | s_j m_r(theta_j))``. Two baselines, fitted on the
  same training rows: one global Dirichlet that ignores the embedding
  (maximum likelihood), and nearest neighbours in embedding space (a row's
  mean is the mean of its ``k`` nearest training rows, ``k`` chosen on the
  validation rows, scored by a Dirichlet whose precision is fitted on the
  training rows by leave-one-out), once with the arithmetic mean of the
  neighbours' rows and once with their geometric mean (renormalised), which
  suits the Dirichlet's ``log p`` terms better.
- **Compression ratio** = rows x columns / parameters of the composed map from
  the raw hidden state: the feature projection folds into ``V`` and the
  centring into ``b``, so the count is ``C R + D_raw R + C + 1``.
- **Continuity.** For many prompt pairs (random pairs plus each row with its
  nearest neighbour, so that small distances are represented), the
  Jensen-Shannon divergence in bits between the two rows against the
  Euclidean distance of their embedding features. The empirical Lipschitz
  bound is a high quantile (and the max) of the ratio JS / distance. The same
  ratios of the fitted map's means ``m_r`` give its empirical bound, and
  ``max_{c,c'} ||W_c - W_c'|| / (4 ln 2)`` with ``W = U V^T`` bounds it
  analytically (JS <= symmetric KL / 4, and the symmetric KL of two softmaxes
  is at most the range of their logit difference). JS is quadratic in a small
  change of a distribution, so at small distances the ratio is small; the
  bound is an envelope, not a derivative.

Arrays first (every measure is a small function on NumPy arrays), then
:func:`embedding_study` on an LLM log and :func:`write_study` for the files.
``python -m analysis.embedding LOG --out DIR`` runs both.

References: Minka (2000), "Estimating a Dirichlet distribution" (the global
Dirichlet); Lin (1991), "Divergence measures based on the Shannon entropy"
(Jensen-Shannon); Björck & Golub (1973) (principal angles).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from scipy import optimize
from scipy.special import digamma, gammaln, logsumexp

from bayesmatrix.analysis.metrics import kl_bits

EPSILON = 1e-6
RANKS = (1, 2, 4, 8, 16, 32, 64)
NEIGHBOURS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
LIPSCHITZ_QUANTILES = (0.5, 0.9, 0.99)


# ---------------------------------------------------------------------------
# Measures on arrays
# ---------------------------------------------------------------------------


def js_bits(p, q) -> np.ndarray:
    """Jensen-Shannon divergence ``KL(p || a) / 2 + KL(q || a) / 2`` with ``a = (p + q) / 2``, in bits, in [0, 1]."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    average = 0.5 * (p + q)
    return 0.5 * kl_bits(p, average) + 0.5 * kl_bits(q, average)


def clip_rows(probs, epsilon: float = EPSILON) -> np.ndarray:
    """Rows clipped below at ``epsilon`` and renormalised, as the model observes them."""
    clipped = np.clip(np.asarray(probs, dtype=np.float64), epsilon, None)
    return clipped / clipped.sum(axis=-1, keepdims=True)


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


# ---------------------------------------------------------------------------
# The fitted embedding model
# ---------------------------------------------------------------------------


class EmbeddingFit(NamedTuple):
    """Posterior draws of one fit of :func:`models.embedding.embedding`."""

    U: np.ndarray
    """(draws, C, R)"""
    V: np.ndarray
    """(draws, D, R)"""
    b: np.ndarray
    """(draws, C)"""
    s: np.ndarray
    """(draws,)"""
    converged: bool
    """Whether SVI reached an ELBO plateau."""
    num_steps: int
    """SVI steps taken."""


def fit_embedding_model(
    probs,
    features,
    rank: int,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    num_samples: int = 200,
    learning_rate: float = 0.01,
    max_steps: int = 20000,
    min_steps: int = 1000,
    window: int = 500,
    progress_bar: bool = False,
) -> EmbeddingFit:
    """Fit the embedding model to rows ``probs`` (rows, C) with ``features`` (rows, D) by SVI (mean-field normal guide)."""
    from bayesmatrix.inference.svi import svi
    from bayesmatrix.models.embedding import embedding

    probs = np.asarray(probs, dtype=np.float64)
    kwargs = dict(embedding=np.asarray(features, dtype=np.float64), num_cols=probs.shape[1], rank=rank, probs=probs)
    result = svi(
        embedding,
        {**kwargs, "batch_size": batch_size},
        guide="normal",
        learning_rate=learning_rate,
        max_steps=max_steps,
        min_steps=min_steps,
        window=window,
        num_samples=num_samples,
        seed=seed,
        progress_bar=progress_bar,
        predict_kwargs={**kwargs, "batch_size": None},
    )
    posterior = result.datatree["posterior"]
    draws = {name: np.asarray(posterior[name].values[0], dtype=np.float64) for name in ("U", "V", "b", "s")}
    return EmbeddingFit(**draws, converged=result.converged, num_steps=result.num_steps)


def predictive_log_density(fit: EmbeddingFit, probs, features, epsilon: float = EPSILON) -> np.ndarray:
    """Posterior predictive log density of each row, ``log mean_j Dirichlet(clip(p_r) | s_j m_r(theta_j))``: (rows,)."""
    from bayesmatrix.models.embedding import row_log_density

    per_draw = np.asarray(
        row_log_density(np.asarray(probs), np.asarray(features), fit.U, fit.V, fit.b, fit.s, epsilon),
        dtype=np.float64,
    )  # (draws, rows)
    return logsumexp(per_draw, axis=0) - math.log(per_draw.shape[0])


def posterior_mean_rows(fit: EmbeddingFit, features, chunk: int = 20) -> np.ndarray:
    """The posterior mean of ``m_r`` for every row (rows, C), averaged over draws in chunks to bound memory."""
    from bayesmatrix.models.embedding import row_means

    total = 0.0
    for start in range(0, len(fit.s), chunk):
        part = slice(start, start + chunk)
        total = total + np.asarray(row_means(fit.U[part], fit.V[part], fit.b[part], np.asarray(features))).sum(axis=0)
    return total / len(fit.s)


def posterior_mean_map(fit: EmbeddingFit) -> np.ndarray:
    """The posterior mean of the identified logit map ``W = U V^T`` centred over columns: (C, D)."""
    from bayesmatrix.models.embedding import logit_map

    return np.asarray(logit_map(fit.U, fit.V), dtype=np.float64).mean(axis=0)


# ---------------------------------------------------------------------------
# The study on an LLM log
# ---------------------------------------------------------------------------


class EmbeddingStudy(NamedTuple):
    """What :func:`embedding_study` measures; the tables are pandas DataFrames."""

    heldout: Any
    """Test rows: per model, mean log density per row (nats), its standard error, the total, and the mean JS
    (bits) between the predicted mean row and the LLM's row."""
    ranks: Any
    """Per rank: validation log density per row, SVI convergence and steps, parameters, compression ratio."""
    continuity: Any
    """Lipschitz bounds (bits of JS per unit embedding distance): LLM rows, the fitted map (empirical, analytic)."""
    pairs: Any
    """Every pair: rows i and j, embedding distance, JS of the LLM rows and of the fitted means, and its kind."""
    summary: dict
    """Chosen rank, compression ratio, sizes, split, options: JSON-ready."""


def prepare_rows(ds, num_columns: int | None, train_rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The rows the study models (rows, C) and their column labels.

    ``num_columns=None``: the log's columns without ``<other>``, renormalised
    (as ``inference.prepare`` does). An integer keeps the ``num_columns`` columns
    of largest mean probability over the training rows and folds every other
    column into ``<other>``; by the Dirichlet's aggregation property the folded
    rows follow the same kind of model with fewer columns.
    """
    from bayesmatrix.data.llmlog import OTHER

    probs = np.asarray(ds["probs"].values, dtype=np.float64)
    labels = [str(c) for c in ds["col"].values]
    if num_columns is None:
        kept = probs[:, :-1]
        return kept / kept.sum(axis=1, keepdims=True), labels[:-1]
    named = probs[:, :-1]
    order = np.argsort(-named[train_rows].mean(axis=0), kind="stable")[: min(num_columns, named.shape[1])]
    kept = named[:, order]
    folded = np.clip(1.0 - kept.sum(axis=1, keepdims=True), 0.0, None)
    rows = np.concatenate([kept, folded], axis=1)
    return rows / rows.sum(axis=1, keepdims=True), [labels[j] for j in order] + [OTHER]


def shrink_log(ds, num_columns: int, seed: int = 0):
    """The log with only the study's ``num_columns`` columns, every other column folded into ``<other>``.

    The columns are those :func:`embedding_study` keeps with the same ``seed``
    (largest mean probability over its training rows), so the study gives the
    same numbers on the shrunk log as on the full one; a log of thousands of
    top-K columns becomes small enough to ship. Prompts, embeddings and
    attributes are kept; ``shrunk_from_columns`` records the original width.
    """
    from bayesmatrix.data.llmlog import make_log

    train = split_rows(int(ds.sizes["row"]), SPLIT_FRACTIONS, seed)[0]
    probs, columns = prepare_rows(ds, num_columns, train)
    token_of = dict(zip((str(c) for c in ds["col"].values), np.asarray(ds["col_token_id"].values).tolist()))
    optional = {name: ds[name].values for name in ("prompt", "embedding") if name in ds}
    kept_attrs = {key: value for key, value in ds.attrs.items()
                  if key not in ("schema", "model", "task", "created", "software_version")}
    return make_log(
        probs,
        columns,
        [token_of[c] for c in columns],
        model=str(ds.attrs.get("model", "")),
        task=json.loads(ds.attrs.get("task", "{}") or "{}"),
        **optional,
        **kept_attrs,
        shrunk_from_columns=int(ds.sizes["col"]),
        shrunk_split_seed=seed,
    )


def embedding_study(
    ds,
    *,
    ranks: Sequence[int] = RANKS,
    num_columns: int | None = 256,
    features: int | None = 64,
    neighbours: Sequence[int] = NEIGHBOURS,
    num_pairs: int = 20000,
    batch_size: int | None = None,
    num_samples: int = 200,
    max_steps: int = 20000,
    learning_rate: float = 0.01,
    epsilon: float = EPSILON,
    seed: int = 0,
    progress_bar: bool = True,
    file: str | None = None,
) -> EmbeddingStudy:
    """Held-out density against baselines, the rank choice, the compression ratio and continuity for a log.

    The log needs ``embedding`` (row, embed). See the module docstring for the
    protocol; ``features`` is the number of principal components kept
    (:func:`models.embedding.fit_features`, fitted on the training rows).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from bayesmatrix.data.errors import InputError
    from bayesmatrix.models.embedding import apply_features, fit_features, num_parameters

    file = file or ds.encoding.get("source") or "<in memory>"
    if "embedding" not in ds:
        raise InputError("missing; log with --embeddings to study embedding compression", file=file, field="embedding")
    num_rows = int(ds.sizes["row"])
    if num_rows < 20:
        raise InputError(f"has {num_rows} rows; the study splits rows three ways and needs at least 20",
                         file=file, field="probs")
    if not ranks or min(ranks) < 1:
        raise InputError(f"is {tuple(ranks)}; ranks must be positive", field="ranks")
    train, validation, test = split_rows(num_rows, SPLIT_FRACTIONS, seed)
    probs, columns = prepare_rows(ds, num_columns, train)
    observed = clip_rows(probs, epsilon)
    raw_embedding = np.asarray(ds["embedding"].values, dtype=np.float64)
    transform = fit_features(raw_embedding[train], features)
    feats = apply_features(transform, raw_embedding)
    num_cols, raw_dim = observed.shape[1], raw_embedding.shape[1]

    # Rank: fitted on training rows, chosen by validation density.
    fits: dict[int, EmbeddingFit] = {}
    validation_density: dict[int, np.ndarray] = {}
    rank_rows = []
    for rank in tqdm(sorted(set(int(r) for r in ranks)), desc="ranks", disable=not progress_bar, leave=False):
        fit = fit_embedding_model(
            observed[train], feats[train], rank, batch_size=batch_size, seed=seed, num_samples=num_samples,
            learning_rate=learning_rate, max_steps=max_steps,
        )
        fits[rank] = fit
        density = predictive_log_density(fit, observed[validation], feats[validation], epsilon)
        validation_density[rank] = density
        rank_rows.append({
            "rank": rank,
            "validation_log_density": float(density.mean()),
            "validation_se": float(density.std(ddof=1) / math.sqrt(len(density))),
            "converged": fit.converged,
            "svi_steps": fit.num_steps,
            "parameters": num_parameters(num_cols, raw_dim, rank),
            "compression_ratio": compression_ratio(num_rows, num_cols, raw_dim, rank),
        })
    rank_table = pd.DataFrame(rank_rows)
    best_rank = choose_rank(validation_density)
    rank_table["chosen"] = rank_table["rank"] == best_rank
    best = fits[best_rank]

    # Held-out test rows: the chosen model and the two baselines, all fitted on the training rows.
    model_density = predictive_log_density(best, observed[test], feats[test], epsilon)
    model_means = posterior_mean_rows(best, feats)
    alpha = fit_dirichlet(observed[train])
    global_density = dirichlet_log_density(observed[test], alpha)
    knn_rows = []
    for average in ("arithmetic", "geometric"):
        knn = neighbour_baseline(feats[train], observed[train], feats[validation], observed[validation], neighbours,
                                 average)
        knn_means_test = neighbour_means(feats[train], observed[train], feats[test], knn.k, average=average)
        knn_rows.append((f"nearest neighbours, {average} mean, k={knn.k}",
                         dirichlet_log_density(observed[test], knn.s * knn_means_test), knn_means_test,
                         f"k chosen on validation from {tuple(knn.scores)}, s {knn.s:.4g} by leave-one-out"))

    def row(name, density, means, detail):
        return {
            "model": name,
            "log_density_per_row": float(density.mean()),
            "se": float(density.std(ddof=1) / math.sqrt(len(density))),
            "total": float(density.sum()),
            "mean_js_bits": float(js_bits(observed[test], means).mean()),
            "detail": detail,
        }

    heldout = pd.DataFrame([
        row(f"embedding rank {best_rank}", model_density, model_means[test],
            f"SVI on {len(train)} rows, posterior mean s {best.s.mean():.4g}"),
        row("global Dirichlet", global_density, np.broadcast_to(alpha / alpha.sum(), observed[test].shape),
            f"maximum likelihood, strength {alpha.sum():.4g}"),
        *(row(*knn_row) for knn_row in knn_rows),
    ])
    heldout["difference_vs_embedding"] = heldout["log_density_per_row"] - heldout["log_density_per_row"].iloc[0]

    # Continuity over random and nearest-neighbour pairs.
    pair_index = np.concatenate([random_pairs(num_rows, num_pairs, seed), nearest_pairs(feats)])
    kind = np.array(["random"] * num_pairs + ["nearest"] * num_rows)
    first, second = pair_index[:, 0], pair_index[:, 1]
    distance = np.linalg.norm(feats[first] - feats[second], axis=1)
    llm_js = js_bits(probs[first], probs[second])
    map_js = js_bits(model_means[first], model_means[second])
    pairs = pd.DataFrame({"i": first, "j": second, "kind": kind, "embedding_distance": distance,
                          "js_llm_bits": llm_js, "js_map_bits": map_js})
    analytic = map_lipschitz_bound(posterior_mean_map(best))
    continuity = pd.DataFrame([
        {"rows": "LLM", **lipschitz_summary(lipschitz_ratios(llm_js, distance))},
        {"rows": f"fitted map rank {best_rank} (empirical)", **lipschitz_summary(lipschitz_ratios(map_js, distance))},
        {"rows": f"fitted map rank {best_rank} (analytic bound)", "max": analytic},
    ])

    summary = {
        "log_model": str(ds.attrs.get("model", "")),
        "rows": num_rows,
        "columns": num_cols,
        "column_labels": columns,
        "raw_embed_dim": raw_dim,
        "features": int(feats.shape[1]),
        "split": {"train": len(train), "validation": len(validation), "test": len(test), "seed": seed},
        "chosen_rank": best_rank,
        "parameters": num_parameters(num_cols, raw_dim, best_rank),
        "compression_ratio": compression_ratio(num_rows, num_cols, raw_dim, best_rank),
        "epsilon": epsilon,
        "num_pairs": len(pairs),
        "options": {"ranks": list(ranks), "num_columns": num_columns, "neighbours": list(neighbours),
                    "batch_size": batch_size, "num_samples": num_samples, "max_steps": max_steps,
                    "learning_rate": learning_rate},
    }
    return EmbeddingStudy(heldout=heldout, ranks=rank_table, continuity=continuity, pairs=pairs, summary=summary)


def plot_continuity(pairs, continuity, path: Path, bins: int = 30) -> Path:
    """JS (bits) against embedding distance for every pair, binned medians of the LLM and the fitted map,
    and lines through the origin at the empirical Lipschitz bounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    distance = pairs["embedding_distance"].to_numpy()
    llm = pairs["js_llm_bits"].to_numpy()
    fitted = pairs["js_map_bits"].to_numpy()
    nearest = (pairs["kind"] == "nearest").to_numpy()
    ax.scatter(distance[~nearest], llm[~nearest], s=2, alpha=0.15, color="tab:blue", lw=0, label="random pairs (LLM)")
    ax.scatter(distance[nearest], llm[nearest], s=3, alpha=0.4, color="tab:green", lw=0,
               label="nearest neighbours (LLM)")
    edges = np.quantile(distance, np.linspace(0, 1, bins + 1))
    centre = 0.5 * (edges[1:] + edges[:-1])
    which = np.clip(np.searchsorted(edges, distance, side="right") - 1, 0, bins - 1)
    for values, colour, label in ((llm, "navy", "LLM median"), (fitted, "tab:red", "fitted map median")):
        medians = np.array([np.median(values[which == b]) if np.any(which == b) else np.nan for b in range(bins)])
        ax.plot(centre, medians, color=colour, lw=2, label=label)
    grid = np.linspace(0, distance.max(), 50)
    llm_bounds = continuity.iloc[0]
    for key, style in (("q99", "--"), ("max", ":")):
        ax.plot(grid, llm_bounds[key] * grid, color="black", ls=style, lw=1,
                label=f"LLM {key} ratio {llm_bounds[key]:.3g} bits/unit")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, distance.max() * 1.02)
    ax.set_xlabel("embedding distance (features, unit RMS)")
    ax.set_ylabel("Jensen-Shannon divergence (bits)")
    ax.set_title("Continuity: next-token distribution distance against embedding distance")
    ax.legend(fontsize=7, loc="lower right", markerscale=4)
    fig.tight_layout()
    from bayesmatrix.data.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def write_study(study: EmbeddingStudy, out: str | Path) -> list[Path]:
    """Write heldout.csv, ranks.csv, continuity.csv, pairs.csv, summary.json and continuity.png into ``out``."""
    from bayesmatrix.data.atomic import atomic_path, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in (("heldout", study.heldout), ("ranks", study.ranks), ("continuity", study.continuity),
                        ("pairs", study.pairs)):
        with atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
        written.append(out / f"{name}.csv")
    write_text_atomic(out / "summary.json", json.dumps(study.summary, indent=2) + "\n")
    written.append(out / "summary.json")
    written.append(plot_continuity(study.pairs, study.continuity, out / "continuity.png"))
    return written


def format_study(study: EmbeddingStudy) -> str:
    """The held-out table, the rank table, the compression ratio and the continuity table as text."""
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
        return "\n\n".join([
            "Held-out test rows (log density per row, nats; higher is better):\n"
            + study.heldout.drop(columns=["detail"]).to_string(index=False),
            "Rank choice on validation rows:\n" + study.ranks.to_string(index=False),
            f"Chosen rank {study.summary['chosen_rank']}: {study.summary['parameters']} parameters, "
            f"compression ratio {study.summary['compression_ratio']:.1f} "
            f"({study.summary['rows']} rows x {study.summary['columns']} columns)",
            "Continuity (bits of JS per unit embedding distance):\n" + study.continuity.to_string(index=False),
        ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.embedding",
        description="Embedding compression and continuity of an LLM log with embeddings: held-out density "
        "against a global Dirichlet and nearest neighbours, the rank, the compression ratio and a continuity plot.",
    )
    parser.add_argument("log", metavar="LOG", help="LLM log with 'embedding' (bayesmatrix log --embeddings)")
    parser.add_argument("--out", metavar="DIR", help="folder for the tables, summary.json and the plot")
    parser.add_argument("--shrink", metavar="FILE",
                        help="instead of the study, write LOG with only the study's --columns (the rest folded into "
                        "<other>) to FILE")
    parser.add_argument("--ranks", default=",".join(map(str, RANKS)), help="ranks to try, e.g. 1,2,4,8")
    parser.add_argument("--columns", type=int, default=256,
                        help="keep the N columns of largest mean probability, fold the rest into <other> "
                        "(0: all columns, <other> dropped)")
    parser.add_argument("--features", type=int, default=64, help="principal components of the embedding kept")
    parser.add_argument("--pairs", type=int, default=20000, help="random prompt pairs for continuity")
    parser.add_argument("--batch-size", type=int, default=0, help="SVI minibatch rows (0: full batch)")
    parser.add_argument("--num-samples", type=int, default=200, help="draws from the fitted guide")
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from bayesmatrix.data.errors import InputError

    try:
        ranks = tuple(int(r) for r in args.ranks.split(","))
    except ValueError:
        print(f"error: --ranks: {args.ranks!r} is not a comma-separated list of integers", file=sys.stderr)
        return 2
    from bayesmatrix.data.llmlog import OTHER, read_log

    if (args.out is None) == (args.shrink is None):
        print("error: give exactly one of --out DIR (the study) or --shrink FILE", file=sys.stderr)
        return 2
    try:
        ds = read_log(args.log)
        if args.shrink is not None:
            if not args.columns:
                raise InputError("must be a positive number of columns to keep", field="--columns")
            from bayesmatrix.data.llmlog import write_log

            write_log(shrink_log(ds, args.columns, args.seed), args.shrink)
            print(f"wrote {args.shrink}: {args.columns} columns and {OTHER!r} from {ds.sizes['col']}")
            return 0
        study = embedding_study(
            ds, ranks=ranks, num_columns=args.columns or None, features=args.features, num_pairs=args.pairs,
            batch_size=args.batch_size or None, num_samples=args.num_samples, max_steps=args.max_steps,
            learning_rate=args.learning_rate, seed=args.seed, progress_bar=not args.quiet, file=args.log,
        )
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_study(study, args.out)
    print(format_study(study))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
