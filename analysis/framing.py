"""Framings: how the stated value in a prompt moves the LLM's effective prior, and Gupta et al.'s distances.

README, "A Gupta-style experiment". A framed log (logged with framings
``bias`` = 10, 30, 50) poses each episode under one level of a placeholder; a task
file's ``stated`` table says which category a placeholder states the
probability of, in percent (coin-words: ``{bias}`` = 30 is P(heads) = 0.30).
From that:

- the *stated distribution* of level f: the stated category gets ``v / 100``,
  the other categories share the rest equally (exact for two categories);
- the *exact Bayesian predictive with the stated prior* after the row's
  examples ``n_r``: ``(S p_f + n_r) / (S + k_r)``, a Dirichlet prior with the
  stated mean ``p_f`` and a strength of ``S`` examples (``reference_strength``,
  default 2, the median of the models' prior on ``s``): a stated bias does not
  say how firmly it is meant, and ``S`` is that choice, made explicit;
- Gupta et al.'s total variation distance ``1/2 sum_c |p_c - q_c|`` from the
  LLM's predictive renormalised over the categories (``<other>`` dropped) to
  each of them, averaged over episodes by level and number of observations;
- the fitted effective prior mean of the stated category per level
  (``icl-framed``'s ``m`` on its ``framing`` axis), with
  ``inference.fit.INTERVAL_PROB`` intervals, against the stated value.

Functions on arrays first (:func:`stated_distribution`,
:func:`stated_bayes_predictive`, :func:`distance_by_position`), then the
wrapper on a log and a run (:func:`framing_analysis`), a table (:func:`framing_table`) and
the slope of the fitted prior mean against the stated value (:func:`slope`).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from bayesmatrix.analysis.metrics import mean_and_mcse, renormalise, total_variation
from bayesmatrix.data.closed_forms import dirichlet_predictive
from bayesmatrix.data.errors import InputError

REFERENCE_STRENGTH = 2.0
"""Default strength ``S`` (in examples) of the stated prior in the exact Bayesian reference."""


def stated_distribution(
    levels: Sequence[Mapping[str, str]], stated: Mapping[str, int], num_categories: int, file: str | None = None
) -> np.ndarray:
    """(F, C): each level's stated distribution over the categories.

    ``levels`` are the log's framing levels (placeholder -> value), ``stated``
    maps a placeholder to the index of the category whose probability it
    states, in percent. Stated categories get their values / 100; the others
    share the rest equally. Values outside [0, 100], or summing above 100, are
    an :class:`InputError` on ``framing_levels``.
    """
    if not stated:
        raise InputError("the task states no probability (a stated table mapping a placeholder to a category)",
                         file=file, field="stated")  # fmt: skip
    distribution = np.zeros((len(levels), num_categories))
    for f, level in enumerate(levels):
        given = np.zeros(num_categories, dtype=bool)
        for placeholder, category in stated.items():
            if placeholder not in level:
                raise InputError(f"level {f} gives no value of {{{placeholder}}}", file=file, field="framing_levels")
            try:
                percent = float(level[placeholder])
            except ValueError:
                raise InputError(f"level {f}: {{{placeholder}}} = {level[placeholder]!r} is not a percentage",
                                 file=file, field="framing_levels") from None  # fmt: skip
            if not 0.0 <= percent <= 100.0:
                raise InputError(f"level {f}: {{{placeholder}}} = {percent:g} is not in [0, 100]", file=file,
                                 field="framing_levels")  # fmt: skip
            distribution[f, category] = percent / 100.0
            given[category] = True
        rest = 1.0 - distribution[f].sum()
        if rest < -1e-9:
            raise InputError(f"level {f} states probabilities summing above 100%", file=file, field="framing_levels")
        if (~given).any():
            distribution[f, ~given] = max(rest, 0.0) / (~given).sum()
    return distribution


def stated_bayes_predictive(stated: np.ndarray, context_counts: np.ndarray, strength: float = REFERENCE_STRENGTH):
    """(rows, C): the exact Bayesian predictive ``(S p + n_r) / (S + k_r)`` with the stated prior ``p`` (rows, C)."""
    if not (np.isfinite(strength) and strength > 0):
        raise InputError(f"must be finite and > 0, got {strength}", field="reference_strength")
    return dirichlet_predictive(strength * np.asarray(stated, dtype=np.float64), context_counts)


class ByPosition(NamedTuple):
    """A per-row quantity averaged over episodes, by framing level and number of observations."""

    positions: np.ndarray
    """(K + 1,) the numbers of observations before the read, 0..K."""
    mean: np.ndarray
    """(F, K + 1) the mean over the level's episodes (NaN where a level has no row at a position)."""
    mcse: np.ndarray
    """(F, K + 1) its standard error, ``sd / sqrt(episodes)`` (NaN with a single episode)."""


def by_position(values: np.ndarray, framing: np.ndarray, position: np.ndarray, num_framings: int) -> ByPosition:
    """A per-row value (rows,) averaged over the episodes of each framing level at each position."""
    positions = np.unique(position)
    mean = np.full((num_framings, len(positions)), np.nan)
    mcse = np.full_like(mean, np.nan)
    for f in range(num_framings):
        for j, k in enumerate(positions):
            chosen = values[(framing == f) & (position == k)]
            if chosen.size:
                m, e = mean_and_mcse(chosen)
                mean[f, j], mcse[f, j] = float(m), float(e)
    return ByPosition(positions, mean, mcse)


def distance_by_position(
    llm: np.ndarray, reference: np.ndarray, framing: np.ndarray, position: np.ndarray, num_framings: int
) -> ByPosition:
    """Total variation between the LLM's rows and ``reference`` (both (rows, C) over the same categories),
    averaged by framing level and position."""
    return by_position(total_variation(llm, reference), framing, position, num_framings)


class FramingAnalysis(NamedTuple):
    """What :func:`framing_analysis` returns (F framing levels)."""

    labels: list[str]
    """(F,) the levels as the fit's ``framing`` coordinate names them, ``"bias=30"``."""
    stated_category: str
    """The column whose probability the levels state (the first stated one), as the log labels it."""
    stated: np.ndarray
    """(F,) the stated probability of that category at each level."""
    reference_strength: float
    """``S`` of the exact Bayesian reference."""
    tvd_stated: ByPosition
    """TVD of the LLM's renormalised predictive from the stated distribution."""
    tvd_bayes: ByPosition
    """TVD from the exact Bayesian predictive with the stated prior."""
    llm_stated: ByPosition
    """The LLM's renormalised probability of the stated category (its mean, not a distance)."""
    prior_mean: np.ndarray | None
    """(F, 3) the fitted effective prior mean of the stated category: posterior mean, interval low, high;
    None without a per-framing run."""
    strength: np.ndarray | None
    """(F, 3) the fitted prior strength ``s`` per level, the same way; None without a per-framing run."""
    run_label: str | None
    """The run the effective priors come from."""


def framing_analysis(ds, run=None, *, reference_strength: float = REFERENCE_STRENGTH,
                     file: str | None = None) -> FramingAnalysis:
    """The framing analysis of a framed ICL log ``ds`` and, optionally, a run fitted to it with a
    ``framing`` axis (``icl-framed``; an :class:`inference.rundir.Run`)."""
    from bayesmatrix.data.llmlog import task_of
    from bayesmatrix.inference.prepare import framing_labels, framing_levels

    file = file or ds.encoding.get("source") or "<in memory>"
    for name in ("framing", "context_counts", "position"):
        if name not in ds:
            raise InputError("missing; the framing analysis needs a framed ICL log", file=file, field=name)
    task = task_of(ds, file)
    categories = list(task.get("categories", []))
    stated_names = task.get("template", {}).get("stated", {})
    columns = [str(c) for c in ds["col"].values][:-1]  # <other> dropped: Gupta et al. renormalise
    if len(categories) != len(columns):
        raise InputError(f"names {len(categories)} categories for {len(columns)} columns", file=file, field="task")
    stated_index = {}
    for placeholder, category in stated_names.items():
        if category not in categories:
            raise InputError(f"states {category!r}, not a category of the task", file=file, field="stated")
        stated_index[placeholder] = categories.index(category)
    levels = framing_levels(ds, file)
    stated = stated_distribution(levels, stated_index, len(columns), file)
    framing = np.asarray(ds["framing"].values, dtype=np.int64)
    position = np.asarray(ds["position"].values, dtype=np.int64)
    probs = np.asarray(ds["probs"].values, dtype=np.float64)[:, :-1]
    llm = renormalise(probs)
    counts = np.asarray(ds["context_counts"].values, dtype=np.float64)[:, :-1]
    bayes = stated_bayes_predictive(stated[framing], counts, reference_strength)
    target = next(iter(stated_index.values()))
    prior_mean = strength = None
    label = None
    if run is not None:
        prior_mean, strength = effective_priors(run.datatree["posterior"], columns[target])
        label = f"{run.info.get('model')} ({run.info.get('method')})"
    return FramingAnalysis(
        labels=framing_labels(ds, file),
        stated_category=columns[target],
        stated=stated[:, target],
        reference_strength=float(reference_strength),
        tvd_stated=distance_by_position(llm, stated[framing], framing, position, len(levels)),
        tvd_bayes=distance_by_position(llm, bayes, framing, position, len(levels)),
        llm_stated=by_position(llm[:, target], framing, position, len(levels)),
        prior_mean=prior_mean,
        strength=strength,
        run_label=label,
    )


def effective_priors(posterior, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(F, 3) each, posterior mean and equal-tailed interval of ``m[framing, column]`` and ``s[framing]``."""
    from bayesmatrix.inference.fit import INTERVAL_PROB

    def summary(values) -> np.ndarray:
        draws = np.asarray(values.transpose("chain", "draw", "framing").values)
        draws = draws.reshape(-1, draws.shape[-1])
        tail = (1.0 - INTERVAL_PROB) / 2
        return np.column_stack([draws.mean(axis=0), np.quantile(draws, tail, axis=0),
                                np.quantile(draws, 1.0 - tail, axis=0)])  # fmt: skip

    return summary(posterior["m"].sel(col=column)), summary(posterior["s"])


def has_framing_axis(run) -> bool:
    """Whether a run's effective prior is indexed by framing (``m`` and ``s`` on a ``framing`` axis)."""
    posterior = run.datatree["posterior"]
    return all(name in posterior and "framing" in posterior[name].dims for name in ("m", "s"))


def framing_table(analysis: FramingAnalysis) -> list[dict[str, Any]]:
    """One row per level: the stated value, the fitted effective prior mean and strength (with intervals),
    the LLM's probability of the stated category before any observation, and the TVDs at 0 and K observations."""
    rows = []
    for f, label in enumerate(analysis.labels):
        row: dict[str, Any] = {"level": label, "stated": float(analysis.stated[f])}
        if analysis.prior_mean is not None:
            row["prior_mean"] = tuple(float(v) for v in analysis.prior_mean[f])
            row["strength"] = tuple(float(v) for v in analysis.strength[f])
        row["llm_at_0"] = float(analysis.llm_stated.mean[f, 0])
        row["tvd_stated_0"] = float(analysis.tvd_stated.mean[f, 0])
        row["tvd_stated_last"] = float(analysis.tvd_stated.mean[f, -1])
        row["tvd_bayes_0"] = float(analysis.tvd_bayes.mean[f, 0])
        row["tvd_bayes_last"] = float(analysis.tvd_bayes.mean[f, -1])
        rows.append(row)
    return rows


def slope(analysis: FramingAnalysis) -> tuple[float, float] | None:
    """Least-squares slope of the fitted prior mean against the stated probability, and its standard error
    from the posterior sds (interval width / (2 * 1.88) for a 94% interval): 1 = the prior follows the statement,
    0 = it ignores it. None without a run or with fewer than two levels."""
    if analysis.prior_mean is None or len(analysis.stated) < 2:
        return None
    from scipy.stats import norm

    from bayesmatrix.inference.fit import INTERVAL_PROB

    x = analysis.stated
    y = analysis.prior_mean[:, 0]
    sd = (analysis.prior_mean[:, 2] - analysis.prior_mean[:, 1]) / (2 * norm.ppf(0.5 + INTERVAL_PROB / 2))
    centred = x - x.mean()
    denominator = float(np.sum(centred**2))
    if denominator == 0:
        return None
    weights = centred / denominator
    return float(np.sum(weights * y)), float(np.sqrt(np.sum(weights**2 * sd**2)))
