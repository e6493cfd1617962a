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
whose gradient is so cheap that the sampler's own work shows. One chain, so
nothing runs beside it. A third row runs BlackJAX's NUTS on the sufficient
statistic's potential energy, its sampling loop one ``jax.lax.scan`` compiled
once and timed best of 3 (``pip install -e '.[bench]'``; left out without it).
Run from the repository root: ``python -m benchmarks.overhead``.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import CompileClock, gradient_seconds, print_table
from benchmarks.peers import simulate_counts


def measure(name: str, model, model_kwargs, args, clock: CompileClock) -> list:
    from bayesmatrix.inference.nuts import nuts

    gradient = gradient_seconds(model, model_kwargs, repeats=args.gradient_repeats, seed=args.seed)
    called = time.perf_counter()
    result = nuts(model, model_kwargs, num_samples=args.num_samples, num_warmup=args.num_warmup, num_chains=1,
                  seed=args.seed, progress_bar=False)  # fmt: skip
    # nuts times warm-up from (nearly) the moment it is called, then sampling right after it
    sampling_start = called + result.seconds_warmup
    compile_seconds = clock.seconds(sampling_start, sampling_start + result.seconds_sampling)
    ideal = result.num_gradient_evals * gradient
    sampling = result.seconds_sampling - compile_seconds
    return [name, result.num_gradient_evals, gradient * 1e6, ideal, result.seconds_sampling, compile_seconds,
            sampling, sampling / ideal, result.seconds_sampling / ideal]  # fmt: skip


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
    return [name, num_steps, gradient * 1e6, ideal, "", "", best, best / ideal, ""]


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
    rows = [
        measure(f"matrix, per row ({args.rows} x {args.cols})", matrix, per_row, args, clock),
        measure(f"matrix, sufficient statistic ({args.rows} x {args.cols})", matrix, sufficient, args, clock),
    ]
    try:
        rows.append(measure_blackjax(f"blackjax, sufficient statistic ({args.rows} x {args.cols})", matrix, sufficient,
                                     args))  # fmt: skip
    except ImportError as error:  # BlackJAX comes with the bench extra
        print(f"blackjax row left out: {error}")
    print(f"1 chain, {args.num_warmup} warm-up + {args.num_samples} draws; gradient: {args.gradient_repeats} "
          "value_and_grad evaluations in one jitted loop, best of 3")  # fmt: skip
    print_table(["model", "leapfrog steps", "gradient us", "steps x gradient s", "sampling s (nuts)",
                 "compile s in it", "sampling s without", "overhead", "overhead incl. compile"], rows)  # fmt: skip
    print("goal: overhead (without compilation) <= 1.5")
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--gradient-repeats", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="JAX platform (cpu or gpu)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
