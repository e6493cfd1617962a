"""Timed comparisons, each a script printing a table (see BENCHMARKS.md): ``python -m benchmarks.NAME``.

The helpers here are what several of them share: a clock for the time JAX
spends compiling, the time of one jitted gradient of a model's log density,
effective sample sizes and posterior agreement on plain draws, and the table.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np


class CompileClock:
    """Wall seconds JAX has spent tracing, lowering and compiling since this clock was made.

    JAX reports each of those steps as an event with its duration; nested
    events (a jitted function traced inside another) overlap, so the clock
    keeps the union of their time intervals and counts every second once.
    """

    _EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        from jax import monitoring

        self._intervals: list[tuple[float, float]] = []
        monitoring.register_event_duration_secs_listener(self._record)

    def _record(self, event: str, duration: float, **_: Any) -> None:
        if event in self._EVENTS:
            end = time.perf_counter()
            self._intervals.append((end - duration, end))

    def seconds(self, start: float = -np.inf, end: float = np.inf) -> float:
        """Compilation seconds in all, or within the ``time.perf_counter()`` window ``[start, end]``."""
        total, reach = 0.0, start
        for begin, finish in sorted(self._intervals):
            if begin >= end:  # this and every later interval start after the window
                break
            finish = min(finish, end)
            if finish > reach:
                total += finish - max(begin, reach)
                reach = finish
        return total


def gradient_seconds(model: Callable, model_kwargs: Mapping[str, Any], repeats: int = 200, seed: int = 0) -> float:
    """Wall time of one ``value_and_grad`` of the model's potential energy (what a leapfrog step needs),
    as compiled code runs it: ``repeats`` evaluations in one jitted loop, divided by ``repeats``.

    Timing separate jitted calls would add Python's dispatch of each call (tens of
    microseconds), which a sampler's compiled loop never pays. Each evaluation
    starts from the last one's point moved by a tiny gradient step, so XLA cannot
    hoist it out of the loop. The data are closed over, as in NumPyro's sampler.
    Best of three timed loops, after one to compile.
    """
    import jax
    from numpyro.infer.util import initialize_model

    init = initialize_model(jax.random.PRNGKey(seed), model, model_kwargs=dict(model_kwargs))
    value_and_grad = jax.value_and_grad(init.potential_fn)

    @jax.jit
    def evaluations(params):
        def step(_, carry):
            params, total = carry
            value, grad = value_and_grad(params)
            return jax.tree.map(lambda p, g: p - 1e-9 * g, params, grad), total + value

        return jax.lax.fori_loop(0, repeats, step, (params, 0.0))

    params = init.param_info.z
    jax.block_until_ready(evaluations(params))
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(evaluations(params))
        best = min(best, time.perf_counter() - start)
    return float(best / repeats)


def draws_dataset(draws: Mapping[str, np.ndarray]):
    """An xarray Dataset of draws ``(chain, draw, ...)``, the shape ArviZ reads."""
    import xarray as xr

    return xr.Dataset(
        {
            name: (("chain", "draw") + tuple(f"{name}_dim_{i}" for i in range(np.ndim(value) - 2)), np.asarray(value))
            for name, value in draws.items()
        }
    )


def min_bulk_ess(draws: Mapping[str, np.ndarray]) -> float:
    """The smallest bulk ESS over every scalar of every variable in ``draws`` (each ``(chain, draw, ...)``)."""
    import arviz_stats as azs

    ess = azs.ess(draws_dataset(draws), sample_dims=["chain", "draw"], method="bulk")
    return float(min(np.min(ess[name].values) for name in ess.data_vars))


def mean_and_mcse(draws: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Posterior mean and its Monte Carlo standard error for each variable."""
    import arviz_stats as azs

    dataset = draws_dataset(draws)
    mcse = azs.mcse(dataset, sample_dims=["chain", "draw"], method="mean")
    return {name: (dataset[name].mean(("chain", "draw")).values, mcse[name].values) for name in dataset.data_vars}


def largest_z(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """The largest ``|mean_a - mean_b| / sqrt(mcse_a^2 + mcse_b^2)`` over the variables both hold."""
    summary_a, summary_b = mean_and_mcse(a), mean_and_mcse(b)
    z = [
        np.max(np.abs(summary_a[name][0] - summary_b[name][0]) / np.hypot(summary_a[name][1], summary_b[name][1]))
        for name in summary_a
        if name in summary_b
    ]
    return float(max(z))


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table, numbers to three significant figures, as BENCHMARKS.md holds them."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e5 else f"{value:.3e}"
        return str(value)

    texts = [[cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in texts)) for i, h in enumerate(header)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in texts:
        print("| " + " | ".join(value.ljust(w) for value, w in zip(row, widths)) + " |")
