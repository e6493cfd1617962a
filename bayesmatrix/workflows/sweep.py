"""In-context learning against model size: one wind-tunnel world, one recipe, models from 1e3 to 5e5 parameters.

README, "Wind tunnel: a size sweep". Each size of :data:`SIZES` is trained on
the same world with the same data stream, steps and batch
(:func:`bayesmatrix.data.windtunnel.training.train`, resumable per size from
its checkpoint), scored against the exact posterior predictive by position,
strict (the category probabilities as they are) and beyond the training length
``K`` (:func:`bayesmatrix.data.windtunnel.evaluation.evaluate`), logged with
``bayesmatrix log`` on the world's task and fitted with ``icl`` (exact Bayes)
and ``icl-general`` (decay and temperature free), each as its own process
(``bayesmatrix.workflows.windtunnel_loop``). One row per size: the strict KL,
the fitted decay, temperature and prior strength with their intervals, and the
LOO difference ``icl-general - icl``; one figure of them against the parameter
count, with the smallest size whose updater reads as exact marked
(:func:`exact_updater`).
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
    """The one recipe every size is trained, scored, logged and fitted with; checks itself.

    The training defaults are the shipped dirichlet model's recipe (learning rate,
    warm-up, ``outside_penalty`` 30) on a smaller budget: 1000 steps of 128
    sequences, an eighth of its 2400 x 256 sequences, so that seven sizes train in
    about ten CPU-minutes.
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
    """Episodes ``bayesmatrix log`` writes per size."""
    samples: int = 10
    """Tokens sampled per logged row."""
    num_chains: int = 2
    num_warmup: int = 200
    num_samples: int = 200
    fit_seed: int = 1

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
FITTED = ("icl", "icl-general")
TABLE = "sweep.csv"
RECORD = "sweep.json"
FIGURE = "sweep.png"


class SweepResult(NamedTuple):
    """What :func:`run_sweep` wrote and found."""

    rows: list[dict]
    """One dict per size, smallest first (fields :data:`COLUMNS`)."""
    exact: str | None
    """The name of the smallest size whose updater reads as exact (:func:`exact_updater`), ``None`` if none."""
    table: Path
    record: Path
    figure: Path


COLUMNS = (
    "size", "hidden_size", "num_layers", "num_heads", "parameters",
    "strict_kl_bits", "strict_kl_bits_se", "strict_kl_bits_beyond", "kl_bits", "outside_mass",
    "icl_s", "icl_s_low", "icl_s_high",
    "s", "s_low", "s_high", "decay", "decay_low", "decay_high", "temperature", "temperature_low",
    "temperature_high", "loo_gain", "loo_gain_se", "divergences", "exact",
    "train_cpu_seconds", "eval_cpu_seconds", "log_cpu_seconds", "fit_cpu_seconds",
)  # fmt: skip


def exact_updater(row: dict, kl_bits: float = EXACT_KL_BITS) -> bool:
    """Whether a size's row reads as an exact Bayesian updater (see :data:`EXACT_KL_BITS`)."""
    covers_one = row["temperature_low"] <= 1.0 <= row["temperature_high"] and row["decay_high"] >= 1.0 - DECAY_EDGE
    loo_prefers_general = row["loo_gain"] > LOO_PREFERENCE_SE * row["loo_gain_se"]
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


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def logged(out: Path, size: Size, settings: SweepSettings) -> tuple[Path, float]:
    """``bayesmatrix log`` of one size on its world's task (``OUT/NAME.nc``, reused); and its CPU seconds."""
    path = Path(out) / f"{size.name}.nc"
    if not path.exists():
        _measured(path, ["log", "--model", str(model_dir(out, size)), "--task", f"windtunnel-{settings.world}",
                         "--episodes", str(settings.episodes), "--length", str(settings.length),
                         "--samples", str(settings.samples), "--seed", str(settings.fit_seed), "--out", str(path)])
    return path, _cost(path)["cpu_seconds"]


def fitted(out: Path, size: Size, icl_model: str, settings: SweepSettings) -> tuple[Path, float]:
    """``bayesmatrix fit`` of ``icl_model`` to the size's log, observing the sampled tokens (reused); CPU seconds."""
    log, _ = logged(out, size, settings)
    run_dir = Path(out) / f"{size.name}-{icl_model}"
    if not run_dir.exists():
        _measured(run_dir, ["fit", str(log), "--model", icl_model, "--out", str(run_dir), "--observe", "counts",
                            "--num-chains", str(settings.num_chains), "--num-warmup", str(settings.num_warmup),
                            "--num-samples", str(settings.num_samples), "--seed", str(settings.fit_seed),
                            "--quiet", "--no-plots"])
    return run_dir, _cost(run_dir)["cpu_seconds"]


def _measured(path: Path, arguments: list[str]) -> None:
    """Run ``bayesmatrix ARGUMENTS`` (output in PATH.txt) and keep its CPU and wall seconds in PATH.cost.json,
    so a rerun that reuses ``path`` still reports what it cost."""
    import json
    import time

    from bayesmatrix.data.atomic import write_text_atomic
    from bayesmatrix.workflows.windtunnel_loop import run_bayesmatrix

    started, cpu_before = time.time(), _children_cpu()
    run_bayesmatrix(arguments, f"{path}.txt")
    cost = {"cpu_seconds": round(_children_cpu() - cpu_before, 1), "wall_seconds": round(time.time() - started, 1)}
    write_text_atomic(f"{path}.cost.json", json.dumps(cost) + "\n")


def _cost(path: Path) -> dict:
    import json

    cost_path = Path(f"{path}.cost.json")
    return json.loads(cost_path.read_text()) if cost_path.is_file() else {"cpu_seconds": float("nan")}


def equal_tailed(draws) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and the equal-tailed interval of ``inference.fit.INTERVAL_PROB``."""
    import numpy as np

    from bayesmatrix.inference.fit import INTERVAL_PROB

    tail = (1 - INTERVAL_PROB) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(np.mean(draws)), float(low), float(high)


def size_row(out: Path, size: Size, settings: SweepSettings, command: str | None = None,
             progress: bool = False) -> dict:
    """Train, score, log and fit one size (each step reused when already done) into its table row."""
    from bayesmatrix.workflows.windtunnel_loop import divergences, loo_gain, posterior

    training = trained(out, size, settings, command=command, progress=progress).record
    evaluation = scored(out, size, settings)
    _, log_cpu = logged(out, size, settings)
    (icl, icl_cpu), (general, general_cpu) = (fitted(out, size, name, settings) for name in FITTED)
    gain, gain_se = loo_gain(icl, general)
    row = {
        "size": size.name, "hidden_size": size.hidden_size, "num_layers": size.num_layers,
        "num_heads": size.num_heads, "parameters": training["parameters"],
        "strict_kl_bits": evaluation["mean_strict_kl_bits_trained"],
        "strict_kl_bits_se": evaluation["mean_strict_kl_bits_trained_se"],
        "strict_kl_bits_beyond": evaluation["mean_strict_kl_bits_beyond"],
        "kl_bits": evaluation["mean_kl_bits_trained"], "outside_mass": evaluation["mean_outside_mass_trained"],
    }  # fmt: skip
    row["icl_s"], row["icl_s_low"], row["icl_s_high"] = equal_tailed(posterior(icl, "s"))
    for site in ("s", "decay", "temperature"):
        row[site], row[f"{site}_low"], row[f"{site}_high"] = equal_tailed(posterior(general, site))
    row["loo_gain"], row["loo_gain_se"] = gain, gain_se
    row["divergences"] = divergences(icl) + divergences(general)
    row["exact"] = exact_updater(row)
    row["train_cpu_seconds"] = training["train_cpu_seconds"]
    row["eval_cpu_seconds"] = evaluation.get("eval_cpu_seconds")
    row["log_cpu_seconds"] = round(log_cpu, 1)
    row["fit_cpu_seconds"] = round(icl_cpu + general_cpu, 1)
    row["strict_kl_bits_by_position"] = [position["strict_kl_bits"] for position in evaluation["positions"]]
    return row


def run_sweep(out: str | Path, settings: SweepSettings = SweepSettings(), results: str | Path | None = None,
              command: str | None = None, progress: bool = False, say=print) -> SweepResult:
    """Every size of ``settings`` through train, score, log and fit into ``out`` (what it holds is reused),
    then the table, the record and the figure into ``results`` (default ``out``)."""
    import csv
    import io
    import json
    import time

    from bayesmatrix.data.atomic import write_text_atomic
    from bayesmatrix.data.windtunnel import WORLDS

    out = Path(out)
    results = out if results is None else Path(results)
    out.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    started, cpu_started, children_started = time.time(), time.process_time(), _children_cpu()
    rows = []
    for size in settings.sizes:
        row = size_row(out, size, settings, command=command, progress=progress)
        rows.append(row)
        say(format_row(row))
    rows.sort(key=lambda row: row["parameters"])
    exact = smallest_exact(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    table = write_text_atomic(results / TABLE, buffer.getvalue())
    world = WORLDS[settings.world]
    record = {
        "command": command,
        "settings": {**dataclasses.asdict(settings), "sizes": [size.name for size in settings.sizes]},
        "world_alpha": list(world.alphas[0]),
        "exact_criterion": f"strict mean KL over 1..K <= {EXACT_KL_BITS} bits, icl-general temperature interval "
        f"containing 1 and decay interval reaching {1 - DECAY_EDGE} or more, LOO gain of icl-general over icl at most {LOO_PREFERENCE_SE} standard errors",
        "smallest_exact": exact,
        "this_invocation": {"wall_seconds": round(time.time() - started, 1),
                            "cpu_seconds": round(time.process_time() - cpu_started + _children_cpu()
                                                 - children_started, 1)},
        "rows": rows,
    }
    record_path = write_text_atomic(results / RECORD, json.dumps(record, indent=2) + "\n")
    figure = sweep_figure_file(rows, exact, sum(world.alphas[0]), settings.length, results / FIGURE)
    say(f"smallest exact updater: {exact or 'none'} ({record['exact_criterion']})")
    say(f"wrote {table}, {record_path}, {figure}")
    return SweepResult(rows=rows, exact=exact, table=table, record=record_path, figure=figure)


def format_row(row: dict) -> str:
    def interval(site):
        return f"{row[site]:.3f} [{row[f'{site}_low']:.3f}, {row[f'{site}_high']:.3f}]"

    return (f"{row['size']} ({row['parameters']} parameters): strict KL {row['strict_kl_bits']:.2e} bits "
            f"(beyond K {row['strict_kl_bits_beyond']:.2e}); decay {interval('decay')}, temperature "
            f"{interval('temperature')}, s {interval('s')} (icl {interval('icl_s')}); LOO icl-general - icl "
            f"{row['loo_gain']:.1f} +- {row['loo_gain_se']:.1f}{'; exact' if row['exact'] else ''}")


def sweep_figure_file(rows: list[dict], exact: str | None, strength_true: float, train_length: int,
                      path: Path) -> Path:
    """The figure: strict KL, decay and temperature, prior strength and LOO against parameters."""
    import numpy as np

    from bayesmatrix.analysis.plots.backend import pyplot
    from bayesmatrix.data.atomic import atomic_path

    plt = pyplot()
    params = np.array([row["parameters"] for row in rows], dtype=float)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)

    def column(name):
        return np.array([np.nan if row[name] is None else row[name] for row in rows], dtype=float)

    def with_interval(ax, site, label, offset=1.0, **style):
        mean, low, high = column(site), column(f"{site}_low"), column(f"{site}_high")
        ax.errorbar(params * offset, mean, yerr=[mean - low, high - mean], fmt="o-", capsize=3, label=label, **style)

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
    ax.set_ylabel("icl-general (94% intervals)")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    with_interval(ax, "s", "icl-general", offset=0.97)
    with_interval(ax, "icl_s", "icl", offset=1.03)
    ax.axhline(strength_true, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(f"prior strength s (world: {strength_true:g})")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.errorbar(params, column("loo_gain"), yerr=2 * column("loo_gain_se"), fmt="o-", capsize=3)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel("elpd icl-general - icl (± 2 se)")
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
