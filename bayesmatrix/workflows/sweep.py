"""In-context learning against model size: one wind-tunnel world, one recipe, models from 1e3 to 5e5 parameters.

README, "In-context learning against size". Each size of :data:`SIZES` is
trained on the same world with the same data stream, steps and batch
(:func:`bayesmatrix.data.windtunnel.training.train`, resumable per size from
its checkpoint) and scored against the exact posterior predictive by position,
strict (the category probabilities as they are) and beyond the training length
``K`` (:func:`bayesmatrix.data.windtunnel.evaluation.evaluate`). Then the sizes
are one study (``bayesmatrix.workflows.study.run_study``, in ``OUT/study``), as
any list of models is: each logged on the world's task, fitted with ``icl``
(exact Bayes), ``icl-general`` (decay and temperature free), ``icl-none`` and
``icl-frequency``, and checked for order and the martingale property. One row
per size: the strict KL and the study's measures (decay, temperature and prior
strength with their intervals, the LOO differences, excess bits, the order and
martingale gaps); one figure of them against the parameter count, with the
smallest size whose updater reads as exact marked (:func:`exact_updater`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

from bayesmatrix.data.errors import InputError, check_at_least


class Size(NamedTuple):
    """One model size of the sweep (a Llama with rotary positions)."""

    hidden_size: int
    num_layers: int
    num_heads: int

    @property
    def name(self) -> str:
        return f"h{self.hidden_size}-l{self.num_layers}-a{self.num_heads}"


# From about 1e3 to 5e5 parameters, width and depth both growing; h64-l2-a4 is the shipped models' size.
SIZES = (
    Size(8, 1, 2),  # 856 parameters
    Size(16, 1, 2),  # 3,232
    Size(24, 2, 2),  # 14,088
    Size(48, 2, 4),  # 56,112
    Size(64, 2, 4),  # 99,520
    Size(96, 3, 4),  # 334,752
    Size(112, 3, 4),  # 455,392
)
# Two tiny sizes for tests and a look at the pipeline in a minute or two.
QUICK_SIZES = (Size(4, 1, 1), Size(8, 1, 2))


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """The one recipe every size is trained, scored and studied with; checks itself.

    The training defaults are the shipped dirichlet model's recipe (learning rate,
    warm-up, ``outside_penalty`` 30) on a smaller budget: 1000 steps of 128
    sequences, an eighth of its 2400 x 256 sequences, so that seven sizes train in
    10 to 16 CPU-minutes (543 and 943 CPU-s in two runs on 2 cores).
    """

    sizes: tuple[Size, ...] = SIZES
    world: str = "dirichlet"
    steps: int = 1000
    batch_size: int = 128
    length: int = 32
    learning_rate: float = 3e-3
    outside_penalty: float = 30.0
    seed: int = 0
    eval_sequences: int = 2000
    """Held-out sequences each size is scored on."""
    eval_length: int = 64
    """Tokens per scored sequence: positions beyond ``length`` were never trained."""
    episodes: int = 64
    """Episodes logged per size (the study's ``episodes``)."""
    samples: int = 10
    """Tokens sampled per logged row."""
    num_chains: int = 2
    num_warmup: int = 200
    num_samples: int = 200
    fit_seed: int = 1
    """The study's seed: each size's log, fits and consistency checks."""

    def __post_init__(self):
        if not self.sizes:
            raise InputError("needs at least one size", field="sizes")
        check_at_least(1, **{name: getattr(self, name) for name in ("steps", "batch_size", "length", "eval_sequences",
                                                                    "episodes", "samples", "num_chains", "num_samples")})
        if self.eval_length < self.length:
            raise InputError(f"must be at least the training length {self.length}, not {self.eval_length}",
                             field="eval_length")
        if self.num_warmup < 0:
            raise InputError(f"must not be negative, not {self.num_warmup}", field="num_warmup")
        for size in self.sizes:
            self.train_options(size)  # the training options check themselves
        from bayesmatrix.workflows.study import StudySettings

        StudySettings(**self.study_options())  # so does the study's part, before any size trains

    def study_options(self) -> dict:
        """The keyword arguments of ``workflows.study.run_study`` (and its ``StudySettings``) for the sizes."""
        return dict(episodes=self.episodes, length=self.length, samples=self.samples, observe="counts",
                    num_chains=self.num_chains, num_warmup=self.num_warmup, num_samples=self.num_samples,
                    seed=self.fit_seed)  # fmt: skip

    def train_options(self, size: Size):
        """The :class:`TrainOptions` of one size: everything but the size is shared."""
        from bayesmatrix.data.windtunnel.training import TrainOptions

        return TrainOptions(
            world=self.world, steps=self.steps, seed=self.seed, length=self.length, batch_size=self.batch_size,
            learning_rate=self.learning_rate, outside_penalty=self.outside_penalty,
            checkpoint_every=max(1, min(200, self.steps // 5)), eval_every=max(1, min(100, self.steps // 10)),
            hidden_size=size.hidden_size, num_layers=size.num_layers, num_heads=size.num_heads,
        )  # fmt: skip


def model_dir(out: Path, size: Size) -> Path:
    return Path(out) / size.name


def trained(out: Path, size: Size, settings: SweepSettings, command: str | None = None, progress: bool = False):
    """Train one size into ``OUT/NAME`` (resuming its checkpoint; a finished folder is reused)."""
    from bayesmatrix.data.windtunnel.training import train

    return train(settings.train_options(size), model_dir(out, size), progress=progress, command=command)


# A small recipe for tests and a first look: two tiny sizes, a few steps, a short log, short chains.
QUICK = SweepSettings(sizes=QUICK_SIZES, steps=40, batch_size=32, length=8, eval_sequences=200, eval_length=16,
                      episodes=8, num_warmup=150, num_samples=150)
# An updater reads as exact when its strict mean KL over 1..K is at most this many bits, icl-general's
# temperature interval contains 1 and its decay interval reaches the edge of its support (decay = 1,
# which a central interval of a parameter at most 1 never contains: its upper end within DECAY_EDGE of 1),
# and LOO does not prefer icl-general.
EXACT_KL_BITS = 1e-3
DECAY_EDGE = 1e-3
# LOO "prefers" icl-general when its elpd gain over icl exceeds this many standard errors of the difference.
LOO_PREFERENCE_SE = 2.0
TABLE = "sweep.csv"
RECORD = "sweep.json"
FIGURE = "sweep.png"
STUDY_DIR = "study"
"""``OUT/study``: the study of every size (``workflows.study``), its logs and runs."""


class SweepResult(NamedTuple):
    """What :func:`run_sweep` wrote and found."""

    rows: list[dict]
    """One dict per size, smallest first (fields :func:`columns`)."""
    exact: str | None
    """The name of the smallest size whose updater reads as exact (:func:`exact_updater`), ``None`` if none."""
    table: Path
    record: Path
    figure: Path


SIZE_COLUMNS = ("size", "hidden_size", "num_layers", "num_heads", "parameters")
SCORE_COLUMNS = ("strict_kl_bits", "strict_kl_bits_se", "strict_kl_bits_beyond", "kl_bits", "outside_mass")
COST_COLUMNS = ("train_cpu_seconds", "eval_cpu_seconds", "study_seconds")


def columns() -> list[str]:
    """The table's columns: the size, its scores, the study's measures (``analysis.study.table_columns``),
    whether it reads as exact, and what each step cost."""
    from bayesmatrix.analysis.study import table_columns

    measured = [column for column in table_columns() if column not in ("model", "parameters")]
    return [*SIZE_COLUMNS, *SCORE_COLUMNS, *measured, "exact", *COST_COLUMNS]


def exact_updater(row: dict, kl_bits: float = EXACT_KL_BITS) -> bool:
    """Whether a size's row reads as an exact Bayesian updater (see :data:`EXACT_KL_BITS`)."""
    covers_one = row["temperature_low"] <= 1.0 <= row["temperature_high"] and row["decay_high"] >= 1.0 - DECAY_EDGE
    loo_prefers_general = row["loo_general"] > LOO_PREFERENCE_SE * row["loo_general_se"]
    return bool(row["strict_kl_bits"] <= kl_bits and covers_one and not loo_prefers_general)


def smallest_exact(rows: list[dict]) -> str | None:
    """The name of the smallest size (by parameters) whose row reads as exact, ``None`` if none does."""
    exact = [row for row in sorted(rows, key=lambda row: row["parameters"]) if row["exact"]]
    return exact[0]["size"] if exact else None


def scored(out: Path, size: Size, settings: SweepSettings) -> dict:
    """Strict and renormalised KL by position on held-out sequences (``OUT/NAME-eval.json``, reused)."""
    import json
    import time

    from bayesmatrix.data.windtunnel.evaluation import evaluate, write_evaluation

    path = Path(out) / f"{size.name}-eval.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["sequences"] == settings.eval_sequences and saved["length"] == settings.eval_length:
            return saved
    started = time.process_time()
    evaluation = evaluate(model_dir(out, size), sequences=settings.eval_sequences, length=settings.eval_length)
    cpu = time.process_time() - started
    write_evaluation(evaluation, path)
    saved = json.loads(path.read_text())
    saved["eval_cpu_seconds"] = round(cpu, 1)
    from bayesmatrix.data.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(saved, indent=2) + "\n")
    return saved


def studied(out: Path, settings: SweepSettings, say=print):
    """Every size through ``workflows.study.run_study`` on its world's task (``OUT/study``, resumed per size):
    logged, fitted with the four ICL models by NUTS observing the sampled tokens, checked for order and
    the martingale property. JAX must be configured for ``num_chains`` before it starts."""
    from bayesmatrix.workflows.study import run_study

    return run_study([str(model_dir(out, size)) for size in settings.sizes], f"windtunnel-{settings.world}",
                     Path(out) / STUDY_DIR, say=say, **settings.study_options())


def size_row(size: Size, training: dict, evaluation: dict, measured: dict, study_seconds: float) -> dict:
    """One size's table row: its shape, its scores, the study's measures (``model`` left out: a path)."""
    row = {
        "size": size.name, "hidden_size": size.hidden_size, "num_layers": size.num_layers,
        "num_heads": size.num_heads, "parameters": training["parameters"],
        "strict_kl_bits": evaluation["mean_strict_kl_bits_trained"],
        "strict_kl_bits_se": evaluation["mean_strict_kl_bits_trained_se"],
        "strict_kl_bits_beyond": evaluation["mean_strict_kl_bits_beyond"],
        "kl_bits": evaluation["mean_kl_bits_trained"], "outside_mass": evaluation["mean_outside_mass_trained"],
    }  # fmt: skip
    row.update({name: value for name, value in measured.items() if name not in ("model", "parameters")})
    row["exact"] = exact_updater(row)
    row["train_cpu_seconds"] = training["train_cpu_seconds"]
    row["eval_cpu_seconds"] = evaluation.get("eval_cpu_seconds")
    row["study_seconds"] = study_seconds
    row["strict_kl_bits_by_position"] = [position["strict_kl_bits"] for position in evaluation["positions"]]
    return row


def run_sweep(out: str | Path, settings: SweepSettings = SweepSettings(), results: str | Path | None = None,
              command: str | None = None, progress: bool = False, say=print) -> SweepResult:
    """Every size of ``settings`` trained and scored into ``out``, then studied together (:func:`studied`);
    what ``out`` holds is reused. The table, the record and the figure go into ``results`` (default ``out``).
    JAX must be configured for ``settings.num_chains`` before it starts (``bayesmatrix windtunnel sweep`` does)."""
    import json
    import math
    import time

    from bayesmatrix.data.atomic import write_rows_atomic
    from bayesmatrix.data.windtunnel import WORLDS
    from bayesmatrix.workflows.study import MEASURES_FILE, MODELS_DIR, model_folder_name

    out = Path(out)
    results = out if results is None else Path(results)
    out.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.time(), time.process_time()
    trainings, evaluations = [], []
    for size in settings.sizes:
        trainings.append(trained(out, size, settings, command=command, progress=progress).record)
        evaluations.append(scored(out, size, settings))
        say(f"{size.name} ({trainings[-1]['parameters']} parameters): strict KL "
            f"{evaluations[-1]['mean_strict_kl_bits_trained']:.2e} bits over 1..{settings.length}")
    study = studied(out, settings, say=say)
    rows = []
    for size, training, evaluation, measured in zip(settings.sizes, trainings, evaluations, study.rows):
        folder = out / STUDY_DIR / MODELS_DIR / model_folder_name(str(model_dir(out, size)))
        seconds = json.loads((folder / MEASURES_FILE).read_text()).get("seconds", math.nan)
        rows.append(size_row(size, training, evaluation, measured, seconds))
        say(format_row(rows[-1]))
    rows.sort(key=lambda row: row["parameters"])
    exact = smallest_exact(rows)
    table = write_rows_atomic(results / TABLE, [{column: row.get(column) for column in columns()} for row in rows])
    world = WORLDS[settings.world]
    record = {
        "command": command,
        "settings": {**dataclasses.asdict(settings), "sizes": [size.name for size in settings.sizes]},
        "world_alpha": list(world.alphas[0]),
        "exact_criterion": f"strict mean KL over 1..K <= {EXACT_KL_BITS} bits, icl-general temperature interval "
        f"containing 1 and decay interval reaching {1 - DECAY_EDGE} or more, LOO gain of icl-general over icl at most {LOO_PREFERENCE_SE} standard errors",
        "smallest_exact": exact,
        "this_invocation": {"wall_seconds": round(time.time() - started, 1),
                            "cpu_seconds": round(time.process_time() - cpu_started, 1)},
    }
    record_path = write_rows_atomic(results / RECORD, rows, record)
    figure = sweep_figure_file(rows, exact, sum(world.alphas[0]), settings.length, results / FIGURE)
    say(f"smallest exact updater: {exact or 'none'} ({record['exact_criterion']})")
    say(f"wrote {table}, {record_path}, {figure}")
    return SweepResult(rows=rows, exact=exact, table=table, record=record_path, figure=figure)


def format_row(row: dict) -> str:
    def interval(site):
        return f"{row[site]:.3f} [{row[f'{site}_low']:.3f}, {row[f'{site}_high']:.3f}]"

    return (f"{row['size']} ({row['parameters']} parameters): strict KL {row['strict_kl_bits']:.2e} bits "
            f"(beyond K {row['strict_kl_bits_beyond']:.2e}); decay {interval('decay')}, temperature "
            f"{interval('temperature')}, s {interval('strength_general')} (icl {interval('strength')}); "
            f"LOO icl-general - icl {row['loo_general']:.1f} +- {row['loo_general_se']:.1f}, icl - "
            f"{row['non_bayes']} {row['loo_bayes']:.1f} +- {row['loo_bayes_se']:.1f}; order spread "
            f"{row['order_spread']:.3g}{'; exact' if row['exact'] else ''}")


def sweep_figure_file(rows: list[dict], exact: str | None, strength_true: float, train_length: int,
                      path: Path) -> Path:
    """The figure: strict KL, decay and temperature, prior strength, the two LOO differences, and the order
    and martingale gaps against parameters."""
    import numpy as np

    from bayesmatrix.analysis.plots.backend import pyplot
    from bayesmatrix.data.atomic import atomic_path
    from bayesmatrix.inference.fit import INTERVAL_PROB

    plt = pyplot()
    params = np.array([row["parameters"] for row in rows], dtype=float)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), sharex=True)

    def column(name):
        return np.array([np.nan if row[name] is None else row[name] for row in rows], dtype=float)

    def with_interval(ax, site, label, offset=1.0, **style):
        mean, low, high = column(site), column(f"{site}_low"), column(f"{site}_high")
        ax.errorbar(params * offset, mean, yerr=[mean - low, high - mean], fmt="o-", capsize=3, label=label, **style)

    def with_two_se(ax, site, label, offset=1.0):
        ax.errorbar(params * offset, column(site), yerr=2 * column(f"{site}_se"), fmt="o-", capsize=3, label=label)

    ax = axes[0, 0]
    ax.errorbar(params, column("strict_kl_bits"), yerr=column("strict_kl_bits_se"), fmt="o-", capsize=3,
                label=f"strict, positions 1..{train_length}")
    ax.plot(params, column("strict_kl_bits_beyond"), "s--", label=f"strict, beyond {train_length}")
    ax.plot(params, column("kl_bits"), "^:", label="renormalised, 1..K")
    ax.axhline(EXACT_KL_BITS, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("mean KL from exact Bayes (bits)")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    with_interval(ax, "decay", "decay", offset=0.97)
    with_interval(ax, "temperature", "temperature", offset=1.03)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel(f"icl-general ({INTERVAL_PROB:.0%} intervals)")
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    with_interval(ax, "strength_general", "icl-general", offset=0.97)
    with_interval(ax, "strength", "icl", offset=1.03)
    ax.axhline(strength_true, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(f"prior strength s (world: {strength_true:g})")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    with_two_se(ax, "loo_general", "icl-general - icl", offset=0.97)
    with_two_se(ax, "loo_bayes", "icl - best non-Bayesian", offset=1.03)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel("elpd difference (± 2 se)")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.errorbar(params * 0.97, column("order_spread"), yerr=2 * column("order_spread_mcse"), fmt="o-", capsize=3,
                label="order spread (max TV)")
    ax.errorbar(params * 1.03, column("martingale_gap"), yerr=2 * column("martingale_gap_mcse"), fmt="s-",
                capsize=3, label="martingale gap")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel("gap from Bayes (± 2 mcse)")
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    with_interval(ax, "excess_bits", "against icl's fitted prior")
    ax.set_yscale("log")
    ax.set_ylabel("excess code length (bits per step)")
    ax.legend(fontsize=8)
    for ax in axes.flat:
        ax.set_xscale("log")
        if exact is not None:
            ax.axvline(next(row["parameters"] for row in rows if row["size"] == exact), color="tab:green", ls="--",
                       lw=1)
    for ax in axes[1]:
        ax.set_xlabel("parameters")
    marked = f"green line: smallest exact updater, {exact}" if exact else "no size reads as an exact updater"
    fig.suptitle(f"Wind tunnel (dirichlet): Bayesian-ness against size; {marked}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")  # the temporary's name ends in .tmp
    plt.close(fig)
    return Path(path)
