"""The embedding study on an LLM log: the embedding model fitted by SVI, held out against baselines, written out.

:func:`embedding_study` runs the protocol of :mod:`bayesmatrix.analysis.embedding`
on a log with embeddings; :func:`write_study` writes its tables, summary and
continuity plot; :func:`format_study` prints them. ``bayesmatrix embedding``
runs all three from the command line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from scipy.special import logsumexp

from bayesmatrix.analysis.embedding.measures import (
    EPSILON,
    SPLIT_FRACTIONS,
    choose_rank,
    compression_ratio,
    dirichlet_log_density,
    fit_dirichlet,
    js_bits,
    lipschitz_ratios,
    lipschitz_summary,
    map_lipschitz_bound,
    nearest_pairs,
    neighbour_baseline,
    neighbour_means,
    random_pairs,
    split_rows,
)
from bayesmatrix.data.closed_forms import clip_simplex

RANKS = (1, 2, 4, 8, 16, 32, 64)
NEIGHBOURS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


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
    attributes are kept; ``shrunk_from_columns`` records the original width
    (the first log's, when a shrunk log is shrunk again).
    """
    from bayesmatrix.data.llmlog import make_log

    train = split_rows(int(ds.sizes["row"]), SPLIT_FRACTIONS, seed)[0]
    probs, columns = prepare_rows(ds, num_columns, train)
    token_of = dict(zip((str(c) for c in ds["col"].values), np.asarray(ds["col_token_id"].values).tolist()))
    optional = {name: ds[name].values for name in ("prompt", "embedding") if name in ds}
    kept_attrs = {key: value for key, value in ds.attrs.items()
                  if key not in ("schema", "model", "task", "created", "software_version", "shrunk_split_seed")}
    kept_attrs.setdefault("shrunk_from_columns", int(ds.sizes["col"]))
    return make_log(
        probs,
        columns,
        [token_of[c] for c in columns],
        model=str(ds.attrs.get("model", "")),
        task=json.loads(ds.attrs.get("task", "{}") or "{}"),
        **optional,
        **kept_attrs,
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
        raise InputError("missing; the study needs a log written with the embedding of each row (README, "
                         "\"Embedding compression\")", file=file, field="embedding")
    num_rows = int(ds.sizes["row"])
    if num_rows < 20:
        raise InputError(f"has {num_rows} rows; the study splits rows three ways and needs at least 20",
                         file=file, field="probs")
    if not ranks or min(ranks) < 1:
        raise InputError(f"is {tuple(ranks)}; ranks must be positive", field="ranks")
    train, validation, test = split_rows(num_rows, SPLIT_FRACTIONS, seed)
    probs, columns = prepare_rows(ds, num_columns, train)
    observed = clip_simplex(probs, epsilon)
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


def write_study(study: EmbeddingStudy, out: str | Path) -> list[Path]:
    """Write heldout.csv, ranks.csv, continuity.csv, pairs.csv, summary.json and continuity.png into ``out``."""
    from bayesmatrix.analysis.plots.embedding import plot_continuity
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

