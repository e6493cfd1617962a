"""NUTS sampler overhead: sampling wall time against gradient evaluations x the time of one jitted gradient.

A leapfrog step costs one gradient of the log density; everything else NUTS
does (building trees, the multinomial choice of the next draw, adaptation,
collecting draws, moving them off the device) is overhead. The ratio

    sampling wall time / (leapfrog steps x time of one jitted value_and_grad)

is 1 for a sampler with no overhead. ``inference.nuts.nuts`` reports the
sampling time and the leapfrog steps after warm-up; ``benchmarks.gradient_seconds``
times ``value_and_grad`` of the same potential energy inside one jitted loop
(as the sampler's compiled loop runs it, without a Python call per gradient). The sampling
phase is timed twice: as ``nuts`` reports it, and without the time JAX spends
compiling in that phase (NumPyro compiles the sampling loop again after
warm-up; ``benchmarks.CompileClock``). Goal: at most 1.5 without compilation.

Models: the matrix model on 2,000 x 20 counts (per row, gradient-bound; the
data of ``benchmarks.peers``) and the same through its sufficient statistic,
whose gradient is so cheap that the sampler's own work shows, each by NumPyro's
NUTS (``inference.nuts``) and by NUTS compiled as one loop
(``inference.compiled_nuts``, ``fit --sampler compiled``). One chain, so
nothing runs beside it. Each sampler runs ``--runs`` times (sampler seeds
``seed``, ``seed + 1``, ...); a row is the run of median overhead, with the
smallest and largest beside it, since a sampling phase of a tenth of a second
moves with the machine. A last row runs BlackJAX's NUTS on the sufficient
statistic's potential energy, its sampling loop one ``jax.lax.scan`` compiled
once and timed best of 3 (``pip install -e '.[bench]'``; left out without it).
Run from the repository root: ``python -m benchmarks.overhead``.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import CompileClock, gradient_seconds, print_table
from benchmarks.peers import simulate_counts


def measure(name: str, sampler, model, model_kwargs, gradient: float, args, clock: CompileClock):
    """``args.runs`` runs of ``sampler`` (``nuts`` or ``compiled_nuts``) against ``gradient`` seconds: the row
    of the run of median overhead without compilation with the smallest and largest overhead of the runs,
    and a row per run (its seed, leapfrog steps, adapted step size, warm-up time and overhead: the step
    size the warm-up ends with, not the sampler, sets most of the steps a run takes)."""
    runs, per_run = [], []
    for seed in range(args.seed, args.seed + args.runs):
        called = time.perf_counter()
        result = sampler(model, model_kwargs, num_samples=args.num_samples, num_warmup=args.num_warmup, num_chains=1,
                         seed=seed, progress_bar=False, log_likelihood=False)  # fmt: skip
        # the drivers time warm-up from (nearly) the moment they are called, then sampling right after it
        sampling_start = called + result.seconds_warmup
        compile_seconds = clock.seconds(sampling_start, sampling_start + result.seconds_sampling)
        ideal = result.num_gradient_evals * gradient
        sampling = result.seconds_sampling - compile_seconds
        runs.append([name, result.num_gradient_evals, gradient * 1e6, ideal, result.seconds_sampling,
                     compile_seconds, sampling, sampling / ideal, result.seconds_sampling / ideal])  # fmt: skip
        step_size = float(result.datatree["sample_stats"]["step_size"].mean())
        per_run.append([name, seed, result.num_gradient_evals, step_size, result.seconds_warmup, sampling,
                        sampling / ideal])  # fmt: skip
    ratios = sorted(run[7] for run in runs)
    median = sorted(runs, key=lambda run: run[7])[(len(runs) - 1) // 2]
    return [*median, f"{ratios[0]:.3g} - {ratios[-1]:.3g}"], per_run


def measure_blackjax(name: str, model, model_kwargs, args) -> list:
    """The same ratio for BlackJAX's NUTS on the same potential energy: window adaptation, then the
    draws in one ``jax.lax.scan``, compiled once and timed as the gradient is (best of 3 runs of the
    compiled loop), so neither side pays compilation or Python's dispatch."""
    import blackjax
    import jax
    from numpyro.infer.util import initialize_model

    gradient = gradient_seconds(model, model_kwargs, repeats=args.gradient_repeats, seed=args.seed)
    init = initialize_model(jax.random.PRNGKey(args.seed), model, model_kwargs=dict(model_kwargs))

    def logdensity(z):
        return -init.potential_fn(z)

    key_warmup, key_sample = jax.random.split(jax.random.PRNGKey(args.seed))
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, target_acceptance_rate=0.9)
    (state, parameters), _ = warmup.run(key_warmup, init.param_info.z, num_steps=args.num_warmup)
    kernel = blackjax.nuts(logdensity, **parameters)

    @jax.jit
    def sample(state, key):
        def step(state, key):
            state, info = kernel.step(key, state)
            return state, (state.position, info.num_integration_steps)

        return jax.lax.scan(step, state, jax.random.split(key, args.num_samples))

    jax.block_until_ready(sample(state, key_sample))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        _, (_, steps) = jax.block_until_ready(sample(state, key_sample))
        best = min(best, time.perf_counter() - start)
    num_steps = int(steps.sum())
    ideal = num_steps * gradient
    return [name, num_steps, gradient * 1e6, ideal, "", "", best, best / ideal, "", ""]


def main(args: argparse.Namespace) -> list[list]:
    from bayesmatrix.inference.runtime import configure

    configure(num_chains=1, device=args.device)
    clock = CompileClock()
    from bayesmatrix.models import matrix
    from bayesmatrix.models.sufficient import count_statistics

    counts, _ = simulate_counts(args.rows, args.cols, args.seed)
    per_row = {"num_rows": args.rows, "num_cols": args.cols, "observe": ("counts",), "counts": counts,
               "total_count": counts.sum(axis=1)}  # fmt: skip
    sufficient = {"num_rows": args.rows, "num_cols": args.cols, "observe": ("counts",),
                  "count_statistics": count_statistics(counts)}  # fmt: skip
    from bayesmatrix.inference.compiled_nuts import compiled_nuts
    from bayesmatrix.inference.nuts import nuts

    size = f"({args.rows} x {args.cols})"
    rows, runs = [], []
    for label, kwargs in ((f"matrix per row {size}", per_row), (f"sufficient statistic {size}", sufficient)):
        # one gradient time per model, so that both samplers are held to the same one; a timing loop of
        # at least a tenth of a second (a 300-evaluation loop of a 3 us gradient moved by 20% between runs)
        gradient = gradient_seconds(matrix, kwargs, repeats=args.gradient_repeats, seed=args.seed)
        if gradient * args.gradient_repeats < 0.1:
            gradient = gradient_seconds(matrix, kwargs, repeats=int(0.1 / gradient), seed=args.seed)
        for sampler_name, sampler in (("numpyro", nuts), ("compiled", compiled_nuts)):
            row, per_run = measure(f"{sampler_name}, {label}", sampler, matrix, kwargs, gradient, args, clock)
            rows.append(row)
            runs.extend(per_run)
    try:
        rows.append(measure_blackjax(f"blackjax, sufficient statistic {size}", matrix, sufficient, args))
    except ImportError as error:  # BlackJAX comes with the bench extra
        print(f"blackjax row left out: {error}")
    print(f"1 chain, {args.num_warmup} warm-up + {args.num_samples} draws, {args.runs} runs per sampler (the run "
          f"of median overhead shown); gradient: at least {args.gradient_repeats} value_and_grad evaluations, and "
          "at least 0.1 s of them, in one jitted loop, best of 3")  # fmt: skip
    print_table(["sampler, model", "leapfrog steps", "gradient us", "steps x gradient s", "sampling s",
                 "compile s in it", "sampling s without", "overhead", "overhead incl. compile",
                 f"overhead over {args.runs} runs"], rows)  # fmt: skip
    print("goal: overhead (without compilation) <= 1.5")
    print_table(["sampler, model", "seed", "leapfrog steps", "step size", "warm-up s (with compile)",
                 "sampling s without", "overhead"], runs)  # fmt: skip
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--gradient-repeats", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3, help="runs of each sampler (seeds seed, seed + 1, ...)")
    parser.add_argument("--device", default="cpu", help="JAX platform (cpu or gpu)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
