"""The end-to-end demo: log SmolLM2 on coin flips and die rolls, fit the ICL models, check, compare, report.

Stages (each prints one line, and the work below it shows its own progress bars):

1. load SmolLM2-135M-Instruct once (it serves the logging and the consistency checks);
2. log the ``coin`` and ``die`` tasks (``data.llm.log_task``, top-5 tokens kept for the pictures);
3. fit ``icl``, ``icl-general``, ``icl-mixture`` and the baselines ``icl-none`` and
   ``icl-frequency`` to the coin log by NUTS, ``icl-general`` also by SVI, and
   ``icl`` and ``icl-general`` to the die log by NUTS (``inference.fit.fit``);
4. Bayesian-consistency checks (exchangeability, martingale) on SmolLM2 and on
   the shipped wind-tunnel transformer (``analysis.consistency``);
5. the Dirichlet-mixture approximation curve (``analysis.approximation``);
6. the HTML report (``analysis.report``) and a plain-language summary.

``inference.runtime.configure`` must run before JAX starts, so the command
(``bayesmatrix demo``) calls it first (one host device per chain).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from bayesmatrix.data.errors import InputError

ICL_MODELS = ("icl", "icl-general", "icl-mixture", "icl-none", "icl-frequency")
MARKER = "demo.json"
WINDTUNNEL_WORLD = "dirichlet"


class DemoSettings(NamedTuple):
    """How big the demo is; :data:`FULL` runs in under 10 minutes on 2 cores, :data:`QUICK` in about 2.

    The quick version fits ``icl`` and ``icl-general`` (and
    ``icl-general`` by SVI) to the coin log only.
    """

    coin_episodes: int
    die_episodes: int
    coin_models: tuple[str, ...]
    length: int
    num_chains: int
    num_warmup: int
    num_samples: int
    svi_max_steps: int
    die_models: tuple[str, ...]
    multisets: int
    orders: int
    paths: int
    path_length: int
    approximation_rows: int
    approximation_steps: int
    report_draws: int


FULL = DemoSettings(
    coin_episodes=64, die_episodes=48, coin_models=ICL_MODELS, length=24, num_chains=2, num_warmup=500, num_samples=500,
    svi_max_steps=10000, die_models=("icl", "icl-general"), multisets=16, orders=8, paths=16, path_length=12,
    approximation_rows=2000, approximation_steps=3000, report_draws=200,
)
QUICK = DemoSettings(
    coin_episodes=8, die_episodes=4, coin_models=("icl", "icl-general"), length=8, num_chains=2,
    num_warmup=100, num_samples=100, svi_max_steps=2000, die_models=(), multisets=3, orders=3, paths=3,
    path_length=3, approximation_rows=400, approximation_steps=800, report_draws=50,
)


class DemoResult(NamedTuple):
    """What :func:`run_demo` returns (also written to ``OUT/demo.json``)."""

    out: Path
    report: Path
    summary: str
    """The plain-language summary printed at the end."""
    record: dict
    """Timings per stage, findings and consistency numbers."""


def _stage(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", file=sys.stderr, flush=True)


def check_out(out: str | Path) -> None:
    """The demo owns its folder: it may be new, empty, or a previous demo's (which is replaced)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", field="out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(f"{out} is not empty and holds no {MARKER}; choose a new folder for the demo", field="out")


def run_demo(out: str | Path = "demo-out", quick: bool = False, seed: int = 0) -> DemoResult:
    """Run every stage (module docstring) into ``out``; return the summary and where the report is."""
    out = Path(out)
    check_out(out)
    settings = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    total = 6
    timings: dict[str, float] = {}
    cpu_timings: dict[str, float] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    cpu_since = [cpu_started]

    def clock(name: str, since: float) -> float:
        """Wall and CPU seconds (all threads of this process) of a stage."""
        now, cpu_now = time.perf_counter(), time.process_time()
        timings[name] = round(now - since, 1)
        cpu_timings[name] = round(cpu_now - cpu_since[0], 1)
        cpu_since[0] = cpu_now
        return now

    _stage(1, total, "loading SmolLM2-135M-Instruct (about 20 s)")
    t = time.perf_counter()
    from bayesmatrix.data.llm import load_model

    loaded = load_model("smollm2")
    t = clock("load", t)

    logs = _log_tasks(loaded, out, settings, seed, lambda text: _stage(2, total, text))
    t = clock("log", t)

    runs = _fit_all(logs, out, settings, seed, lambda text: _stage(3, total, text))
    t = clock("fit", t)

    _stage(4, total, "Bayesian-consistency checks: exchangeability and martingale, SmolLM2 and the wind tunnel")
    consistency = _consistency(loaded, settings, seed)
    t = clock("consistency", t)

    _stage(5, total, "Dirichlet-mixture approximation of a logistic-normal prior, K = 1..6")
    from bayesmatrix.analysis.approximation import approximation_curve

    approximation = approximation_curve(num_rows=settings.approximation_rows, seed=seed, steps=settings.approximation_steps)
    t = clock("approximation", t)

    _stage(6, total, "report: diagnostics, LOO comparison, figures")
    from bayesmatrix.analysis.report import approximation_section, build_report, consistency_section, format_findings

    report = build_report(
        runs,
        out / "report.html",
        [logs["coin"], logs["die"]],
        title="bayesmatrix demo: SmolLM2-135M-Instruct as a Bayesian in-context learner",
        extra_sections=[
            lambda work_dir: consistency_section(consistency, work_dir),
            lambda work_dir: approximation_section(approximation, work_dir),
        ],
        token_decoder=lambda token: loaded.tokenizer.decode([token]),
        figures_dir=out / "figures",
        num_draws=settings.report_draws,
    )
    clock("report", t)
    timings["total"] = round(time.perf_counter() - started, 1)
    cpu_timings["total"] = round(time.process_time() - cpu_started, 1)

    lines = [format_findings(f) for f in report.findings]
    for result in consistency:
        ex, mg = result.exchangeability, result.martingale
        lines.append(
            f"{result.name}: order spread (max TV between orders) {ex.mean_max_tv:.3f} ± {ex.mcse_max_tv:.3f}; "
            f"martingale gap {mg.mean_gap:.4f} ± {mg.mcse_gap:.4f} (both 0 for an exact Bayesian)"
        )
    lines.append(f"report: {report.path}  ({timings['total']:.0f} s in all)")
    summary = "\n".join(lines)
    record = {
        "quick": quick,
        "seed": seed,
        "settings": settings._asdict(),
        "seconds": timings,
        "cpu_seconds": cpu_timings,
        "findings": [_findings_json(f) for f in report.findings],
        "consistency": [
            {
                "name": r.name,
                "order_spread_max_tv": r.exchangeability.mean_max_tv,
                "order_spread_max_tv_mcse": r.exchangeability.mcse_max_tv,
                "order_spread_sd": r.exchangeability.mean_sd,
                "martingale_gap": r.martingale.mean_gap,
                "martingale_gap_mcse": r.martingale.mcse_gap,
            }
            for r in consistency
        ],
        "approximation": {
            "components": approximation.components.tolist(),
            "held_out": approximation.held_out.tolist(),
            "held_out_se": approximation.held_out_se.tolist(),
            "reference": approximation.reference,
        },
        "report": report.path.name,
    }
    from bayesmatrix.data.atomic import write_text_atomic

    write_text_atomic(out / MARKER, json.dumps(record, indent=2) + "\n")
    return DemoResult(out=out, report=report.path, summary=summary, record=record)


def _log_tasks(loaded, out: Path, settings: DemoSettings, seed: int, say) -> dict[str, Path]:
    from bayesmatrix.data.llm import RowOptions, log_task
    from bayesmatrix.data.llmlog import write_log
    from bayesmatrix.data.tasks import get_task

    logs = {}
    for name, episodes in (("coin", settings.coin_episodes), ("die", settings.die_episodes)):
        say(f"logging SmolLM2 on the {name} task: {episodes} episodes x {settings.length} observations")
        ds = log_task(loaded, get_task(name), episodes, settings.length, seed, options=RowOptions(topk_store=5),
                      progress=True)
        logs[name] = write_log(ds, out / f"{name}.nc")
    return logs


def _fit_all(logs: dict[str, Path], out: Path, settings: DemoSettings, seed: int, say) -> list[Path]:
    from bayesmatrix.analysis.plots import run_figures
    from bayesmatrix.inference.fit import FitOptions, fit

    plan = [("coin", model, "nuts") for model in settings.coin_models]
    plan.append(("coin", "icl-general", "svi"))
    plan.extend(("die", model, "nuts") for model in settings.die_models)
    paths = []
    for index, (task, model, method) in enumerate(plan, start=1):
        shape = (
            f"{settings.num_chains} chains x {settings.num_samples} draws"
            if method == "nuts"
            else f"up to {settings.svi_max_steps} steps"
        )
        say(f"fit {index}/{len(plan)}: {model} to {task}.nc by {method.upper()} ({shape})")
        options = FitOptions(
            model=model,
            method=method,
            num_samples=settings.num_samples,
            num_warmup=settings.num_warmup,
            num_chains=settings.num_chains,
            seed=seed,
            max_steps=settings.svi_max_steps,
        )
        result = fit(logs[task], options, out / "runs" / f"{task}-{model}-{method}", force=True, figures=run_figures)
        paths.append(result.path)
    return paths


def _consistency(loaded, settings: DemoSettings, seed: int) -> list[Any]:
    from bayesmatrix.analysis.consistency import check, task_multisets, task_predictive
    from bayesmatrix.data.tasks import get_task

    coin = get_task("coin")
    cases = [("SmolLM2 (coin)", loaded, coin)]
    windtunnel = _windtunnel()
    if windtunnel is not None:
        wind_model, task = windtunnel
        cases.append((f"wind tunnel ({task.name})", wind_model, task))
    results = [
        check(
            name,
            task_predictive(model, task),
            task.categories,
            task_multisets(task, settings.multisets, settings.path_length, seed),
            num_orders=settings.orders,
            num_paths=settings.paths,
            length=settings.path_length,
            seed=seed,
            progress=True,
        )
        for name, model, task in cases
    ]
    return results


def _windtunnel():
    """The shipped wind-tunnel transformer as a loaded model and the task its prompts render, or None."""
    import dataclasses

    from bayesmatrix.data.llm import LoadedModel
    from bayesmatrix.data.tasks import windtunnel_task
    from bayesmatrix.data.windtunnel.modeling import load, shipped_model

    try:
        trained = load(shipped_model(WINDTUNNEL_WORLD))
    except InputError as error:
        print(f"      skipping the wind tunnel: {error}", file=sys.stderr)
        return None
    world = trained.world
    # Its prompts are "<bos> A C B", rendered as bayesmatrix log renders the world's task.
    task = dataclasses.replace(windtunnel_task(world), name=f"{world.name} world")
    return LoadedModel(trained.model, trained.tokenizer, str(trained.path), None), task


def _findings_json(findings) -> dict:
    def interval(value) -> list[float] | None:
        return None if value is None else [value.mean, value.low, value.high]

    def run_json(run) -> dict:
        return {"label": run.label, "method": run.method, "elpd_diff": run.elpd_diff, "dse": run.dse,
                "prior_mean": {column: interval(value) for column, value in run.prior_mean.items()},
                "strength": interval(run.strength), "decay": interval(run.decay),
                "temperature": interval(run.temperature)}  # fmt: skip

    record = {
        "log": findings.log,
        "llm": findings.llm,
        "verdict": findings.verdict,
        "in_play": [run_json(run) for run in findings.in_play],
        "behind": [run_json(run) for run in findings.behind],
        "preferred": findings.preferred,
        "runner_up": findings.runner_up,
        "elpd_diff": findings.elpd_diff,
        "dse": findings.dse,
    }
    general = findings.estimates_of("icl-general")
    if general is not None:  # the generalised updater's own estimates, in play or not, as before
        record.update({key: value for key, value in run_json(general).items() if key not in ("elpd_diff", "dse")})
        record["estimates_of"] = record.pop("label")
        record.pop("method")
    return record
