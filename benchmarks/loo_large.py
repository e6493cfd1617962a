"""``bayesmatrix compare`` at 1,000,000 rows and 4,000 draws: peak memory and time, and the subsample's error at 10,000 rows.

Full PSIS-LOO there needs 4e9 pointwise log-likelihoods (16 GB of float32),
so ``fit`` leaves the ``log_likelihood`` group out past
``inference.fit.MAX_LOG_LIKELIHOOD_VALUES`` and ``compare --log LOG``
estimates LOO on a simple random subsample of rows, recomputing their
log-likelihoods from the model (``analysis.loo``). Every step runs the
command line in its own process, as a user would: ``simulate matrix`` (20
columns, 50 tokens per row, no probs stored), two NUTS fits of ``matrix``
observing counts (through their sufficient statistic; 4 chains x 1,000 draws;
seeds 0 and 1, so the two runs are the same model and their difference is
noise), then ``compare``. Each process reports its own peak resident memory
(``resource.getrusage``, ``ru_maxrss``) and wall time.

At 10,000 rows the runs store their log-likelihoods, and ``compare`` runs
twice: full PSIS-LOO, and ``--subsample`` on the same runs; the table gives
each run's elpd both ways against the subsample's stated error. Run from the
repository root: ``python -m benchmarks.loo_large`` (about ten minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import print_table

# A child process that runs one command of the CLI and prints its own peak memory (KiB on Linux).
CHILD = ("import resource, sys; from bayesmatrix.cli import main; status = main(sys.argv[1:]); "
         "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(status)")  # fmt: skip


def command(*argv: str) -> tuple[float, float, str]:
    """Run ``bayesmatrix ARGV`` in a fresh process: (wall seconds, peak resident GiB, stdout)."""
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"bayesmatrix {' '.join(argv)} exited {completed.returncode}:\n{completed.stderr[-3000:]}")
    peak = next(int(line.split()[1]) for line in completed.stdout.splitlines() if line.startswith("PEAK_KIB"))
    return seconds, peak / 2**20, completed.stdout


def runs_of(folder: Path, rows: int, args) -> tuple[Path, list[Path], list[list]]:
    log = folder / f"log-{rows}.nc"
    steps = [["simulate", rows, *command("simulate", "matrix", "--rows", str(rows), "--cols", str(args.cols),
                                         "--counts-per-row", str(args.per_row), "--no-probs", "--seed",
                                         str(args.seed), "--out", str(log))[:2]]]  # fmt: skip
    runs = []
    for seed in (0, 1):
        run = folder / f"run-{rows}-{seed}"
        seconds, peak, _ = command("fit", str(log), "--model", "matrix", "--observe", "counts", "--num-chains", "4",
                                   "--num-samples", str(args.num_samples), "--num-warmup", str(args.num_warmup),
                                   "--seed", str(seed), "--x64", "--no-plots", "--quiet", "--out", str(run))  # fmt: skip
        stored = json.loads((run / "run.json").read_text())["log_likelihood_stored"]
        steps.append([f"fit seed {seed} (log_likelihood stored: {stored})", rows, seconds, peak])
        runs.append(run)
    return log, runs, steps


def elpd_column(csv: Path) -> dict[str, tuple[float, float, float]]:
    import pandas as pd

    table = pd.read_csv(csv, index_col=0)
    sub = table["subsampling_se"] if "subsampling_se" in table else 0.0 * table["elpd"]
    return {str(name): (float(table.loc[name, "elpd"]), float(table.loc[name, "se"]), float(sub[name]))
            for name in table.index}  # fmt: skip


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        steps, agreement = [], []
        # 10,000 rows: full LOO against the subsample on the same runs
        log, runs, done = runs_of(folder, args.small_rows, args)
        steps += done
        full_csv, sub_csv = folder / "full.csv", folder / "sub.csv"
        seconds, peak, _ = command("compare", *map(str, runs), "--quiet", "--out", str(full_csv))
        steps.append(["compare, full PSIS-LOO", args.small_rows, seconds, peak])
        seconds, peak, _ = command("compare", *map(str, runs), "--log", str(log), "--subsample", str(args.subsample),
                                   "--quiet", "--out", str(sub_csv))  # fmt: skip
        steps.append([f"compare --subsample {args.subsample}", args.small_rows, seconds, peak])
        full, sub = elpd_column(full_csv), elpd_column(sub_csv)
        for name in full:
            diff = sub[name][0] - full[name][0]
            agreement.append([name, full[name][0], full[name][1], sub[name][0], sub[name][2], diff, diff / sub[name][2]])
        # 1,000,000 rows: no log-likelihood stored, compare recomputes a subsample's
        log, runs, done = runs_of(folder, args.rows, args)
        steps += done
        seconds, peak, stdout = command("compare", *map(str, runs), "--log", str(log), "--quiet")
        steps.append(["compare --log (default subsample)", args.rows, seconds, peak])
    print(f"{args.cols} columns, {args.per_row} tokens per row; matrix observing counts, 4 chains x "
          f"{args.num_samples} draws ({args.num_warmup} warm-up), --x64; each step its own process")  # fmt: skip
    print_table(["step", "rows", "wall s", "peak memory GiB"], steps)
    print()
    print_table(["run", "full elpd", "se", "subsampled elpd", "subsampling_se", "difference", "difference / subsampling_se"],
                agreement)  # fmt: skip
    print()
    print(stdout.split("PEAK_KIB")[0].rstrip())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--per-row", type=int, default=50)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--subsample", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
