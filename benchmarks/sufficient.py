"""NUTS on the matrix model through the counts' sufficient statistic: 1,000,000 rows against 10,000.

``models.sufficient`` turns the counts into histograms in one pass (``H_c[j]``
rows whose count in column c exceeds j, ``T[j]`` rows whose total exceeds j);
every later evaluation of the collapsed Dirichlet-multinomial likelihood costs
``C J + T`` logarithms, whatever the number of rows. This is the default fit
path of ``matrix`` observing counts alone (``prepare(...).fit_kwargs``).

Both sizes draw rows from the model's story (20 columns, a prior of strength
10, N_r = 50 tokens per row), then run ``inference.nuts.nuts`` with the same
settings. Times are split into the one pass that builds the statistic, JAX's
compilation (``benchmarks.CompileClock``) and warm-up plus sampling without
it. For contrast, one jitted gradient of the per-row model is timed at each
size. Goal: NUTS (warm-up and sampling, without compilation) on 1,000,000 rows
within 1.5x of the time on 10,000 rows.

The number of leapfrog steps decides that ratio, so a second table gives the
steps per draw over several seeds (mean, smallest, largest) at both sizes, with
the mass matrix adapted as ``inference.nuts`` does (no regularisation) and
with NumPyro's default shrinkage of the adapted variances toward 1e-3, which
at a million rows inflates the smallest posterior variances (about 3e-7) and
deepens the trees.

float64 throughout (``--x64``, the default here): at a million rows the log
density is a sum of order 1e8 nats, and float32 rounding of it (units of
about 10 nats) would be noise in NUTS's energy; ``bayesmatrix fit --x64`` is
the setting for logs that large. Run from the repository root:
``python -m benchmarks.sufficient``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import CompileClock, gradient_seconds, print_table


def simulate_counts(rows: int, cols: int, per_row: int, seed: int) -> np.ndarray:
    """Counts (rows, cols) with ``pi_r ~ Dirichlet(10 m)``, drawn in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    alpha = 10.0 * rng.dirichlet(np.ones(cols))
    blocks = []
    for start in range(0, rows, 100_000):
        size = min(100_000, rows - start)
        blocks.append(rng.multinomial(per_row, rng.dirichlet(alpha, size=size)).astype(np.int32))
    return np.concatenate(blocks)


def measure(rows: int, args, clock: CompileClock) -> dict:
    from bayesmatrix.inference.nuts import nuts
    from bayesmatrix.models import matrix
    from bayesmatrix.models.sufficient import count_statistics

    counts = simulate_counts(rows, args.cols, args.per_row, args.data_seed)
    start = time.perf_counter()
    statistics = count_statistics(counts)
    build = time.perf_counter() - start
    data = {"num_rows": rows, "num_cols": args.cols, "observe": ("counts",)}
    start = time.perf_counter()
    result = nuts(matrix, {**data, "count_statistics": statistics}, num_samples=args.num_samples,
                  num_warmup=args.num_warmup, num_chains=args.num_chains, seed=args.seed,
                  regularize_mass_matrix=args.regularize_mass_matrix, progress_bar=False)  # fmt: skip
    wall = result.seconds_warmup + result.seconds_sampling
    compile_seconds = clock.seconds(start, start + wall)
    # nuts times warm-up from (nearly) the moment it is called, then sampling right after it
    warmup_compile = clock.seconds(start, start + result.seconds_warmup)
    per_row = gradient_seconds(matrix, {**data, "counts": counts, "total_count": counts.sum(axis=1)},
                               repeats=args.gradient_repeats)  # fmt: skip
    sufficient = gradient_seconds(matrix, {**data, "count_statistics": statistics}, repeats=args.gradient_repeats)
    alpha = np.asarray(result.mcmc.get_samples()["alpha"]).mean(axis=0)
    return {
        "rows": rows,
        "build": build,
        "compile": compile_seconds,
        "nuts": wall - compile_seconds,
        "warmup": result.seconds_warmup - warmup_compile,
        "sampling": result.seconds_sampling - (compile_seconds - warmup_compile),
        "wall": wall,
        "gradients": result.num_gradient_evals,
        "divergences": result.num_divergences,
        "sufficient_gradient": sufficient,
        "per_row_gradient": per_row,
        "statistic_size": statistics.exceed.size + statistics.total_exceed.size,
        "alpha_sum": float(alpha.sum()),
        "steps_per_draw": result.num_gradient_evals / (args.num_samples * args.num_chains),
    }


def steps_per_draw(rows: int, regularize: bool, args) -> list[float]:
    """Leapfrog steps per draw after warm-up, one number per seed in ``args.step_seeds`` (same data)."""
    from bayesmatrix.inference.nuts import nuts
    from bayesmatrix.models import matrix
    from bayesmatrix.models.sufficient import count_statistics

    statistics = count_statistics(simulate_counts(rows, args.cols, args.per_row, args.data_seed))
    data = {"num_rows": rows, "num_cols": args.cols, "observe": ("counts",), "count_statistics": statistics}
    return [nuts(matrix, data, num_samples=args.num_samples, num_warmup=args.num_warmup, num_chains=1, seed=seed,
                 regularize_mass_matrix=regularize, progress_bar=False).num_gradient_evals / args.num_samples
            for seed in range(args.step_seeds)]  # fmt: skip


def main(args: argparse.Namespace) -> list[dict]:
    from bayesmatrix.inference.runtime import configure

    configure(num_chains=args.num_chains, x64=args.x64, device=args.device)
    clock = CompileClock()
    if args.discard_first:  # a first, discarded run takes the process's one-time costs (JAX's start)
        measure(min(args.rows), argparse.Namespace(**{**vars(args), "num_samples": 50, "num_warmup": 50}), clock)
    results = [measure(rows, args, clock) for rows in args.rows]
    print(f"{args.cols} columns, {args.per_row} tokens per row, {args.num_chains} chain(s), "
          f"{args.num_warmup} warm-up + {args.num_samples} draws, {'float64' if args.x64 else 'float32'}, "
          f"mass matrix {'regularised' if args.regularize_mass_matrix else 'not regularised'}")  # fmt: skip
    print_table(
        ["rows", "statistic size", "one pass s", "compile s", "NUTS s (no compile)", "warm-up s (no compile)",
         "sampling s (no compile)", "NUTS s (wall)", "gradients",
         "divergences", "gradient us (sufficient)", "gradient us (per row)", "posterior mean of s"],
        [[r["rows"], r["statistic_size"], r["build"], r["compile"], r["nuts"], r["warmup"], r["sampling"], r["wall"],
          r["gradients"],
          r["divergences"], r["sufficient_gradient"] * 1e6, r["per_row_gradient"] * 1e6, r["alpha_sum"]]
         for r in results],
    )  # fmt: skip
    small, large = results[0], results[-1]
    print()
    print_table(
        ["ratio largest / smallest", "value", "goal"],
        [
            ["NUTS without compilation", large["nuts"] / small["nuts"], "<= 1.5"],
            ["NUTS without compilation, one pass included",
             (large["nuts"] + large["build"]) / (small["nuts"] + small["build"]), ""],
            ["warm-up without compilation", large["warmup"] / small["warmup"], ""],
            ["sampling without compilation", large["sampling"] / small["sampling"], ""],
            ["NUTS wall (compilation included)", large["wall"] / small["wall"], ""],
            ["sampling time per leapfrog step, without compilation",
             (large["sampling"] / large["gradients"]) / (small["sampling"] / small["gradients"]), ""],
            ["leapfrog steps after warm-up", large["gradients"] / small["gradients"], ""],
            ["leapfrog steps per draw, smallest / largest size",
             f"{small['steps_per_draw']:.3g} / {large['steps_per_draw']:.3g}", ""],
            ["time per gradient, sufficient", large["sufficient_gradient"] / small["sufficient_gradient"], ""],
            ["time per gradient, per row", large["per_row_gradient"] / small["per_row_gradient"], ""],
        ],
    )  # fmt: skip
    if args.step_seeds:
        spread = []
        for regularize in (False, True):
            for rows in args.rows:
                steps = steps_per_draw(rows, regularize, args)
                spread.append(["regularised (NumPyro default)" if regularize else "not regularised (inference.nuts)",
                               rows, np.mean(steps), np.min(steps), np.max(steps)])  # fmt: skip
        print()
        print(f"leapfrog steps per draw over seeds 0..{args.step_seeds - 1} (1 chain each)")
        print_table(["mass matrix", "rows", "mean", "smallest", "largest"], spread)
    return results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--per-row", type=int, default=50, help="tokens sampled per row (N_r)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=1)
    parser.add_argument("--gradient-repeats", type=int, default=10)
    parser.add_argument("--x64", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--discard-first", action=argparse.BooleanOptionalAction, default=True,
                        help="a short run first, not reported, so that neither size pays JAX's start")
    parser.add_argument("--regularize-mass-matrix", action=argparse.BooleanOptionalAction, default=False,
                        help="NumPyro's shrinkage of the adapted variances toward 1e-3 (inference.nuts: off)")
    parser.add_argument("--step-seeds", type=int, default=4,
                        help="seeds of the steps-per-draw table, each setting and size (0: no table)")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--data-seed", type=int, default=0, help="the simulated counts' seed")
    parser.add_argument("--device", default="cpu", help="JAX platform (cpu or gpu)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
