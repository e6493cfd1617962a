"""SVI on the embedding model at scale: 200,000 rows x 1,000 columns with minibatches.

The log is simulated in float32, in blocks, from the embedding model's own
story (``bayesmatrix.inference.simulate.simulate_embedding``: ``e_r ~ N(0, I_D)``,
``m_r = softmax(b + U V^T e_r)``, ``probs_r ~ Dirichlet(s m_r)``), without
building an LLM log file: the model's inputs are the arrays themselves (the
features already have unit mean square, what ``prepare`` makes of a log).
``inference.svi.svi`` then fits an AutoNormal guide on minibatches of rows
(``batch_size``, the ``row`` plate's ``subsample_size``) and stops at an ELBO
plateau or ``--max-steps``.

Reported: steps per second without compilation (``benchmarks.CompileClock``),
the step and time at which the ELBO first plateaued (the driver's own
criterion: the mean loss of the last 500 steps within a relative 1e-4 of the
500 before), and peak memory: the process's maximum resident set
(``resource.getrusage``), data included. Goal: under 4 GB.

The guide's draws are evaluated on the first ``--predict-rows`` rows only: a
pointwise log-likelihood of every row for every draw would hold draws x rows
numbers and, while computing them, draws x rows x columns. Run from the
repository root: ``python -m benchmarks.scale``.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from benchmarks import CompileClock, print_table


def simulate(rows: int, cols: int, embed_dim: int, rank: int, concentration: float, seed: int):
    """``(embedding (rows, D), probs (rows, cols))`` in float32, drawn in blocks of rows to bound memory."""
    rng = np.random.default_rng(seed)
    U = rng.normal(0.0, 1.0 / np.sqrt(rank), size=(cols, rank))
    V = rng.normal(0.0, 1.0 / np.sqrt(embed_dim), size=(embed_dim, rank))
    b = rng.normal(0.0, 1.0, size=cols)
    embedding = rng.normal(0.0, 1.0, size=(rows, embed_dim)).astype(np.float32)
    probs = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, 10_000):
        block = slice(start, min(start + 10_000, rows))
        logits = b + embedding[block].astype(np.float64) @ V @ U.T
        mean = np.exp(logits - logits.max(axis=1, keepdims=True))
        mean /= mean.sum(axis=1, keepdims=True)
        draws = np.maximum(rng.standard_gamma(concentration * mean), 1e-300)  # the simulator's floor
        probs[block] = draws / draws.sum(axis=1, keepdims=True)
    return embedding, probs


def first_plateau(losses: np.ndarray, chunk: int, min_steps: int, window: int, tolerance: float) -> int | None:
    """The first chunk boundary at which the driver's plateau criterion held, or None."""
    from bayesmatrix.inference.svi import plateaued

    for steps in range(chunk, len(losses) + 1, chunk):
        if steps >= min_steps and plateaued(losses[:steps], window, tolerance):
            return steps
    return None


def peak_memory_gb() -> float:
    """This process's peak resident memory in GB.

    Linux's VmHWM belongs to the process image and starts afresh at exec;
    ``ru_maxrss`` survives fork and exec, so a benchmark started from a large
    process (a test runner) would report its parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


def main(args: argparse.Namespace) -> dict:
    from bayesmatrix.inference.runtime import configure

    configure(num_chains=1, device=args.device)
    clock = CompileClock()
    from bayesmatrix.inference.svi import svi
    from bayesmatrix.models.embedding import embedding as embedding_model

    start = time.perf_counter()
    embedding, probs = simulate(args.rows, args.cols, args.embed_dim, args.rank, args.concentration, args.seed)
    simulated = time.perf_counter() - start
    memory_data = peak_memory_gb()
    kwargs = {"embedding": embedding, "probs": probs, "num_cols": args.cols, "rank": args.rank, "observe": ("probs",)}
    predict = {**kwargs, "embedding": embedding[: args.predict_rows], "probs": probs[: args.predict_rows]}
    start = time.perf_counter()
    result = svi(embedding_model, {**kwargs, "batch_size": args.batch_size}, learning_rate=args.learning_rate,
                 max_steps=args.max_steps, chunk=args.chunk, num_samples=args.num_samples, seed=args.seed,
                 progress_bar=args.progress_bar, predict_kwargs=predict)  # fmt: skip
    compile_seconds = clock.seconds(start, start + result.seconds)
    steps_per_second = result.num_steps / (result.seconds - compile_seconds)
    plateau = first_plateau(result.losses, args.chunk, min(1000, args.max_steps), 500, 1e-4)
    report = {
        "rows": args.rows,
        "cols": args.cols,
        "batch_size": args.batch_size,
        "simulate_seconds": simulated,
        "steps": result.num_steps,
        "converged": result.converged,
        "optimise_seconds": result.seconds,
        "compile_seconds": compile_seconds,
        "steps_per_second": steps_per_second,
        "first_plateau_step": plateau,
        "first_plateau_seconds": None if plateau is None else compile_seconds + plateau / steps_per_second,
        "data_gb": (embedding.nbytes + probs.nbytes) / 2**30,
        "peak_memory_gb_after_data": memory_data,
        "peak_memory_gb": peak_memory_gb(),
        "final_loss_per_row": float(np.mean(result.losses[-500:]) / args.rows),
    }
    print(f"{args.rows} rows x {args.cols} columns (float32), embedding {args.embed_dim} dims, rank {args.rank}, "
          f"minibatch {args.batch_size}, AutoNormal, Adam {args.learning_rate}")  # fmt: skip
    print_table(
        ["measurement", "value", "goal"],
        [
            ["data (embedding + probs), GB", report["data_gb"], ""],
            ["simulating the log, s", simulated, ""],
            ["SVI steps per second (without compilation)", steps_per_second, ""],
            ["compilation, s", compile_seconds, ""],
            ["first ELBO plateau, step", "none" if plateau is None else plateau, ""],
            ["first ELBO plateau, s (compilation included)",
             "none" if plateau is None else report["first_plateau_seconds"], ""],
            ["steps in all (3 step sizes) / converged", f"{result.num_steps} / {result.converged}", ""],
            ["optimisation wall time, s", result.seconds, ""],
            ["peak resident memory after simulating, GB", memory_data, ""],
            ["peak resident memory, GB", report["peak_memory_gb"], "< 4"],
        ],
    )  # fmt: skip
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=1000)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--concentration", type=float, default=200.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--max-steps", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--num-samples", type=int, default=100, help="guide draws evaluated on --predict-rows")
    parser.add_argument("--predict-rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="JAX platform (cpu or gpu)")
    parser.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
