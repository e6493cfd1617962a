"""The report: one self-contained HTML file with the diagnostics, LOO comparisons and figures of runs.

``build_report(run_dirs, out, logs=...)`` reads run directories (and,
optionally, the LLM logs they were fitted to) and writes one HTML file that
any browser opens without a server: the figures are embedded as base64 PNG
data URIs and the styles are inline, so nothing outside the file is fetched.

Sections:

1. *Findings* (per log with a run of an in-context model): the LOO verdict, which claims no more
   than the table (``analysis.compare.verdict``: a difference under two standard errors is "not
   distinguishable"), and for the best run and every run within two standard errors of it that
   run's own estimates (effective prior mean and strength, per framing level for ``icl-framed``,
   ``decay``, ``temperature``, where its model has them) with ``inference.fit.INTERVAL_PROB`` intervals; SVI fits are marked approximate;
2. one *diagnostics* section per run: the ArviZ summary of the global sites
   with a red FAILED row for each failed check (R-hat, ESS, non-finite mean),
   the run-level checks (divergences, E-BFMI, SVI plateau) and the run's
   trace, rank, ELBO and posterior plots;
3. a *LOO comparison* per group of two or more runs fitted to the same log
   and columns (``analysis.compare``), with ArviZ's comparison plot;
4. per log given: the instrumented-LLM picture, the LLM's predictive against
   the fitted updaters along one episode, KL in bits from the fitted exact
   Bayesian and entropy by position, the excess code length (``analysis.excess``:
   each run's fitted effective prior and the stated prior, by step), and a
   posterior predictive check from the run's stored ``posterior_predictive`` group;
   and, for a framed log (a ``framing`` variable), the effective prior mean against the stated
   value and the TVDs by number of observations (:func:`framing_section`);
5. whatever extra sections the caller adds (the demo adds the consistency
   checks and the Dirichlet-mixture approximation).
6. with ``phenomena`` (a folder ``bayesmatrix phenomena`` wrote): one section per study, chain of
   thought, long contexts and hallucination, each a table and a figure (:func:`phenomena_sections`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from bayesmatrix.data.errors import InputError


class Figure(NamedTuple):
    """One embedded figure."""

    title: str
    png: bytes
    caption: str = ""


class Section(NamedTuple):
    """One section of the report: a title, an HTML body and figures."""

    title: str
    html: str
    figures: list[Figure]


def figure_from_file(path: os.PathLike | str, title: str, caption: str = "") -> Figure:
    return Figure(title=title, png=Path(path).read_bytes(), caption=caption)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def _format_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def table_html(frame, failed_rows: Sequence[bool] | None = None, index_name: str = "") -> str:
    """A pandas DataFrame as an HTML table; ``failed_rows`` are drawn red and labelled FAILED."""
    columns = list(frame.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [index_name or frame.index.name or "", *columns])
    body = []
    for position, (label, row) in enumerate(frame.iterrows()):
        failed = bool(failed_rows[position]) if failed_rows is not None else False
        cells = "".join(f"<td>{html.escape(_format_value(row[c]))}</td>" for c in columns)
        marker = '<span class="tag">FAILED</span> ' if failed else ""
        body.append(f'<tr{" class=failed" if failed else ""}><th>{marker}{html.escape(str(label))}</th>{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def run_label(run) -> str:
    return f"{run.info.get('model')} ({run.info.get('method')})"


def diagnostics_section(run, work_dir: Path) -> Section:
    """ArviZ summary with failed rows marked, the run-level checks, and the run's plots."""
    from bayesmatrix.analysis.diagnostics import diagnose_datatree, svi_checks
    from bayesmatrix.analysis.plots import run_figures
    from bayesmatrix.inference.fit import INTERVAL_COLUMNS, INTERVAL_LABEL
    from bayesmatrix.inference.rundir import PLOTS_DIR

    diagnosis = diagnose_datatree(run.datatree, run.info.get("method"), run.info.get("converged"))
    columns = [c for c in ("mean", "sd", *INTERVAL_COLUMNS, "ess_bulk", "ess_tail", "r_hat", "flag") if c in diagnosis.table]
    failed = [bool(flag) for flag in diagnosis.table["flag"]]
    info = run.info
    if diagnosis.method == "nuts":
        facts = (
            f"NUTS, {diagnosis.num_chains} chains x {diagnosis.num_draws} draws; "
            f"{diagnosis.num_divergences} divergences; E-BFMI per chain "
            + ", ".join(f"{value:.2f}" for value in diagnosis.ebfmi)
        )
    else:
        facts = f"SVI, {diagnosis.num_draws} draws from the guide; " + "; ".join(svi_checks(diagnosis))
    seconds = info.get("seconds_total")
    facts += f"; fitted to {html.escape(str(info.get('data_file')))} ({info.get('num_rows')} rows)"
    if seconds is not None:
        facts += f" in {seconds:.0f} s"
    facts += f"; intervals: {INTERVAL_LABEL}"
    if diagnosis.flags:
        checks = '<div class="failed-box"><b>FAILED</b><ul>' + "".join(
            f"<li>{html.escape(flag)}</li>" for flag in diagnosis.flags
        ) + "</ul></div>"
    else:
        checks = '<div class="passed-box">all checks passed</div>'
    body = f"<p>{html.escape(facts)}</p>{checks}" + table_html(diagnosis.table[columns], failed, "site")

    plots_dir = Path(run.path) / PLOTS_DIR
    pngs = sorted(plots_dir.glob("*.png")) if plots_dir.is_dir() else []
    if not pngs:  # a run fitted without its figures: draw them here
        own = work_dir / f"run-{abs(hash(str(run.path)))}"
        own.mkdir(parents=True, exist_ok=True)
        pngs = sorted(run_figures(run.datatree, own))
    order = {"trace": 0, "rank": 1, "elbo": 2, "posterior": 3}
    pngs.sort(key=lambda p: order.get(p.stem, 9))
    figures = [figure_from_file(p, f"{run_label(run)}: {p.stem}") for p in pngs]
    return Section(f"Diagnostics: {run_label(run)} — {Path(run.path).name}", body, figures)


def comparison_sections(runs, work_dir: Path) -> tuple[list[Section], dict[str, Any]]:
    """A LOO comparison per group of 2+ runs fitted to the same log and columns.

    Returns the sections and, by data sha256, the :class:`analysis.compare.Comparison`.
    """
    from bayesmatrix.analysis.compare import compare_runs, verdict
    from bayesmatrix.analysis.plots import plot_loo_compare

    groups: dict[tuple, list] = {}
    for run in runs:
        key = (run.info.get("data_sha256"), tuple(run.info.get("columns") or ()))
        groups.setdefault(key, []).append(run)
    sections, tables = [], {}
    for (sha, _), members in groups.items():
        if len(members) < 2:
            continue
        comparison = compare_runs([run.path for run in members])
        tables[sha] = comparison
        columns = [c for c in ("rank", "elpd", "p", "elpd_diff", "dse", "se", "weight", "bad_pareto_k") if c in comparison.table]
        body = (
            f"<p>PSIS-LOO of {len(members)} runs on {html.escape(str(members[0].info.get('data_file')))}; "
            "higher elpd predicts the LLM's rows better; <code>elpd_diff</code> is the distance to the best "
            "with its standard error <code>dse</code>.</p>"
        )
        failed = [count > 0 for count in comparison.table.get("bad_pareto_k", [0] * len(comparison.table))]
        body += table_html(comparison.table[columns], failed, "run")
        body += f"<p><b>Verdict.</b> {html.escape(verdict(comparison.table, comparison.methods, comparison.descriptions))}</p>"
        if comparison.warnings:
            body += '<div class="failed-box"><b>Pareto k warnings</b><ul>' + "".join(
                f"<li>{html.escape(w)}</li>" for w in comparison.warnings
            ) + "</ul></div>"
        path = plot_loo_compare(comparison.table, work_dir / f"compare-{sha[:12]}.png")
        figures = [figure_from_file(path, "LOO comparison", "elpd with standard errors; the best run is the reference")]
        sections.append(Section(f"LOO comparison — {members[0].info.get('data_file')}", body, figures))
    return sections, tables


def _spec_named(name: str):
    """The model ``name`` (a ``ModelSpec``: registered, or ``module:attribute``), or None where this
    process cannot find it; a run's own sections never need it."""
    from bayesmatrix.inference.prepare import model_spec

    try:
        return model_spec(name)
    except InputError:
        return None


def _spec_of(run):
    return _spec_named(str(run.info.get("model", "")))


def _is_icl_run(run) -> bool:
    spec = _spec_of(run)
    return spec is not None and spec.in_context


def episode_rows(ds, episode: int) -> np.ndarray:
    """Row indices of one episode, in position order."""
    rows = np.flatnonzero(np.asarray(ds["episode"].values) == episode)
    return rows[np.argsort(np.asarray(ds["position"].values)[rows], kind="stable")]


def episode_observations(ds, rows: np.ndarray) -> list[str]:
    """The observation that arrived between consecutive rows of an episode, as column labels."""
    columns = [str(c) for c in ds["col"].values]
    steps = np.diff(np.asarray(ds["context_counts"].values)[rows], axis=0)
    return [columns[int(np.argmax(step))] for step in steps]


def _by_position(values: np.ndarray, position: np.ndarray):
    from bayesmatrix.analysis.metrics import mean_and_mcse

    positions = np.unique(position)
    means, errors = [], []
    for k in positions:
        chosen = values[position == k]
        mean, mcse = mean_and_mcse(chosen) if chosen.size > 1 else (chosen.mean(), np.nan)
        means.append(float(mean))
        errors.append(float(mcse))
    return positions, np.asarray(means), np.asarray(errors)


def tokenizer_decoder(model: str, local_files_only: bool = False) -> Callable[[int], str]:
    """``decode(token_id) -> str`` by the tokenizer of ``model`` (a shipped name, folder, GGUF file or hub
    id); only the tokenizer is loaded, not the weights."""
    from bayesmatrix.data.llm.loading import load_tokenizer

    tokenizer = load_tokenizer(model, local_files_only=local_files_only)
    return lambda token: tokenizer.decode([int(token)])


def check_decoder(decode: Callable[[int], str], ds, model: str, log: os.PathLike | str | None = None) -> None:
    """Raise :class:`InputError` (field ``model``) unless ``decode`` turns the log's column token ids
    (``col_token_id``) back into its columns: a tokenizer of another model would mislabel the top-k bars."""
    if "col_token_id" not in ds:
        return
    for column, token in zip(ds["col"].values, np.asarray(ds["col_token_id"].values)):
        if int(token) >= 0 and decode(int(token)) != str(column):
            where = "the log's" if log is None else f"{Path(log).name}'s"
            raise InputError(
                f"the tokenizer of {model!r} decodes token {int(token)} as {decode(int(token))!r}, "
                f"but {where} column is {str(column)!r}: name the model that wrote the log",
                field="model",
            )


def log_decoder(ds, log: os.PathLike | str, model: str | None = None,
                loaded: dict | None = None) -> tuple[Callable[[int], str] | None, str]:
    """The decoder of a log's top-k token ids, or None and the reason there is none.

    ``model`` names the tokenizer (its errors raise :class:`InputError`);
    without it the log's own ``model`` attribute is tried where this machine
    has that tokenizer (never over the network). ``loaded`` caches decoders by
    model name across logs.
    """
    if "topk_ids" not in ds:
        return None, "the log stores no top-k token ids"
    name = model or str(ds.attrs.get("model", ""))
    if not name:
        return None, "the log does not name its model"
    loaded = {} if loaded is None else loaded
    try:
        if name not in loaded:
            loaded[name] = tokenizer_decoder(name, local_files_only=model is None)
        check_decoder(loaded[name], ds, name, log)
    except InputError as error:
        if model is not None:
            raise
        return None, f"the tokenizer of the log's model {name!r} is not available here ({error.reason})"
    return loaded[name], ""


def log_section(
    log_path: Path,
    ds,
    runs,
    work_dir: Path,
    token_decoder: Callable[[int], str] | None = None,
    preferred: str | None = None,
    num_draws: int = 200,
    token_note: str = "",
    stated_alpha=None,
) -> Section:
    """The pictures of one ICL log and the runs fitted to it.

    ``token_decoder`` names the log's top-k token ids (see :func:`log_decoder`);
    without it the instrumented picture shows the log's columns, and
    ``token_note`` says why in its caption. ``stated_alpha`` is the stated prior of the excess code
    length (default: the log's task ``alpha``).
    """
    from bayesmatrix.analysis.metrics import entropy_bits, kl_bits
    from bayesmatrix.analysis.plots import plot_fitted_predictive, plot_instrumented, plot_kl_entropy, plot_posterior_predictive
    from bayesmatrix.analysis.predictive import fitted_predictive, posterior_predictive_datatree
    from bayesmatrix.data.llmlog import task_of
    from bayesmatrix.inference.fit import INTERVAL_PROB
    from bayesmatrix.inference.rundir import file_sha256

    name = Path(log_path).name
    stem = Path(log_path).stem
    sha = file_sha256(log_path)
    matching = [run for run in runs if run.info.get("data_sha256") == sha and _is_icl_run(run)]
    task = task_of(ds)
    probs = np.asarray(ds["probs"].values)
    facts = [
        ("model", ds.attrs.get("model", "")),
        ("task", task.get("name", task.get("kind", ""))),
        ("rows", ds.sizes["row"]),
        ("columns", ", ".join(repr(str(c)) for c in ds["col"].values)),
        ("mean probability on the task's columns", f"{probs[:, :-1].sum(axis=1).mean():.3f}"),
        ("runs fitted to this log", ", ".join(run_label(run) for run in matching) or "none"),
    ]
    body = "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts) + "</table>"
    figures: list[Figure] = []
    if "episode" not in ds or "context_counts" not in ds:
        body += "<p>Not an ICL log (no episodes): no per-position pictures.</p>"
        return Section(f"Log: {name}", body, figures)

    rows = episode_rows(ds, int(ds["episode"].values[0]))
    observations = episode_observations(ds, rows)
    columns = [str(c) for c in ds["col"].values]
    if token_decoder is not None and "topk_ids" in ds:
        labels, top = [], []
        token_ids = np.asarray(ds["col_token_id"].values)
        for k, r in enumerate(rows):
            ids = [int(i) for i in ds["topk_ids"].values[r]]
            row_labels = [token_decoder(i) for i in ids]
            row_probs = list(np.exp(np.asarray(ds["topk_logprobs"].values[r], dtype=float)))
            if k < len(observations):  # the token that came next, also when it is not among the top
                column = columns.index(observations[k])
                if int(token_ids[column]) not in ids:
                    row_labels.append(token_decoder(int(token_ids[column])))
                    row_probs.append(float(probs[r, column]))
            labels.append(row_labels)
            top.append(np.asarray(row_probs))
        what = "the model's top next tokens"
        caption = ""
    else:
        labels = [columns for _ in rows]
        top = [probs[r] for r in rows]
        what = "the log's columns"
        caption = f" The bars are the log's columns, not the model's top tokens: {token_note or 'no tokenizer was given'}."
    path = plot_instrumented(labels, top, observations, work_dir / f"{stem}-instrumented.png",
                             title=f"{ds.attrs.get('model', '')}: {what}, episode {int(ds['episode'].values[0])}")
    figures.append(figure_from_file(path, "The instrumented LLM",
                                    "Bars: next-token probabilities after k in-context observations; orange: the token "
                                    "that came next." + caption))

    fitted = {run_label(run): fitted_predictive(run, ds, num_draws) for run in matching}
    if fitted:
        columns = next(iter(fitted.values())).columns
        along = {label: fp.updater[:, rows] for label, fp in fitted.items()}
        llm = next(iter(fitted.values())).observed[rows]
        path = plot_fitted_predictive(llm, along, columns, [o.strip() for o in observations],
                                      work_dir / f"{stem}-fitted-predictive.png")
        figures.append(figure_from_file(path, "LLM predictive against the fitted updaters",
                                        "Dots: the LLM (renormalised over the task's columns); lines and bands: "
                                        f"each model's updater, posterior mean and {INTERVAL_PROB:.0%} equal-tailed interval."))

    position = np.asarray(ds["position"].values)
    exact = [run_label(run) for run in matching if _spec_of(run).exact_bayes]
    observed = next(iter(fitted.values())).observed if fitted else probs[:, :-1] / probs[:, :-1].sum(axis=1, keepdims=True)
    entropy = {"LLM": _by_position(entropy_bits(observed), position)[1]}
    if exact:
        bayes = fitted[exact[0]].updater.mean(axis=0)  # the exact-Bayes posterior predictive of each row
        positions, kl, kl_mcse = _by_position(kl_bits(observed, bayes), position)
        entropy["fitted exact Bayes"] = _by_position(entropy_bits(bayes), position)[1]
        path = plot_kl_entropy(positions, kl, kl_mcse, entropy, work_dir / f"{stem}-kl-entropy.png")
        figures.append(figure_from_file(path, "KL from exact Bayes, and entropy, by position",
                                        "Means over episodes (error bars: standard errors)."))
        body += (
            f"<p>Mean KL(LLM || fitted exact Bayes): {kl.mean():.3f} bits per prediction "
            f"(position 0: {kl[0]:.3f}, last position: {kl[-1]:.3f}). Entropy of the LLM's predictive falls "
            f"from {entropy['LLM'][0]:.2f} to {entropy['LLM'][-1]:.2f} bits.</p>"
        )

    body += excess_html(ds, matching, name, work_dir / f"{stem}-excess.png", figures, stated_alpha)

    by_label = {run_label(run): run for run in matching}
    if by_label:
        chosen = preferred if preferred in by_label else next(iter(by_label))
        try:  # the run's own posterior_predictive group, drawn at fit time (inference.fit.add_posterior_predictive)
            check = posterior_predictive_datatree(by_label[chosen].datatree)
        except InputError as error:
            body += f"<p>No posterior predictive check of {html.escape(chosen)}: {html.escape(error.reason)}.</p>"
        else:
            path = plot_posterior_predictive(check, work_dir / f"{stem}-ppc.png")
            what = "reported probability" if next(iter(check["posterior_predictive"].data_vars)).startswith("p(") else "count"
            figures.append(figure_from_file(path, f"Posterior predictive check: {chosen}",
                                            f"Black: the LLM's {what} of each column across rows (as the model sees "
                                            "them); blue: the same from up to 50 of the run's stored posterior "
                                            "predictive draws."))  # fmt: skip
    return Section(f"Log: {name}", body, figures)


def excess_html(ds, runs, name: str, path: Path, figures: list[Figure], stated_alpha=None) -> str:
    """The excess-code-length sentence of an ICL log (:mod:`bayesmatrix.analysis.excess`), its figure added to
    ``figures``: each run's fitted effective prior, and the stated prior (``stated_alpha``, else the task's)."""
    from bayesmatrix.analysis.excess import excess_line, fitted_excess, has_effective_prior, stated_excess
    from bayesmatrix.analysis.plots import plot_excess

    results = [fitted_excess(run, ds, label=run_label(run), file=name) for run in runs if has_effective_prior(run)]
    try:
        results.append(stated_excess(ds, stated_alpha, file=name))
        missing = ""
    except InputError as error:
        if stated_alpha is not None and error.field == "alpha":  # the caller's value, not a field of the log
            raise InputError(f"{error.reason} for the categories of {name}", field="stated_alpha") from None
        if stated_alpha is not None:
            raise
        missing = f" No stated prior: {error.reason}."
    if not results:
        return f"<p>Excess code length: no run with an effective prior was fitted to this log.{html.escape(missing)}</p>"
    steps = results[0].steps
    plot_excess(steps, {result.label: result.by_step_summary() for result in results}, path)
    figures.append(figure_from_file(path, "Excess code length by step",
                                    "KL(exact Bayes || LLM) in bits at each number of in-context observations, "
                                    "averaged over episodes; solid with bands: each run's fitted effective prior "
                                    "(posterior mean and interval); dashed: the stated prior."))  # fmt: skip
    items = "".join(f"<li>{html.escape(excess_line(result))}</li>" for result in results)
    return (
        "<p><b>Excess code length</b>: the bits per step the LLM's predictive wastes against the exact Bayesian "
        "predictive with each prior, KL(exact Bayes || LLM) averaged over the rows at each step and then over "
        "steps; the LLM's rows are <i>not</i> renormalised over the categories, so its mass on other tokens counts "
        "against it (the renormalised figure beside it). Chlon et al. (2025) report 0.020 bits per step for "
        f"Qwen2.5-7B on coin flips.{html.escape(missing)}</p><ul>{items}</ul>"
    )


def framing_section(log_path: Path, ds, runs, work_dir: Path) -> Section:
    """A framed log: the fitted effective prior mean against the stated value, with intervals, and Gupta
    et al.'s TVDs by number of observations (:mod:`bayesmatrix.analysis.framing`)."""
    from bayesmatrix.analysis.framing import framing_analysis, framing_table, has_framing_axis, slope
    from bayesmatrix.analysis.plots import plot_framing
    from bayesmatrix.inference.fit import INTERVAL_LABEL
    from bayesmatrix.inference.rundir import file_sha256

    name = Path(log_path).name
    sha = file_sha256(log_path)
    framed = [run for run in runs if run.info.get("data_sha256") == sha and has_framing_axis(run)]
    framed.sort(key=lambda run: run.info.get("method") != "nuts")
    try:
        analysis = framing_analysis(ds, framed[0] if framed else None, file=name)
    except InputError as error:
        return Section(f"Framings: {name}", f"<p>No framing analysis: {html.escape(str(error))}.</p>", [])
    category = analysis.stated_category.strip()
    head = ["level", f"stated P({category})"]
    if analysis.prior_mean is not None:
        head += [f"fitted prior mean of {category}", "prior strength s (examples)"]
    head += [f"LLM P({category}), 0 observations", "TVD stated, 0", "TVD stated, last", "TVD Bayes, 0",
             "TVD Bayes, last"]

    def cell(value) -> str:
        if isinstance(value, tuple):
            return html.escape(str(Interval(*value)))
        return html.escape(_format_value(value))

    rows = "".join("<tr>" + "".join(f"<td>{cell(value)}</td>" for value in row.values()) + "</tr>"
                   for row in framing_table(analysis))  # fmt: skip
    body = (
        f"<p>Each episode was posed under one framing level; TVD is "
        f"&frac12;&Sigma;|p &minus; q| between the LLM's predictive renormalised over the categories and the "
        f"stated distribution, or the exact Bayesian predictive with the stated prior of strength "
        f"S = {analysis.reference_strength:g} examples, averaged over episodes at 0 and at the last number of "
        f"observations. Intervals: {INTERVAL_LABEL}.</p>"
        "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + f"</tr></thead><tbody>{rows}"
        "</tbody></table>"
    )
    fitted_slope = slope(analysis)
    if fitted_slope is not None:
        body += (f"<p>Slope of the fitted prior mean against the stated probability ({html.escape(str(analysis.run_label))}): "
                 f"{fitted_slope[0]:.3f} ± {fitted_slope[1]:.3f} (1: the prior follows the statement; 0: it ignores "
                 "it).</p>")  # fmt: skip
    elif not framed:
        body += "<p>No run with a framing axis was fitted to this log (fit it with <code>icl-framed</code>).</p>"
    path = plot_framing(analysis, work_dir / f"{Path(log_path).stem}-framing.png")
    figure = figure_from_file(path, "Effective prior against the stated value, and TVD by number of observations")
    return Section(f"Framings: {name}", body, [figure])


# ---------------------------------------------------------------------------
# Findings: the plain-language summary
# ---------------------------------------------------------------------------


class Interval(NamedTuple):
    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3g} [{self.low:.3g}, {self.high:.3g}]"


class RunEstimates(NamedTuple):
    """What one run says in the findings: its place in the LOO table and its own estimates, with
    ``inference.fit.INTERVAL_PROB`` intervals, for the sites its model has (others empty or None)."""

    label: str
    """The run's name in the LOO table, ``"icl-general (nuts)"``."""
    method: str
    description: str
    """What its model says about the LLM (``ModelSpec.description``)."""
    elpd_diff: float | None
    """elpd of the best run minus this run's (0 for the best; None without a comparison)."""
    dse: float | None
    """Standard error of that difference."""
    prior_mean: dict[str, Interval]
    """``m`` per column: the effective prior's mean (``icl-none``: its constant predictive)."""
    strength: Interval | None
    """``s = sum(alpha)``: the prior's weight in in-context examples."""
    decay: Interval | None
    temperature: Interval | None
    components: list[dict[str, Any]]
    """A mixture prior's components (``w``, ``m``, ``s`` of each), for ``icl-mixture``."""
    pseudocount: Interval | None
    """``icl-frequency``'s pseudocount ``eps``: the prior ``eps 1_C``."""
    guide_pareto_k: float | None = None
    """SVI: the Pareto k of the guide's importance weights (``analysis.diagnostics``); None for NUTS."""
    guide_pareto_k_threshold: float | None = None
    """The k up to which that many importance draws are reliable."""
    levels: list[dict[str, Any]] = []
    """A prior per framing level (``icl-framed``): ``level`` (the ``framing`` label, ``"bias=30"``),
    ``prior_mean`` (column -> :class:`Interval`) and ``strength`` of each, in level order."""


class Findings(NamedTuple):
    """What the runs fitted to one log say, as far as the LOO table allows."""

    log: str
    """The log's file name."""
    llm: str
    """The log's ``model`` attribute."""
    in_play: list[RunEstimates]
    """The best run and every run within two standard errors of it (``analysis.compare.indistinguishable``),
    best first; every run when there is no comparison."""
    behind: list[RunEstimates]
    """The runs LOO places more than two standard errors behind the best."""
    verdict: str
    """``analysis.compare.verdict`` of the comparison (empty without one)."""
    preferred: str | None
    """The run LOO ranks first (None without a comparison)."""
    runner_up: str | None
    """The best-ranked run of another model (:func:`loo_preference`)."""
    elpd_diff: float | None
    """elpd of the preferred run minus the runner-up's."""
    dse: float | None
    """Standard error of that difference."""

    def estimates_of(self, model: str) -> RunEstimates | None:
        """The estimates of the first run of ``model`` (NUTS before SVI), in play or behind."""
        runs = sorted(self.in_play + self.behind, key=lambda run: run.method != "nuts")
        return next((run for run in runs if run.label.split(" (")[0] == model), None)


def run_estimates(run, label: str, table=None) -> RunEstimates:
    """The estimates of one run; ``table`` (a LOO comparison holding ``label``) gives its distance to the best."""
    import arviz_stats  # noqa: F401  (registers the .azstats accessor)

    from bayesmatrix.analysis.compare import model_description
    from bayesmatrix.inference.fit import INTERVAL_PROB

    posterior = run.datatree["posterior"]

    def interval(values) -> Interval:
        bounds = values.azstats.eti(prob=INTERVAL_PROB, dim=["chain", "draw"])
        mean = values.mean(["chain", "draw"])
        return Interval(float(mean), float(bounds.sel(ci_bound="lower")), float(bounds.sel(ci_bound="upper")))

    def scalar(site: str) -> Interval | None:
        return interval(posterior[site]) if site in posterior and posterior[site].ndim == 2 else None

    prior_mean, components = {}, []
    if "m" in posterior and posterior["m"].dims[2:] == ("col",):
        prior_mean = {str(c): interval(posterior["m"].sel(col=c)) for c in posterior["m"]["col"].values}
    elif "m" in posterior and "component" in posterior["m"].dims and "w" in posterior:
        for k in posterior["component"].values:
            components.append({
                "weight": interval(posterior["w"].sel(component=k)),
                "prior_mean": {str(c): interval(posterior["m"].sel(component=k, col=c)) for c in posterior["col"].values},
                "strength": interval(posterior["s"].sel(component=k)) if "s" in posterior else None,
            })  # fmt: skip
    levels = []
    if "m" in posterior and set(posterior["m"].dims[2:]) == {"framing", "col"}:
        per_level_strength = "s" in posterior and "framing" in posterior["s"].dims
        for f in posterior["framing"].values:
            levels.append({
                "level": str(f),
                "prior_mean": {str(c): interval(posterior["m"].sel(framing=f, col=c)) for c in posterior["col"].values},
                "strength": interval(posterior["s"].sel(framing=f)) if per_level_strength else None,
            })  # fmt: skip
    elpd_diff = dse = None
    if table is not None and label in table.index:
        elpd_diff, dse = float(table.loc[label, "elpd_diff"]), float(table.loc[label, "dse"])
    model = str(run.info.get("model", ""))
    guide_pareto_k = guide_pareto_k_threshold = None
    if run.info.get("method") == "svi":
        from bayesmatrix.analysis.diagnostics import importance_pareto_k, pareto_k_threshold
        from bayesmatrix.inference.svi import IMPORTANCE_SITE

        stats = run.datatree["sample_stats"] if "sample_stats" in run.datatree.children else {}
        if IMPORTANCE_SITE in stats:
            guide_pareto_k = importance_pareto_k(np.asarray(stats[IMPORTANCE_SITE]))
            guide_pareto_k_threshold = pareto_k_threshold(int(np.size(stats[IMPORTANCE_SITE])))
    return RunEstimates(
        label=label,
        method=str(run.info.get("method", "")),
        description=model_description(model) or model,
        elpd_diff=elpd_diff,
        dse=dse,
        prior_mean=prior_mean,
        strength=scalar("s"),
        decay=scalar("decay"),
        temperature=scalar("temperature"),
        components=components,
        pseudocount=scalar("pseudocount"),
        guide_pareto_k=guide_pareto_k,
        guide_pareto_k_threshold=guide_pareto_k_threshold,
        levels=levels,
    )


def findings_of(runs, comparisons: dict[str, Any]) -> list[Findings]:
    """One :class:`Findings` per log with a run of an in-context model; ``comparisons`` are the
    :class:`analysis.compare.Comparison` of its runs by the log's sha256 (:func:`comparison_sections`)."""
    from bayesmatrix.analysis.compare import indistinguishable, verdict

    by_log: dict[str, list] = {}
    for run in runs:
        if _is_icl_run(run):
            by_log.setdefault(run.info.get("data_sha256"), []).append(run)
    found = []
    for sha, members in by_log.items():
        comparison = comparisons.get(sha)
        preferred = runner_up = elpd_diff = dse = None
        if comparison is None:
            in_play = [run_estimates(run, run_label(run)) for run in members]
            behind, text = [], ""
        else:
            table = comparison.table
            by_path = {Path(path).resolve(): name for name, path in comparison.paths.items()}
            run_of = {by_path[Path(run.path).resolve()]: run for run in members if Path(run.path).resolve() in by_path}
            names = [str(label) for label in table.index if str(label) in run_of]
            level = {names[0], *(label for label, _, _ in indistinguishable(table))}
            estimates = [run_estimates(run_of[name], name, table) for name in names]
            in_play = [e for e in estimates if e.label in level]
            behind = [e for e in estimates if e.label not in level]
            text = verdict(table, comparison.methods, comparison.descriptions)
            preferred, runner_up, elpd_diff, dse = loo_preference(table)
        found.append(Findings(
            log=str(members[0].info.get("data_file")),
            llm=str(members[0].info.get("data_model", "")),
            in_play=in_play,
            behind=behind,
            verdict=text,
            preferred=preferred,
            runner_up=runner_up,
            elpd_diff=elpd_diff,
            dse=dse,
        ))  # fmt: skip
    return found


def loo_preference(table) -> tuple[str, str | None, float | None, float | None]:
    """The run LOO ranks first, and the best run of a *different* model with the elpd difference and its se.

    A NUTS and an SVI fit of one model are one explanation; the runner-up is
    the best-ranked run of another model. ``dse`` is the standard error of the
    difference to the best run, which ``arviz_stats.compare`` reports per row.
    """
    labels = [str(label) for label in table.index]
    preferred = labels[0]

    def model_of(label: str) -> str:
        return label.split(" (")[0]

    for position, label in enumerate(labels[1:], start=1):
        if model_of(label) != model_of(preferred):
            diff = float(table["elpd"].iloc[0] - table["elpd"].iloc[position])
            return preferred, label, diff, float(table["dse"].iloc[position])
    return preferred, None, None, None


def _means(prior_mean: dict[str, Interval]) -> str:
    return ", ".join(f"p({column.strip()}) = {value}" for column, value in prior_mean.items())


def estimates_line(run: RunEstimates) -> str:
    """One run's own estimates in words: the effective prior, decay and temperature it has."""
    parts = []
    if run.prior_mean and run.strength is not None:
        parts.append(f"effective prior: mean {_means(run.prior_mean)}; strength {run.strength} examples")
    elif run.prior_mean:
        parts.append(f"constant predictive {_means(run.prior_mean)} (the examples change nothing)")
    for k, component in enumerate(run.components):
        strength = f", strength {component['strength']} examples" if component["strength"] is not None else ""
        parts.append(f"prior component {k}: weight {component['weight']}, mean {_means(component['prior_mean'])}{strength}")
    for level in run.levels:
        strength = f", strength {level['strength']} examples" if level["strength"] is not None else ""
        parts.append(f"under {level['level']}: effective prior mean {_means(level['prior_mean'])}{strength}")
    if run.levels:
        parts.append("each level's prior is fitted to that level's rows alone: compare levels by the slope in "
                     "the framing section, not by whether their intervals overlap")  # fmt: skip
    if run.pseudocount is not None:
        parts.append(f"pseudocount {run.pseudocount} per category (a uniform prior of that many examples each)")
    if run.decay is not None:
        parts.append(f"decay {run.decay} (1 = every example counts alike, as Bayes requires)")
    if run.temperature is not None:
        parts.append(f"temperature {run.temperature} (1 = calibrated; above 1 flatter, below 1 sharper)")
    return "; ".join(parts) if parts else "no prior, decay or temperature to quote"


def format_findings(findings: Findings) -> str:
    """Plain sentences for the terminal and the report: the verdict, then each run in play with its own estimates."""
    from bayesmatrix.inference.fit import INTERVAL_LABEL

    lines = [f"{findings.llm or 'the LLM'} on {findings.log} ({INTERVAL_LABEL}):"]
    if findings.verdict:
        lines.append(f"  {findings.verdict}")
        lines.append("  in play:" if len(findings.in_play) > 1 else "  the preferred explanation:")
    else:
        lines.append("  no LOO comparison (one run on this log): nothing is preferred")

    def run_line(run: RunEstimates) -> str:
        where = f", {run.elpd_diff:.1f} ± {run.dse:.1f} elpd behind" if run.elpd_diff else ""
        approximate = ""
        if run.method == "svi":
            approximate = "; SVI: approximate intervals"
            if run.guide_pareto_k is not None and not np.isnan(run.guide_pareto_k):
                threshold = run.guide_pareto_k_threshold
                approximate += (f", guide Pareto k {run.guide_pareto_k:.2f}"
                                f"{' > ' if run.guide_pareto_k > threshold else ' <= '}{threshold:.2f}"
                                f"{': unreliable' if run.guide_pareto_k > threshold else ''}")  # fmt: skip
        return f"    {run.label}{where} ({run.description}{approximate}): {estimates_line(run)}"

    lines.extend(run_line(run) for run in findings.in_play)
    if findings.behind:
        lines.append("  more than two standard errors behind (each run's own estimates, not the verdict's):")
        lines.extend(run_line(run) for run in findings.behind)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Sections the demo adds
# ---------------------------------------------------------------------------


def consistency_section(results, work_dir: Path) -> Section:
    """The exchangeability and martingale checks of several models, as a table and a figure."""
    from bayesmatrix.analysis.consistency import consistency_table
    from bayesmatrix.analysis.plots import plot_consistency

    table = consistency_table(results)
    body = (
        "<p>An exact Bayesian's predictive does not depend on the order of its examples "
        "(exchangeability) and, under its own predictive, is on average unchanged by the next example "
        "(martingale); both statistics are 0 for it. Standard errors are over multisets and over paths.</p>"
        + table_html(table, index_name="model")
    )
    path = plot_consistency(results, work_dir / "consistency.png")
    return Section("Bayesian consistency: exchangeability and martingale", body,
                   [figure_from_file(path, "Consistency checks")])


def approximation_section(result, work_dir: Path) -> Section:
    """Held-out log density of Dirichlet mixtures with K components fitted to a non-Dirichlet prior."""
    from bayesmatrix.analysis.plots import plot_approximation

    path = plot_approximation(result.components, result.held_out, result.held_out_se,
                              work_dir / "approximation.png", reference=result.reference)
    rows = "".join(
        f"<tr><th>{k}</th><td>{v:.3f}</td><td>{result.reference - v:.3f}</td><td>{e:.3f}</td></tr>"
        for k, v, e in zip(result.components, result.held_out, result.held_out_se)
    )
    body = (
        f"<p>{html.escape(result.description)}</p><table><thead><tr><th>K</th><th>held-out mean log density</th>"
        f"<th>gap to the true prior (KL, nats)</th><th>standard error</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return Section("The Dirichlet-mixture approximation", body, [figure_from_file(path, "Held-out density against K")])


# ---------------------------------------------------------------------------
# The phenomena studies (``bayesmatrix phenomena``), a section each
# ---------------------------------------------------------------------------


def _interval_text(value: dict | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value['mean' if 'mean' in value else 'auroc']:.{digits}f} [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"


def _study_caption(result: dict) -> str:
    command = result.get("command") or ""
    return (f"Model {result.get('model', '?')}; {result.get('seconds', '?')} s. Rerun: {command}" if command
            else f"Model {result.get('model', '?')}.")  # fmt: skip


def phenomena_sections(folder: os.PathLike | str, work_dir: Path) -> list[Section]:
    """One section per study whose result file ``folder`` holds (``bayesmatrix phenomena``; README,
    "Phenomena on SmolLM2"): a table of its numbers and its figure."""
    from bayesmatrix.analysis.phenomena import read_study, studies_in
    from bayesmatrix.analysis.plots.phenomena import plot_cot, plot_hallucination, plot_long_context

    studies = studies_in(folder)
    if not studies:
        raise InputError("holds no study results (cot.json, long_context.json, hallucination.json)",
                         file=str(folder), field="phenomena")  # fmt: skip
    sections = []
    for study in studies:
        result = read_study(folder, study)
        caption = html.escape(_study_caption(result))
        if study == "cot":
            rows = "".join(
                f"<tr><th>{mode}</th><td>{_interval_text(s['accuracy'])}</td><td>{s['answered']}</td>"
                f"<td>{s['mean_entropy_bits']:.2f} ± {s['mean_entropy_se']:.2f}</td>"
                f"<td>{s['first_row_entropy_bits']:.2f} ± {s['first_row_entropy_se']:.2f}</td><td>{s['mean_tokens']:.0f}</td></tr>"
                for mode, s in result["summary"].items()
            )  # fmt: skip
            body = ("<p>Two-step arithmetic questions, answered greedily through the chat template directly and "
                    "step by step; the entropy of every next-token row along the answer, and whether the final "
                    f"number is right.</p><p>{caption}</p><table><thead><tr><th>mode</th><th>accuracy</th>"
                    "<th>answers with a number</th><th>mean entropy (bits/token)</th><th>first row (bits)</th>"
                    f"<th>mean tokens</th></tr></thead><tbody>{rows}</tbody></table>")  # fmt: skip
            path = plot_cot(result, work_dir / "phenomena-cot.png")
            sections.append(Section("Chain of thought: entropy along the answer", body,
                                    [figure_from_file(path, "Entropy by generated token, and accuracy")]))  # fmt: skip
        elif study == "long-context":
            rows = "".join(
                f"<tr><th>{c['placement']}</th><td>{c['inserted_tokens']}</td>"
                f"<td>{c['stated_excess_bits']:.3f} ± {c['stated_excess_se']:.3f}</td>"
                f"<td>{c['stated_excess_renormalised_bits']:.3f}</td><td>{c['other_mass']:.3f}</td>"
                f"<td>{_interval_text(c['decay'])}</td><td>{_interval_text(c['temperature'])}</td></tr>"
                for c in result["conditions"]
            )  # fmt: skip
            body = ("<p>Coin-flip episodes with unrelated text inserted before the episode or between its flips "
                    "at the middle. Excess bits per step against exact Bayes with the task's stated prior (± its "
                    "standard error over episodes; the renormalised figure forgives mass on other tokens), and "
                    f"icl-general's decay and temperature by NUTS.</p><p>{caption}</p><table><thead><tr>"
                    "<th>placement</th><th>inserted tokens</th><th>excess bits/step</th><th>renormalised</th>"
                    "<th>mass off H/T</th><th>decay</th><th>temperature</th></tr></thead>"
                    f"<tbody>{rows}</tbody></table>")  # fmt: skip
            path = plot_long_context(result, work_dir / "phenomena-long-context.png")
            sections.append(Section("Long contexts: excess bits and decay by inserted text", body,
                                    [figure_from_file(path, "Excess bits and decay by inserted length")]))  # fmt: skip
        else:
            rows = "".join(
                f"<tr><th>{group}</th><td>{s['prompts']}</td><td>{_interval_text(s['accuracy'])}</td>"
                f"<td>{'–' if s['entropy_right_bits'] is None else format(s['entropy_right_bits'], '.2f')}</td>"
                f"<td>{'–' if s['entropy_wrong_bits'] is None else format(s['entropy_wrong_bits'], '.2f')}</td>"
                f"<td>{_interval_text(s['auroc_wrong'])}</td></tr>"
                for group, s in result["summary"].items()
            )  # fmt: skip
            body = ("<p>The corpus's fact prompts against the shipped answer key: a greedy completion is right "
                    "when it starts with an accepted answer. The entropy of the row at the answer position as a "
                    "score for a wrong answer: its AUROC with DeLong's interval.</p>"
                    f"<p>{caption}</p><table><thead><tr><th>group</th><th>prompts</th><th>accuracy</th>"
                    "<th>entropy, right (bits)</th><th>entropy, wrong (bits)</th><th>AUROC for wrong</th></tr>"
                    f"</thead><tbody>{rows}</tbody></table>")  # fmt: skip
            path = plot_hallucination(result, work_dir / "phenomena-hallucination.png")
            sections.append(Section("Hallucination: entropy as a signal of a wrong answer", body,
                                    [figure_from_file(path, "ROC and entropy by group")]))  # fmt: skip
    return sections


# ---------------------------------------------------------------------------
# The HTML file
# ---------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
tbody th { white-space: nowrap; }
th:first-child, thead th { text-align: left; background: #f5f5f5; }
tr.failed td, tr.failed th { background: #fde0e0; color: #a00; }
.tag { background: #c00; color: white; font-weight: bold; padding: 0 .3em; border-radius: 2px; font-size: .8em; }
.failed-box { border: 2px solid #c00; background: #fde0e0; color: #700; padding: .4em .8em; margin: .6em 0; }
.passed-box { border: 1px solid #2a2; background: #e6f6e6; color: #060; padding: .3em .8em; margin: .6em 0; display: inline-block; }
pre.findings { background: #f7f7f7; border-left: 4px solid #47a; padding: .6em 1em; white-space: pre-wrap; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
nav li { font-size: .9em; }
"""


def render_html(title: str, sections: Sequence[Section], intro_html: str = "") -> str:
    """The whole report as one HTML string (figures inlined as data URIs)."""
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    toc = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>Written {created} by bayesmatrix.</p>",
        intro_html,
        f"<nav><ul>{toc}</ul></nav>",
    ]
    for i, section in enumerate(sections):
        parts.append(f'<section id="s{i}"><h2>{html.escape(section.title)}</h2>{section.html}')
        for figure in section.figures:
            caption = html.escape(figure.title + (": " + figure.caption if figure.caption else ""))
            parts.append(
                f'<figure><img alt="{html.escape(figure.title)}" src="{data_uri(figure.png)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


class ReportResult(NamedTuple):
    """What :func:`build_report` returns."""

    path: Path
    """The HTML file written."""
    findings: list[Findings]
    """The findings per log with a run of an in-context model."""
    comparisons: dict[str, Any]
    """LOO comparison tables by the sha256 of the log the runs share."""
    figures_dir: Path | None
    """Where the PNG figures were kept (None when they lived in a temporary folder)."""


def build_report(
    run_dirs: Sequence[os.PathLike | str],
    out: os.PathLike | str,
    logs: Sequence[os.PathLike | str] = (),
    *,
    title: str = "bayesmatrix report",
    extra_sections: Sequence[Callable[[Path], Section]] = (),
    token_decoder: Callable[[int], str] | None = None,
    model: str | None = None,
    figures_dir: os.PathLike | str | None = None,
    num_draws: int = 200,
    progress: bool = False,
    stated_alpha=None,
    phenomena: os.PathLike | str | None = None,
) -> ReportResult:
    """Read the runs (and logs), draw the figures and write the HTML report ``out`` atomically.

    ``extra_sections`` are callables ``make(work_dir) -> Section`` run after
    the built-in sections (figures go into ``work_dir``). ``token_decoder``
    names the top-k token ids of every log (the instrumented picture); without
    it they are decoded by the tokenizer of ``model`` (a shipped name, folder,
    GGUF file or hub id; only the tokenizer is loaded), or else of each log's
    own ``model`` attribute where this machine has it (:func:`log_decoder`);
    failing both, the picture shows the log's columns. ``figures_dir`` keeps
    the PNG files. Bad input (a folder that is not a run directory, a file
    that is not an LLM log, a ``model`` whose tokenizer does not match a log)
    raises :class:`InputError` before anything is written. ``progress`` shows a
    bar on stderr over the steps (after a second; tqdm). ``stated_alpha`` (C,) is the stated
    prior of every ICL log's excess code length (default: each log's task ``alpha``). ``phenomena`` is a
    folder of ``bayesmatrix phenomena`` results, one section each (:func:`phenomena_sections`).
    """
    from bayesmatrix.data.atomic import atomic_path
    from bayesmatrix.data.llmlog import read_log
    from bayesmatrix.inference.rundir import read_run

    out = Path(out)
    if not run_dirs and not logs and phenomena is None:
        raise InputError("nothing to report: give at least one run directory or LLM log")
    if out.is_dir():
        raise InputError(f"{out} is a directory; name the HTML file to write", field="out")
    from tqdm.auto import tqdm

    # One bar over the steps: reading each run and log, each comparison, each log's and run's section.
    bar = tqdm(total=2 * len(run_dirs) + 2 * len(logs) + 1 + len(extra_sections), desc="report", unit="step",
               disable=not progress, delay=1.0, file=sys.stderr, leave=False)  # fmt: skip

    def step(what: str, value=None):
        bar.set_postfix_str(what, refresh=False)
        bar.update()
        return value

    runs = [step(f"read {Path(path).name}", read_run(path)) for path in run_dirs]
    datasets = [(Path(path), step(f"read {Path(path).name}", read_log(path))) for path in logs]
    loaded: dict = {}
    decoders = [(token_decoder, "") if token_decoder is not None else log_decoder(ds, path, model, loaded)
                for path, ds in datasets]

    with tempfile.TemporaryDirectory(prefix="bayesmatrix-report-") as scratch:
        work_dir = Path(figures_dir) if figures_dir is not None else Path(scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        comparisons, by_log = step("LOO comparisons", comparison_sections(runs, work_dir))
        findings = findings_of(runs, by_log)
        sections: list[Section] = []
        intro = ""
        if findings:
            intro = "".join(f'<pre class="findings">{html.escape(format_findings(f))}</pre>' for f in findings)
        for (path, ds), (decoder, note) in zip(datasets, decoders):
            comparison = by_log.get(_sha(path))
            preferred = None if comparison is None else str(comparison.table.index[0])
            sections.append(step(f"log {path.name}", log_section(path, ds, runs, work_dir, decoder, preferred, num_draws, note,
                                                                 stated_alpha)))  # fmt: skip
            if "framing" in ds:
                sections.append(framing_section(path, ds, runs, work_dir))
        sections.extend(comparisons)
        sections.extend(step(f"diagnostics {Path(run.path).name}", diagnostics_section(run, work_dir)) for run in runs)
        sections.extend(step("extra section", make(work_dir)) for make in extra_sections)
        if phenomena is not None:
            sections.extend(phenomena_sections(phenomena, work_dir))
        document = render_html(title, sections, intro)
    bar.close()
    with atomic_path(out) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return ReportResult(path=out, findings=findings, comparisons={sha: c.table for sha, c in by_log.items()},
                        figures_dir=Path(figures_dir) if figures_dir is not None else None)


def _sha(path: Path) -> str:
    from bayesmatrix.inference.rundir import file_sha256

    return file_sha256(path)



