"""Studies across models: one ICL task on a list of models, their Bayesian-ness in one table and one figure.

README, "Studies". For each model (a shipped name such as ``smollm2`` or
``windtunnel:dirichlet``, a transformers folder, a GGUF file or a hub id, all
resolved by ``data.llm.load_model``) :func:`run_study` runs these stages, each
printing one line:

1. load the model and count its parameters (``data.windtunnel.modeling.count_parameters``,
   on the loaded model: a GGUF file's as transformers dequantises it);
2. log the task (``data.llm.log_task``), ``samples`` tokens drawn from each row;
3. fit ``icl``, ``icl-general``, ``icl-none`` and ``icl-frequency`` by NUTS
   (``inference.fit.fit``), observing ``observe`` (the sampled tokens, or the rows);
4. check exchangeability and the martingale property on the loaded model, as
   ``make demo`` does (``analysis.consistency``);
5. read the measures (``analysis.study.fit_measures``) into the model's row
   and write ``measures.json``, the mark of a finished model.

The study folder::

    OUT/study.json              the task and the settings; a rerun must use the same
    OUT/study.csv, study.png    the table (analysis.study.COLUMNS) and the figure
    OUT/models/NAME/            one folder per model: model.json (what was loaded, its
                                parameters), log.nc, runs/MODEL/ (run directories),
                                consistency.json, measures.json

Every file is written atomically (``data.atomic``, ``data.llmlog.write_log``,
``inference.rundir``). A rerun skips the models with a ``measures.json``; a
model a crash interrupted resumes from the stages it finished (its log, each
run directory fitted to that log, its consistency checks). ``run_study`` does
not configure JAX: call ``inference.runtime.configure(num_chains)`` before JAX
starts to run the chains in parallel (``bayesmatrix study`` does).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from bayesmatrix.data.errors import InputError

STUDY_FILE = "study.json"
TABLE_FILE = "study.csv"
FIGURE_FILE = "study.png"
MODELS_DIR = "models"
MODEL_FILE = "model.json"
LOG_FILE = "log.nc"
RUNS_DIR = "runs"
CONSISTENCY_FILE = "consistency.json"
MEASURES_FILE = "measures.json"
"""What marks a finished model: its row of the table and how it was made."""
OBSERVE = ("counts", "probs")


@dataclass(frozen=True)
class StudySettings:
    """How each model is logged, fitted and checked; checks itself (an :class:`InputError` names the field)."""

    episodes: int = 32
    length: int = 16
    samples: int = 10
    """Tokens sampled from each row into the log's ``counts``."""
    observe: str = "counts"
    """What the ICL models observe: ``counts`` (the sampled tokens, what an outside observer sees) or
    ``probs`` (the rows themselves; a near-exact model then wants float64)."""
    num_chains: int = 2
    num_warmup: int = 300
    num_samples: int = 300
    seed: int = 0
    multisets: int = 8
    """Exchangeability: multisets of examples, each shown in ``orders`` orders."""
    orders: int = 6
    paths: int = 8
    """Martingale: paths drawn from the model itself, ``path_length`` observations each."""
    path_length: int = 8
    batch_size: int = 8
    device: str = "cpu"

    def __post_init__(self):
        from bayesmatrix.data.errors import checked_seed

        if self.observe not in OBSERVE:
            raise InputError(f"is {self.observe!r}; choose one of {', '.join(OBSERVE)}", field="observe")
        for name, least in (("episodes", 2), ("length", 1), ("num_chains", 1), ("num_samples", 1),
                            ("multisets", 2), ("orders", 2), ("paths", 2), ("path_length", 1),
                            ("batch_size", 1), ("num_warmup", 0), ("samples", 0)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"is {value!r}; it must be a whole number of at least {least}", field=name)
        if self.observe == "counts" and self.samples < 1:
            raise InputError("is 0; observing counts needs at least one token sampled per row", field="samples")
        checked_seed(self.seed)


class StudyResult(NamedTuple):
    """What :func:`run_study` returns."""

    out: Path
    """The study folder."""
    rows: list[dict[str, Any]]
    """One row per model, in the order given: ``model``, ``parameters`` and the measures of
    ``analysis.study.COLUMNS`` (intervals as ``_low``/``_high``; NaN where a measure does not apply)."""
    table: Path
    """``OUT/study.csv``: the rows."""
    figure: Path
    """``OUT/study.png``: each measure against parameter count."""
    reused: tuple[str, ...]
    """The models whose ``measures.json`` a previous run had written (not redone)."""
    summary: str
    """The table as printed (``analysis.study.format_table``)."""


def _say_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def model_folder_name(spec: str) -> str:
    """The folder of ``spec`` under ``OUT/models``: a shipped name with ``-`` for ``:``, a path's last
    part, a hub id with ``--`` for ``/``."""
    from bayesmatrix.data.catalog import is_name

    if is_name(spec):
        base = spec.replace(":", "-")
    elif Path(spec).exists():
        base = Path(spec).resolve().name
    else:
        base = spec.replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "model"


def model_identity(spec: str) -> str:
    """What ``spec`` stands for, the same from any folder: a catalog name's path, a path made absolute,
    a hub id as given."""
    from bayesmatrix.data.catalog import is_name, resolve

    if is_name(spec):
        return str(Path(resolve(spec, field="models")).resolve())
    return str(Path(spec).resolve()) if Path(spec).exists() else spec


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, record: dict) -> None:
    from bayesmatrix.data.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(record, indent=2, default=_json_value) + "\n")


def _json_value(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def study_record(task, settings: StudySettings) -> dict[str, Any]:
    """What ``study.json`` holds of a study's task (a ``data.tasks.Task``) and settings; a rerun must match it."""
    return {"task": task.to_json(), "settings": dataclasses.asdict(settings)}


def check_study_folder(out: Path, record: dict) -> None:
    """``out`` may be new, empty, or a study of the same task and settings (which it resumes)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", field="out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    previous = _read_json(out / STUDY_FILE)
    if previous is None:
        raise InputError(f"{out} is not empty and holds no {STUDY_FILE}; choose a new folder for the study",
                         field="out")  # fmt: skip
    if previous.get("task") != record["task"]:
        raise InputError(f"{out} holds a study of another task ({previous.get('task', {}).get('name')!r}); "
                         "choose a new folder", field="out")  # fmt: skip
    changed = [name for name, value in record["settings"].items() if previous.get("settings", {}).get(name) != value]
    if changed:
        was = ", ".join(f"{name} {previous.get('settings', {}).get(name)!r}" for name in changed)
        raise InputError(f"{out} holds a study made with other settings ({was}); rerun with those or choose a "
                         "new folder", field="out")  # fmt: skip


def run_study(
    models: Sequence[str],
    task: str,
    out: str | Path,
    *,
    episodes: int = StudySettings.episodes,
    length: int = StudySettings.length,
    samples: int = StudySettings.samples,
    observe: str = StudySettings.observe,
    num_chains: int = StudySettings.num_chains,
    num_warmup: int = StudySettings.num_warmup,
    num_samples: int = StudySettings.num_samples,
    seed: int = StudySettings.seed,
    multisets: int = StudySettings.multisets,
    orders: int = StudySettings.orders,
    paths: int = StudySettings.paths,
    path_length: int = StudySettings.path_length,
    batch_size: int = StudySettings.batch_size,
    device: str = StudySettings.device,
    say: Callable[[str], None] = _say_stderr,
) -> StudyResult:
    """Run the ICL ``task`` (a shipped task name or a task file) on each of ``models`` into ``out``.

    Each model goes through the stages of the module docstring into ``OUT/models/NAME``; a model
    with a ``measures.json`` from an earlier run of the same study is read back, not redone. Writes
    ``OUT/study.csv`` and ``OUT/study.png`` for the models given, in their order, and returns
    :class:`StudyResult` (its ``rows`` are dicts with a ``parameters`` column). ``say`` gets one
    line per stage per model. Bad input (an unknown task or shipped name, a model the loader
    cannot find, a folder holding another study) is an :class:`InputError`.
    """
    from bayesmatrix.analysis.study import format_table, plot_study, write_table
    from bayesmatrix.data.tasks import get_task

    settings = StudySettings(episodes=episodes, length=length, samples=samples, observe=observe,
                             num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples, seed=seed,
                             multisets=multisets, orders=orders, paths=paths, path_length=path_length,
                             batch_size=batch_size, device=device)  # fmt: skip
    models = [str(model) for model in models]
    if not models:
        raise InputError("give at least one model", field="models")
    folders = {}
    for spec in models:
        identity = model_identity(spec)  # an unknown shipped name fails here, before any work
        name = model_folder_name(spec)
        if name in folders:
            raise InputError(f"{spec!r} and {folders[name][0]!r} would share the folder {name}; give each model "
                             "once (or copy one to a folder of another name)", field="models")  # fmt: skip
        folders[name] = (spec, identity)
    the_task = get_task(task)
    out = Path(out)
    record = study_record(the_task, settings)
    check_study_folder(out, record)
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_json(out / STUDY_FILE) or {}
    record["models"] = list(dict.fromkeys([*previous.get("models", []), *models]))
    _write_json(out / STUDY_FILE, record)

    rows, reused = [], []
    for index, (name, (spec, identity)) in enumerate(folders.items(), start=1):
        folder = out / MODELS_DIR / name

        def stage(text: str, index=index, spec=spec) -> None:
            say(f"[{index}/{len(folders)}] {spec}: {text}")

        finished = _finished(folder, identity)
        if finished is not None:
            stage(f"finished earlier; reusing {folder / MEASURES_FILE}")
            rows.append(finished["row"])
            reused.append(spec)
            continue
        rows.append(_study_model(spec, identity, the_task, folder, settings, stage))

    table = write_table(rows, out / TABLE_FILE)
    figure = plot_study(rows, out / FIGURE_FILE, title=f"Bayesian-ness against parameters: task {the_task.name}")
    return StudyResult(out=out, rows=rows, table=table, figure=figure, reused=tuple(reused),
                       summary=format_table(rows))  # fmt: skip


def _finished(folder: Path, identity: str) -> dict | None:
    """The model's measures.json if it is finished and of this model; an error if the folder holds another's."""
    loaded = _read_json(folder / MODEL_FILE)
    if loaded is not None and loaded.get("identity") != identity:
        raise InputError(f"{folder} holds the study of {loaded.get('identity')!r}, not of {identity!r}; "
                         "choose a new folder or give that model a folder of another name", field="models")  # fmt: skip
    measures = _read_json(folder / MEASURES_FILE)
    return measures if measures is not None and "row" in measures else None


def _study_model(spec: str, identity: str, task, folder: Path, settings: StudySettings, stage) -> dict[str, Any]:
    """Every stage of one model into ``folder``, reusing the stages a crash left finished; returns its row."""
    from bayesmatrix.analysis.study import FIT_MODELS, fit_measures

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / LOG_FILE
    model_record = _read_json(folder / MODEL_FILE)
    consistency = _read_json(folder / CONSISTENCY_FILE)
    loaded = None
    if model_record is None or not log.is_file() or consistency is None:
        stage("loading")
        loaded = _load(spec, settings.device)
        from bayesmatrix.data.windtunnel.modeling import count_parameters

        model_record = {"model": spec, "identity": identity, "parameters": int(count_parameters(loaded.model)),
                        "file_sha256": loaded.file_hash}  # fmt: skip
        _write_json(folder / MODEL_FILE, model_record)
        stage(f"{model_record['parameters']:,} parameters")
    if not log.is_file():
        stage(f"logging {settings.episodes} episodes x {settings.length} observations of {task.name}"
              + (f", {settings.samples} tokens sampled per row" if settings.samples else ""))  # fmt: skip
        _log(loaded, task, log, settings)
    runs = {}
    for number, icl_model in enumerate(FIT_MODELS, start=1):
        run_dir = folder / RUNS_DIR / icl_model
        if not _fitted_to(run_dir, log):
            stage(f"fit {number}/{len(FIT_MODELS)}: {icl_model} by NUTS ({settings.num_chains} chains x "
                  f"{settings.num_samples} draws, observing {settings.observe})")  # fmt: skip
            _fit(log, icl_model, run_dir, settings)
        runs[icl_model] = run_dir
    if consistency is None:
        stage(f"consistency checks: {settings.multisets} multisets x {settings.orders} orders, "
              f"{settings.paths} paths x {settings.path_length} observations")  # fmt: skip
        consistency = _consistency(loaded, task, settings)
        _write_json(folder / CONSISTENCY_FILE, consistency)
    del loaded
    stage("measures: estimates, excess code length, LOO")
    measures = fit_measures(runs, log)
    row = {"model": spec, "parameters": model_record["parameters"], **measures.row, **consistency["columns"]}
    _write_json(folder / MEASURES_FILE, {
        "row": row, "loo_verdict": measures.verdict, "loo_warnings": measures.warnings, "excess": measures.excess_line,
        "consistency_skipped": consistency.get("skipped", ""), "settings": dataclasses.asdict(settings),
        "seconds": round(time.perf_counter() - started, 1),
    })  # fmt: skip
    stage(f"done: icl - {row['non_bayes']} {row['loo_bayes']:.1f} ± {row['loo_bayes_se']:.1f} elpd "
          f"({row['loo_verdict']}); icl-general - icl {row['loo_general']:.1f} ± {row['loo_general_se']:.1f}")
    return row


def _load(spec: str, device: str):
    from bayesmatrix.data.llm import load_model

    try:
        return load_model(spec, device=device)
    except InputError as error:
        # the loader names the model; the study's option is the list
        raise InputError(error.reason, file=error.file, field="models") from None


def _log(loaded, task, log: Path, settings: StudySettings) -> None:
    from bayesmatrix.data.llm import RowOptions, log_task
    from bayesmatrix.data.llmlog import write_log

    try:
        ds = log_task(loaded, task, settings.episodes, settings.length, settings.seed, settings.batch_size,
                      options=RowOptions(samples=settings.samples, seed=settings.seed), progress=True)  # fmt: skip
    except InputError as error:  # a task this model's tokenizer cannot render
        raise InputError(f"{loaded.name}: {error.reason}", file=error.file, field=error.field or "task") from None
    write_log(ds, log)


def _fitted_to(run_dir: Path, log: Path) -> bool:
    """Whether ``run_dir`` is a finished run of the log as it is now."""
    from bayesmatrix.inference.rundir import file_sha256, is_run_dir

    if not is_run_dir(run_dir):
        return False
    info = _read_json(run_dir / "run.json") or {}
    return info.get("data_sha256") == file_sha256(log)


def _fit(log: Path, icl_model: str, run_dir: Path, settings: StudySettings) -> None:
    from bayesmatrix.inference.fit import FitOptions, fit

    options = FitOptions(model=icl_model, num_samples=settings.num_samples, num_warmup=settings.num_warmup,
                         num_chains=settings.num_chains, seed=settings.seed, observe=(settings.observe,),
                         progress_bar=False)  # fmt: skip
    fit(log, options, run_dir, force=True)


def _consistency(loaded, task, settings: StudySettings) -> dict[str, Any]:
    """The order spread and martingale gap of the loaded model on the task, as JSON (NaN and the reason
    where the check cannot run: categories of several tokens)."""
    from bayesmatrix.analysis.consistency import check, task_multisets, task_predictive
    from bayesmatrix.analysis.study import consistency_columns

    try:
        predictive = task_predictive(loaded, task)
    except InputError as error:
        return {"columns": consistency_columns(None), "skipped": error.reason}
    result = check(loaded.name, predictive, task.categories,
                   task_multisets(task, settings.multisets, settings.path_length, settings.seed),
                   num_orders=settings.orders, num_paths=settings.paths, length=settings.path_length,
                   seed=settings.seed, progress=True)  # fmt: skip
    return {"columns": consistency_columns(result), "skipped": ""}
