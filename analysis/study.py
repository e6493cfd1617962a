"""The measures of a study across models: one row of Bayesian-ness per model, the table and the figure.

README, "Studies". ``bayesmatrix study`` (:mod:`bayesmatrix.workflows.study`)
logs one ICL task on each model and fits ``icl`` (exact Bayes), ``icl-general``
(recency decay and temperature) and the non-Bayesian ``icl-none`` and
``icl-frequency`` to each log. :func:`fit_measures` reads those runs into one
flat row (the columns of :data:`COLUMNS`), reusing the estimates the report
quotes (``analysis.report.run_estimates``), the LOO comparison and its verdict
(``analysis.compare``) and the excess code length (``analysis.excess``); the
workflow adds the parameter count and the consistency checks
(``analysis.consistency``). :func:`study_frame`, :func:`write_table`,
:func:`format_table` and :func:`plot_study` turn rows into the CSV, the printed
table and the figure (one panel per measure against parameter count).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

BAYES = "icl"
"""The exact Bayesian updater."""
GENERAL = "icl-general"
"""The generalised updater: decay and temperature, exact Bayes at 1 and 1."""
NON_BAYES = ("icl-none", "icl-frequency")
"""The explanations that are not Bayesian updating: no updating, and smoothed frequencies."""
FIT_MODELS = (BAYES, GENERAL, *NON_BAYES)
"""The ICL models fitted to every model's log, in this order."""

COLUMNS: dict[str, str] = {
    "model": "the model as given (a shipped name, a folder, a GGUF file or a hub id)",
    "parameters": "its parameter count, counted on the loaded model",
    "decay": "icl-general's recency decay, posterior mean (1 = every example counts alike, as Bayes requires)",
    "temperature": "icl-general's temperature, posterior mean (1 = calibrated)",
    "strength": "icl's prior strength s = sum(alpha), posterior mean, in examples",
    "strength_general": "icl-general's prior strength, posterior mean",
    "excess_bits": "excess code length against exact Bayes with icl's fitted prior, bits per step, posterior mean",
    "excess_bits_se": "its standard error over episodes",
    "excess_bits_stated": "the same against the task's stated prior (empty where the task states none)",
    "loo_bayes": "elpd(icl) - elpd(best non-Bayesian run): above 0 favours Bayesian updating",
    "loo_bayes_se": "the standard error of that difference",
    "non_bayes": "the best non-Bayesian run (icl-none or icl-frequency)",
    "loo_verdict": "compare's reading of that pair: 'not distinguishable' within 2 se, else which LOO prefers",
    "loo_general": "elpd(icl-general) - elpd(icl): above 0 means decay or temperature explain the rows better",
    "loo_general_se": "the standard error of that difference",
    "order_spread": "largest total variation between orders of the same examples, mean over multisets (0 for Bayes)",
    "order_spread_mcse": "its Monte Carlo standard error",
    "martingale_gap": "mean |p_k - E[p_k+1]| along paths drawn from the model itself (0 for Bayes)",
    "martingale_gap_mcse": "its Monte Carlo standard error",
    "divergences": "NUTS divergences summed over the four fits",
}
"""Every column of the study table and what it means; intervals add ``_low`` and ``_high``
(``inference.fit.INTERVAL_PROB`` equal-tailed) to decay, temperature, the strengths and excess_bits."""

INTERVAL_COLUMNS = ("decay", "temperature", "strength", "strength_general", "excess_bits")


class Panel(NamedTuple):
    """One panel of the study figure: a measure with its error bars and the value exact Bayes has."""

    column: str
    title: str
    bars: str
    """``"interval"`` (the ``_low``/``_high`` columns) or the column of a standard error (drawn as +- 2 se)."""
    reference: float | None


PANELS = (
    Panel("decay", "decay (icl-general)", "interval", 1.0),
    Panel("temperature", "temperature (icl-general)", "interval", 1.0),
    Panel("strength", "prior strength s (icl)", "interval", None),
    Panel("excess_bits", "excess bits per step (icl's prior)", "interval", 0.0),
    Panel("loo_bayes", "LOO: icl - best non-Bayes", "loo_bayes_se", 0.0),
    Panel("loo_general", "LOO: icl-general - icl", "loo_general_se", 0.0),
    Panel("order_spread", "order spread (max TV)", "order_spread_mcse", 0.0),
    Panel("martingale_gap", "martingale gap", "martingale_gap_mcse", 0.0),
)


# ---------------------------------------------------------------------------
# Measures of one model's runs
# ---------------------------------------------------------------------------


def _interval_columns(name: str, value) -> dict[str, float]:
    if value is None:
        return {name: math.nan, f"{name}_low": math.nan, f"{name}_high": math.nan}
    return {name: float(value.mean), f"{name}_low": float(value.low), f"{name}_high": float(value.high)}


def pair_difference(loos: Mapping[str, Any], first: str, second: str) -> tuple[float, float, str, str]:
    """``(elpd(first) - elpd(second), its se, the short verdict, compare's sentence)`` of two LOO results.

    The pair goes through ``analysis.compare`` as ``compare`` takes it: the standard error of the
    pairwise difference, and "not distinguishable" when it is within
    ``analysis.compare.DISTINGUISHABLE_SE`` standard errors.
    """
    from bayesmatrix.analysis.compare import arviz_compare, indistinguishable, verdict

    with warnings.catch_warnings():
        # as analysis.compare.compare_datatrees: pandas 3.1 deprecates an argument arviz_stats 0.8 still passes
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        warnings.simplefilter("ignore", UserWarning)
        table = arviz_compare({first: loos[first], second: loos[second]})
    best = str(table.index[0])
    difference = float(table["elpd_diff"].iloc[1]) * (1.0 if best == first else -1.0)
    se = float(table["dse"].iloc[1])
    short = "not distinguishable" if indistinguishable(table) else f"LOO prefers {best.split(' (')[0]}"
    return difference, se, short, verdict(table)


class Measures(NamedTuple):
    """What :func:`fit_measures` returns."""

    row: dict[str, Any]
    """The fitted columns of :data:`COLUMNS` (decay ... loo_general_se, divergences), with intervals."""
    verdict: str
    """``analysis.compare.verdict`` of all four runs together."""
    excess_line: str
    """``analysis.excess.excess_line`` of the fitted excess."""
    warnings: list[str]
    """The comparison's Pareto-k warnings (``analysis.compare.Comparison.warnings``)."""


def fit_measures(runs: Mapping[str, os.PathLike | str], log: os.PathLike | str) -> Measures:
    """The fitted measures of one model: ``runs`` maps each of :data:`FIT_MODELS` to its run directory
    (all fitted to ``log``, the model's ICL log)."""
    from bayesmatrix.analysis.compare import compare_runs, verdict
    from bayesmatrix.analysis.excess import excess_line, fitted_excess, stated_excess
    from bayesmatrix.analysis.report import run_estimates
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.data.llmlog import read_log
    from bayesmatrix.inference.rundir import read_run

    missing = [name for name in FIT_MODELS if name not in runs]
    if missing:
        raise InputError(f"missing the run of {', '.join(missing)}", field="runs")
    read = {name: read_run(runs[name]) for name in FIT_MODELS}
    comparison = compare_runs([read[name].path for name in FIT_MODELS], log=log)
    label = {name: next(str(key) for key, path in comparison.paths.items()
                        if Path(path).resolve() == read[name].path.resolve()) for name in FIT_MODELS}  # fmt: skip
    general = run_estimates(read[GENERAL], label[GENERAL])
    bayes = run_estimates(read[BAYES], label[BAYES])
    row: dict[str, Any] = {}
    row.update(_interval_columns("decay", general.decay))
    row.update(_interval_columns("temperature", general.temperature))
    row.update(_interval_columns("strength", bayes.strength))
    row.update(_interval_columns("strength_general", general.strength))

    ds = read_log(log)
    name = Path(log).name
    excess = fitted_excess(read[BAYES], ds, label=label[BAYES], file=name)
    low, high = excess.interval()
    row.update(excess_bits=excess.mean, excess_bits_low=float(low), excess_bits_high=float(high),
               excess_bits_se=float(excess.se))  # fmt: skip
    try:
        row["excess_bits_stated"] = stated_excess(ds, file=name).mean
    except InputError:  # the task states no single Dirichlet prior
        row["excess_bits_stated"] = math.nan

    elpd = {name: float(comparison.loo[label[name]].elpd) for name in NON_BAYES}
    non_bayes = max(NON_BAYES, key=lambda name: elpd[name])
    loo_bayes, loo_bayes_se, short, _ = pair_difference(comparison.loo, label[BAYES], label[non_bayes])
    loo_general, loo_general_se, _, _ = pair_difference(comparison.loo, label[GENERAL], label[BAYES])
    row.update(loo_bayes=loo_bayes, loo_bayes_se=loo_bayes_se, non_bayes=non_bayes, loo_verdict=short,
               loo_general=loo_general, loo_general_se=loo_general_se,
               divergences=int(sum(int(run.info.get("num_divergences", 0) or 0) for run in read.values())))  # fmt: skip
    return Measures(row=row, verdict=verdict(comparison.table, comparison.methods, comparison.descriptions),
                    excess_line=excess_line(excess), warnings=list(comparison.warnings))  # fmt: skip


def consistency_columns(result) -> dict[str, float]:
    """The order spread and martingale gap of an ``analysis.consistency.ConsistencyResult`` (None: NaN)."""
    if result is None:
        return {"order_spread": math.nan, "order_spread_mcse": math.nan, "martingale_gap": math.nan,
                "martingale_gap_mcse": math.nan}  # fmt: skip
    ex, mg = result.exchangeability, result.martingale
    return {"order_spread": ex.mean_max_tv, "order_spread_mcse": ex.mcse_max_tv, "martingale_gap": mg.mean_gap,
            "martingale_gap_mcse": mg.mcse_gap}  # fmt: skip


# ---------------------------------------------------------------------------
# The table and the figure
# ---------------------------------------------------------------------------


def table_columns() -> list[str]:
    """The table's columns in order, each interval column followed by its ``_low`` and ``_high``."""
    columns = []
    for column in COLUMNS:
        columns.append(column)
        if column in INTERVAL_COLUMNS:
            columns += [f"{column}_low", f"{column}_high"]
    return columns


def study_frame(rows: Sequence[Mapping[str, Any]]):
    """A pandas DataFrame of the rows, in the order given, with :func:`table_columns` first."""
    import pandas as pd

    frame = pd.DataFrame([dict(row) for row in rows])
    ordered = [c for c in table_columns() if c in frame.columns]
    return frame[ordered + [c for c in frame.columns if c not in ordered]]


def write_table(rows: Sequence[Mapping[str, Any]], path: os.PathLike | str) -> Path:
    """The rows as a CSV file, written atomically (``data.atomic``)."""
    from bayesmatrix.data.atomic import atomic_path

    with atomic_path(path) as tmp:
        study_frame(rows).to_csv(tmp, index=False)
    return Path(path)


def _with_interval(row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None or not np.isfinite(value):
        return "-"
    low, high = row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is None or not np.isfinite(low):
        return f"{value:.3g}"
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"


def _with_se(row: Mapping[str, Any], column: str, se: str) -> str:
    value = row.get(column)
    if value is None or not np.isfinite(value):
        return "-"
    spread = row.get(se)
    return f"{value:.3g} ± {spread:.2g}" if spread is not None and np.isfinite(spread) else f"{value:.3g}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The study table for the terminal: one line per model, intervals in brackets, standard errors after ±."""
    import pandas as pd

    from bayesmatrix.inference.fit import INTERVAL_LABEL

    shown = pd.DataFrame([{
        "model": row["model"],
        "parameters": f"{int(row['parameters']):,}",
        "decay": _with_interval(row, "decay"),
        "temperature": _with_interval(row, "temperature"),
        "strength": _with_interval(row, "strength"),
        "excess bits/step": _with_interval(row, "excess_bits"),
        "LOO icl - non-Bayes": _with_se(row, "loo_bayes", "loo_bayes_se"),
        "verdict": row.get("loo_verdict", "-"),
        "LOO general - icl": _with_se(row, "loo_general", "loo_general_se"),
        "order spread": _with_se(row, "order_spread", "order_spread_mcse"),
        "martingale gap": _with_se(row, "martingale_gap", "martingale_gap_mcse"),
    } for row in rows])  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 40):
        text = shown.to_string(index=False)
    return f"{text}\n({INTERVAL_LABEL} in brackets; ± one standard error)"


def study_figure(rows: Sequence[Mapping[str, Any]], title: str = ""):
    """One panel per measure of :data:`PANELS` against parameter count (log x), error bars from the
    intervals or ± 2 standard errors, a dotted line where exact Bayes sits."""
    from bayesmatrix.analysis.plots.backend import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5), squeeze=False)
    parameters = np.array([float(row["parameters"]) for row in rows])
    for ax, panel in zip(axes.ravel(), PANELS):
        values = np.array([float(row.get(panel.column, math.nan)) for row in rows])
        if panel.bars == "interval":
            low = np.array([float(row.get(f"{panel.column}_low", math.nan)) for row in rows])
            high = np.array([float(row.get(f"{panel.column}_high", math.nan)) for row in rows])
            errors = np.stack([values - low, high - values])
        else:
            errors = 2 * np.array([float(row.get(panel.bars, math.nan)) for row in rows])
        errors = np.where(np.isfinite(errors), np.abs(errors), 0.0)
        ax.errorbar(parameters, values, yerr=errors, fmt="o", capsize=3)
        for x, y, row in zip(parameters, values, rows):
            if np.isfinite(y):
                ax.annotate(str(row["model"]).split("/")[-1], (x, y), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
        if panel.reference is not None:
            ax.axhline(panel.reference, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(panel.title + ("" if panel.bars == "interval" else " (± 2 se)"), fontsize=9)
        ax.set_xlabel("parameters", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_study(rows: Sequence[Mapping[str, Any]], path: os.PathLike | str, title: str = "") -> Path:
    """:func:`study_figure` saved as a PNG at ``path``, atomically."""
    from bayesmatrix.analysis.plots.backend import pyplot
    from bayesmatrix.data.atomic import atomic_path

    fig = study_figure(rows, title)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        pyplot().close(fig)
    return Path(path)
