"""Closing the wind-tunnel loop: log the shipped models as any LLM, fit the ICL models, read off the prior.

README, "Closing the loop". Each shipped wind-tunnel model is logged with
``bayesmatrix log`` on its world's task (``windtunnel-WORLD``) and fitted with
``bayesmatrix fit``, each as its own process, exactly as a user would log and
fit an LLM; the world's prior ``alpha_true`` is known, so the fit can be
checked against it:

- ``dirichlet`` (the full model): ``icl-general`` should find ``alpha_true``
  with ``decay`` and ``temperature`` near 1, and LOO should not prefer it
  over exact Bayes (``icl``);
- ``dirichlet-window4`` (attention over the last 4 tokens only): ``decay``
  clearly below 1, and LOO prefers ``icl-general``;
- ``mixture``: ``icl-mixture`` beats the single-Dirichlet ``icl`` by LOO.

``observe="counts"`` (the default) fits the tokens sampled from each row, what
an outside observer of the model sees; ``observe="probs"`` fits the logged rows
themselves, where the fitted precision ``tau`` makes every deviation from exact
Bayes, however small, visible. :func:`run_loop` runs every case and prints the
table; ``bayesmatrix windtunnel loop DIR`` runs it from the command line.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

# (shipped model, world, ICL models fitted to it)
CASES = (
    ("dirichlet", "dirichlet", ("icl", "icl-general")),
    ("dirichlet-window4", "dirichlet", ("icl", "icl-general")),
    ("mixture", "mixture", ("icl", "icl-mixture")),
)
OBSERVE = ("counts", "probs")


@dataclass(frozen=True)
class LoopSettings:
    """How each model is logged and fitted; checks itself (an :class:`InputError` names the field)."""

    episodes: int = 64
    length: int = 32
    samples: int = 10
    """Tokens sampled per row (what ``bayesmatrix log`` samples from each row)."""
    observe: str = "counts"
    """``counts`` (the sampled tokens) or ``probs`` (the rows; fitted in float64)."""
    num_chains: int = 2
    num_warmup: int = 200
    num_samples: int = 200
    seed: int = 1

    def __post_init__(self):
        from bayesmatrix.data.errors import InputError

        if self.observe not in OBSERVE:
            raise InputError(f"is {self.observe!r}; choose one of {', '.join(OBSERVE)}", field="observe")
        for name in ("episodes", "length", "samples", "num_chains", "num_samples"):
            if getattr(self, name) < 1:
                raise InputError(f"is {getattr(self, name)}; it must be at least 1", field=name)
        if self.num_warmup < 0:
            raise InputError(f"is {self.num_warmup}; it must not be negative", field="num_warmup")


def logged(workdir: Path, model: str, world: str, settings: LoopSettings) -> Path:
    """``bayesmatrix log`` of a shipped model on its world's task (reused if already written)."""
    from bayesmatrix.data.windtunnel import shipped_model

    out = workdir / f"{model}.nc"
    if not out.exists():
        run_bayesmatrix(["log", "--model", str(shipped_model(model)), "--task", f"windtunnel-{world}",
                      "--episodes", str(settings.episodes), "--length", str(settings.length),
                      "--samples", str(settings.samples), "--seed", str(settings.seed), "--out", str(out)],
                     f"{out}.txt")
    return out


def fitted(workdir: Path, model: str, world: str, icl_model: str, settings: LoopSettings) -> Path:
    """``bayesmatrix fit`` of ``icl_model`` to the model's log (reused if already written; summary in OUT.txt)."""
    out = workdir / f"{model}-{icl_model}-{settings.observe}"
    if not out.exists():
        precision = ["--x64"] if settings.observe == "probs" else []
        run_bayesmatrix(["fit", str(logged(workdir, model, world, settings)), "--model", icl_model, "--out", str(out),
                      "--observe", settings.observe, *precision, "--num-chains", str(settings.num_chains),
                      "--num-warmup", str(settings.num_warmup), "--num-samples", str(settings.num_samples),
                      "--seed", str(settings.seed), "--quiet", "--no-plots"],
                     f"{out}.txt")
    return out


def run_bayesmatrix(arguments: list[str], printed: str) -> None:
    """Run ``bayesmatrix ARGUMENTS`` as its own process, as a user would; its output goes to ``printed``.

    A fresh process per command also gives each fit its own JAX set-up (one
    host device per chain), whatever this process has configured.
    """
    with open(printed, "w") as output:
        status = subprocess.run([sys.executable, "-m", "bayesmatrix", *arguments], stdout=output,
                                stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise RuntimeError(f"bayesmatrix {arguments[0]} exited with {status}; its output is in {printed}")


def posterior(run_dir: Path, name: str) -> np.ndarray:
    """Draws of ``name``, chains stacked: (chains * draws, ...)."""
    import xarray as xr

    with xr.open_datatree(run_dir / "posterior.nc", engine="netcdf4") as tree:
        values = tree["posterior"][name].values
    return values.reshape(-1, *values.shape[2:])


def divergences(run_dir: Path) -> int:
    import xarray as xr

    with xr.open_datatree(run_dir / "posterior.nc", engine="netcdf4") as tree:
        return int(tree["sample_stats"]["diverging"].sum())


def loo_gain(first: Path, second: Path) -> tuple[float, float]:
    """elpd(second) - elpd(first) by PSIS-LOO, and the standard error of that difference."""
    from bayesmatrix.analysis.compare import compare_runs

    comparison = compare_runs([first, second])
    elpd = [float(loo.elpd) for loo in comparison.loo.values()]  # in the order given
    return elpd[1] - elpd[0], float(comparison.table["dse"].max())


def rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, dtype=np.float64), 3).tolist()


def interval(draws: np.ndarray) -> str:
    """``mean [low, high]``: the equal-tailed interval of ``inference.fit.INTERVAL_PROB``."""
    from bayesmatrix.inference.fit import INTERVAL_PROB

    tail = (1 - INTERVAL_PROB) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return f"{draws.mean():.3f} [{low:.3f}, {high:.3f}]"


def run_loop(workdir: str | Path, settings: LoopSettings = LoopSettings(),
             say: Callable[[str], None] = print) -> dict[str, tuple[Path, Path]]:
    """Log and fit every case of :data:`CASES` into ``workdir`` (reusing what it holds) and ``say`` the table.

    Returns each shipped model's two run directories (exact Bayes first, then the other updater).
    """
    from bayesmatrix.data.windtunnel import WORLDS

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = settings.episodes * (settings.length + 1)
    say(f"{settings.episodes} episodes x {settings.length + 1} rows = {rows} rows per log, observing "
        f"{settings.observe}" + (f" ({settings.samples} tokens per row)" if settings.observe == "counts" else ""))
    runs_of = {}
    for model, world, (exact, other) in CASES:
        runs = [fitted(workdir, model, world, name, settings) for name in (exact, other)]
        runs_of[model] = (runs[0], runs[1])
        gain, dse = loo_gain(*runs)
        alphas = np.asarray(WORLDS[world].alphas)
        say(f"\n{model} (world {world}, alpha_true {alphas.tolist()}):")
        say(f"  LOO: {other} - {exact} = {gain:.1f} +- {dse:.1f}   divergences: "
            + ", ".join(f"{name} {divergences(run)}" for name, run in zip((exact, other), runs)))
        for name, run in zip((exact, other), runs):
            if name == "icl-mixture":
                say(f"  {name}: w {rounded(posterior(run, 'w').mean(0))}; "
                    f"s {', '.join(interval(d) for d in posterior(run, 's').T)}; "
                    f"m {rounded(posterior(run, 'm').mean(0))}")
                continue
            sites = ["s", "decay", "temperature"] if name == "icl-general" else ["s"]
            m = posterior(run, "m")
            say(f"  {name}: " + "; ".join(f"{site} {interval(posterior(run, site))}" for site in sites)
                + f"; m {rounded(m.mean(0))} (sd {[float(f'{sd:.2g}') for sd in m.std(0)]})")
    return runs_of
