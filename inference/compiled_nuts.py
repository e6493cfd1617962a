"""NUTS compiled as one loop (``FitOptions(sampler="compiled")``), for models whose gradient costs microseconds.

The same sampler as :mod:`bayesmatrix.inference.nuts` (multinomial NUTS with
the generalised U-turn criterion, Betancourt 2017, "A Conceptual Introduction
to Hamiltonian Monte Carlo", appendix A; NumPyro's warm-up adaptation of the
step size and a diagonal mass matrix, ``numpyro.infer.hmc_util.warmup_adapter``,
without NumPyro's regularisation of the mass matrix), built differently:

- each doubling of the trajectory is built in blocks of BLOCK_STEPS leapfrog
  steps, each block unrolled (no loop inside it) with the U-turn checks of all
  its sub-trees done as array operations over its momenta, in place of
  NumPyro's loop per step over U-turn checkpoints; the doublings of up to
  BLOCK_STEPS steps are one block each (one ``jax.lax.switch`` branch per
  depth), the longer ones one program for every depth;
- warm-up and sampling are one compiled program (the step index decides whether
  the adaptation runs), so nothing is compiled a second time after warm-up.

The transition kernel is NUTS's: a new sub-tree with a U-turn inside it or a
divergence is never chosen from and ends the trajectory, as in Stan and NumPyro;
here the block in which it appears is finished first, so a transition may take
up to BLOCK_STEPS - 1 leapfrog steps more than NumPyro's (counted in
``n_steps``). Its chains run one after another on one device. It is for the
cheap gradients where NumPyro's own work per step is the cost (BENCHMARKS.md,
"Sampler overhead"). Checked against closed forms, an invariance test and
NumPyro's sampler in tests/inference/test_compiled_nuts.py.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from bayesmatrix.inference.nuts import NutsResult, replace_observations

MAX_DELTA_ENERGY = 1000.0
"""A leapfrog step whose energy rises this far above the trajectory's start diverges (NumPyro's value)."""

CHUNK_STEPS = 500
"""Transitions per compiled call: the progress bar moves once per call (each call costs Python's dispatch once)."""

BLOCK_STEPS = 4
"""A sub-tree is built in blocks of this many leapfrog steps, each unrolled (no loop inside it), and stops
after the block in which a U-turn or a divergence appears: at most BLOCK_STEPS - 1 steps more than NumPyro's
NUTS takes, for a loop iteration per block rather than per step."""


class Transition(NamedTuple):
    """One NUTS transition of a chain (flat unconstrained position)."""

    z: Any
    potential_energy: Any
    z_grad: Any
    energy: Any
    num_steps: Any
    accept_prob: Any
    diverging: Any
    tree_depth: Any


def nuts_transition(potential_fn: Callable, max_tree_depth: int = 10) -> Callable:
    """``transition(key, z, potential_energy, z_grad, step_size, inverse_mass_matrix, mass_matrix_sqrt)``:
    one NUTS transition from ``z`` (a flat array) with a diagonal mass matrix, as a :class:`Transition`."""
    import jax
    import jax.numpy as jnp

    value_and_grad = jax.value_and_grad(potential_fn)

    def is_turning(inverse_mass, r_left, r_right, r_sum):
        """The generalised U-turn rule with NumPyro's end correction: the momenta at the two ends against
        the sum of momenta over the sub-tree less half of each end's."""
        rho = r_sum - 0.5 * (r_left + r_right)
        return (jnp.sum(inverse_mass * r_left * rho, -1) <= 0) | (jnp.sum(inverse_mass * r_right * rho, -1) <= 0)

    def leapfrog(state, step_size, inverse_mass):
        z, r, grad = state
        r = r - 0.5 * step_size * grad
        z = z + step_size * inverse_mass * r
        potential, grad = value_and_grad(z)
        r = r - 0.5 * step_size * grad
        return (z, r, grad), (z, r, grad, potential)

    def block(size: int) -> Callable:
        """``size`` leapfrog steps from ``state``, unrolled, and what a sub-tree needs of them: their multinomial
        pick, log weight, divergence, U-turns at every level inside the block, acceptance sum and momenta."""

        def build(state, step_size, energy0, inverse_mass, key):
            last, (zs, rs, grads, potentials) = jax.lax.scan(
                lambda state, _: leapfrog(state, step_size, inverse_mass), state, None, length=size, unroll=size)
            energies = potentials + 0.5 * jnp.sum(inverse_mass * rs * rs, axis=-1)
            delta = jnp.where(jnp.isnan(energies), jnp.inf, energies - energy0)
            diverging = jnp.any(delta > MAX_DELTA_ENERGY)
            # Every balanced sub-tree of 2 ** level consecutive points, counted from the edge (where the
            # doubling's binary tree has its leaves in order), checked for a U-turn at its two ends.
            turning = jnp.zeros((), bool)
            for level in range(1, size.bit_length()):
                blocks = rs.reshape(size // 2**level, 2**level, -1)
                turning = turning | jnp.any(is_turning(inverse_mass, blocks[:, 0], blocks[:, -1], blocks.sum(axis=1)))
            log_weights = -delta
            pick = 0 if size == 1 else jax.random.categorical(key, log_weights)  # a lone point needs no draw
            chosen = (zs[pick], potentials[pick], grads[pick], energies[pick])
            accept = jnp.sum(jnp.exp(jnp.minimum(0.0, -delta)))
            return (last, chosen, jax.nn.logsumexp(log_weights), diverging, turning, accept, rs[0], rs[-1],
                    rs.sum(axis=0))  # fmt: skip

        return build

    def short_subtree(depth: int) -> Callable:
        """The next 2 ** depth <= BLOCK_STEPS points from ``edge``: one block."""
        build_block = block(2**depth)

        def build(edge, step_size, energy0, inverse_mass, key, _):
            last, chosen, log_weight, diverging, turning, accept, _, _, r_sum = build_block(
                edge, step_size, energy0, inverse_mass, key)  # fmt: skip
            return chosen, log_weight, last, r_sum, diverging, turning, accept, jnp.asarray(2**depth)

        return build

    block_levels = BLOCK_STEPS.bit_length() - 1
    max_blocks = max(1, 2 ** (max_tree_depth - 1) // BLOCK_STEPS)
    build_block = block(BLOCK_STEPS)

    def long_subtree(edge, step_size, energy0, inverse_mass, key, depth):
        """The next 2 ** depth > BLOCK_STEPS points from ``edge``, in blocks of BLOCK_STEPS, stopping after
        the block in which a U-turn or a divergence appears (NumPyro's NUTS stops at the step itself).
        One program for every such depth, so the gradient is compiled into it once."""
        num_blocks = 2 ** (depth - block_levels)

        def body(s):
            state, index, chosen, log_weight, r_cumulative, r_first, accept, _, _, key = s
            key, key_block, key_take = jax.random.split(key, 3)
            state, block_chosen, block_log_weight, diverging, turning, block_accept, first, last_r, r_sum = (
                build_block(state, step_size, energy0, inverse_mass, key_block))  # fmt: skip
            r_cumulative = r_cumulative.at[index + 1].set(r_cumulative[index] + r_sum)
            r_first = r_first.at[index].set(first)
            # the balanced sub-trees of several blocks that end with this block
            for level in range(block_levels + 1, max_tree_depth):
                span = 2 ** (level - block_levels)
                begin = jnp.maximum(index + 1 - span, 0)
                ends_here = (level <= depth) & ((index + 1) % span == 0)
                rho = r_cumulative[index + 1] - r_cumulative[begin]
                turning = turning | (ends_here & is_turning(inverse_mass, r_first[begin], last_r, rho))
            # multinomial over the sub-tree, block by block (uniform progressive sampling, Betancourt A.3.1)
            total = jnp.logaddexp(log_weight, block_log_weight)
            take = jnp.log(jax.random.uniform(key_take, dtype=total.dtype)) < block_log_weight - total
            chosen = jax.tree.map(partial(jnp.where, take), block_chosen, chosen)
            return (state, index + 1, chosen, total, r_cumulative, r_first, accept + block_accept, diverging,
                    turning, key)  # fmt: skip

        z = edge[0]
        zero = jnp.zeros((), z.dtype)
        start = (edge, jnp.zeros((), int), (z, zero, z, zero), jnp.array(-jnp.inf, z.dtype),
                 jnp.zeros((max_blocks + 1, z.size), z.dtype), jnp.zeros((max_blocks, z.size), z.dtype), zero,
                 jnp.zeros((), bool), jnp.zeros((), bool), key)  # fmt: skip
        s = jax.lax.while_loop(lambda s: (s[1] < num_blocks) & ~(s[7] | s[8]), body, start)
        last, index, chosen, log_weight, r_cumulative, _, accept, diverging, turning, _ = s
        return chosen, log_weight, last, r_cumulative[index], diverging, turning, accept, index * BLOCK_STEPS

    # branch i builds a doubling of depth i; the last one every depth past the short ones
    num_short = min(block_levels + 1, max_tree_depth)
    branches = [short_subtree(depth) for depth in range(num_short)] + [long_subtree]

    def transition(key, z, potential_energy, z_grad, step_size, inverse_mass, mass_sqrt):
        key_momentum, key = jax.random.split(key)
        r = jax.random.normal(key_momentum, jnp.shape(z), dtype=jnp.result_type(z)) * mass_sqrt
        energy0 = potential_energy + 0.5 * jnp.sum(inverse_mass * r * r)
        # edges[0] the trajectory's backward end, edges[1] its forward end, each (z, r, gradient) as rows
        edges = jnp.broadcast_to(jnp.stack([z, r, z_grad]), (2, 3, jnp.size(z)))
        zero = jnp.zeros((), jnp.result_type(z))
        state = (edges, r, zero, (z, potential_energy, z_grad, energy0), jnp.zeros((), int), jnp.zeros((), bool),
                 zero, jnp.zeros((), bool), key, jnp.zeros((), int))  # fmt: skip

        def doubling(s):
            edges, r_sum, log_weight_old, proposal, depth, _, accept_sum, _, key, num_steps = s
            key, key_uniform, key_pick = jax.random.split(key, 3)
            uniform = jax.random.uniform(key_uniform, (2,), dtype=r_sum.dtype)  # the direction; whether to move
            forward = uniform[0] < 0.5
            edge = edges[forward.astype(int)]
            signed_step = jnp.where(forward, step_size, -step_size)
            chosen, log_weight, last, sub_r_sum, diverging, turning, accept, sub_steps = jax.lax.switch(
                jnp.minimum(depth, num_short), branches, (edge[0], edge[1], edge[2]), signed_step, energy0,
                inverse_mass, key_pick, depth,
            )  # fmt: skip
            valid = ~(diverging | turning)
            # biased progressive sampling between the tree so far and the new sub-tree (Betancourt, A.3.2)
            take = valid & (jnp.log(uniform[1]) < log_weight - log_weight_old)
            edges = edges.at[forward.astype(int)].set(jnp.stack(last))
            r_sum = r_sum + sub_r_sum
            u_turn = is_turning(inverse_mass, edges[0, 1], edges[1, 1], r_sum)
            proposal = jax.tree.map(partial(jnp.where, take), chosen, proposal)
            return (edges, r_sum, jnp.logaddexp(log_weight_old, log_weight), proposal, depth + 1, ~valid | u_turn,
                    accept_sum + accept, diverging, key, num_steps + sub_steps)  # fmt: skip

        s = jax.lax.while_loop(lambda s: ~s[5] & (s[4] < max_tree_depth), doubling, state)
        (z, potential_energy, z_grad, energy), depth, accept, diverging, num_steps = s[3], s[4], s[6], s[7], s[9]
        return Transition(z, potential_energy, z_grad, energy, num_steps, accept / num_steps, diverging, depth)

    return transition


def compiled_nuts(
    model: Callable,
    model_kwargs: Mapping[str, Any],
    *,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    target_accept_prob: float = 0.9,
    max_tree_depth: int = 10,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    progress_bar: bool = True,
    pointwise_kwargs: Mapping[str, Any] | None = None,
    log_likelihood: bool = True,
) -> NutsResult:
    """Sample ``model(**model_kwargs)`` with NUTS compiled as one loop; arguments and result as
    :func:`bayesmatrix.inference.nuts.nuts` (``mcmc`` is None: there is no NumPyro ``MCMC``)."""
    import arviz_base as azb
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.hmc_util import IntegratorState, warmup_adapter
    from numpyro.infer.util import initialize_model
    from tqdm.auto import tqdm

    began = time.perf_counter()  # warm-up is timed from here, as nuts() times it from MCMC.warmup's start
    key_init, key_chains = jax.random.split(jax.random.PRNGKey(seed))
    inits = [initialize_model(key, model, model_kwargs=dict(model_kwargs))
             for key in jax.random.split(key_init, num_chains)]  # fmt: skip
    _, unravel = ravel_pytree(inits[0].param_info.z)

    def potential(z):
        return inits[0].potential_fn(unravel(z))

    # NumPyro's NUTS defaults: no heuristic search for a first step size; no regularised mass matrix as in nuts()
    wa_init, wa_update = warmup_adapter(num_warmup, target_accept_prob=target_accept_prob, regularize_mass_matrix=False)
    transition = nuts_transition(potential, max_tree_depth)

    def start(init, key):
        z = ravel_pytree(init.param_info.z)[0]
        key_adapt, key = jax.random.split(key)
        potential_energy, z_grad = jax.value_and_grad(potential)(z)
        adapt = wa_init(IntegratorState(z, None, potential_energy, z_grad), key_adapt, 1.0)
        return (jnp.zeros((), int), z, potential_energy, z_grad, adapt, key)

    def step(carry, _):
        i, z, potential_energy, z_grad, adapt, key = carry
        key, key_step = jax.random.split(key)
        t = transition(key_step, z, potential_energy, z_grad, adapt.step_size, adapt.inverse_mass_matrix,
                       adapt.mass_matrix_sqrt)  # fmt: skip
        stats = (t.z, t.potential_energy, t.energy, t.num_steps, t.accept_prob, t.diverging, t.tree_depth,
                 adapt.step_size)  # fmt: skip
        adapted = IntegratorState(t.z, None, t.potential_energy, t.z_grad)
        adapt = jax.lax.cond(i < num_warmup, lambda a: wa_update(i, t.accept_prob, adapted, a), lambda a: a, adapt)
        return (i + 1, t.z, t.potential_energy, t.z_grad, adapt, key), stats

    total = num_warmup + num_samples
    chunk = _chunk_steps(num_warmup, total)
    carries = [start(init, key) for init, key in zip(inits, jax.random.split(key_chains, num_chains))]
    # One program, compiled once, runs every chain in turn. A chain per device would compile it once per
    # device (jit) or run far slower (pmap: 25x here, 4 host devices on 2 cores), and for the cheap
    # gradients this sampler is for, a chain takes a fraction of a second.
    run = jax.jit(partial(jax.lax.scan, step, xs=None, length=chunk))
    chunks: list[list] = [[] for _ in carries]
    num_chunks = -(-total // chunk)
    # Warm-up is timed to the end of the call in which it ends (compilation included); _chunk_steps makes
    # that its own last step where it can.
    seconds_warmup, warming_up = 0.0, num_warmup > 0
    with tqdm(total=num_chunks * chunk * num_chains, desc="warmup" if num_warmup else "sample", unit="step",
              disable=not progress_bar, leave=False) as bar:  # fmt: skip
        for index in range(num_chunks):
            outputs = [run(carry) for carry in carries]
            carries = [carry for carry, _ in outputs]
            for chain, (_, stats) in enumerate(outputs):
                chunks[chain].append(jax.device_get(stats))
                bar.update(chunk)
            if warming_up and (index + 1) * chunk >= num_warmup:
                seconds_warmup, warming_up = time.perf_counter() - began, False
                bar.set_description("sample")
    seconds_sampling = time.perf_counter() - began - seconds_warmup

    # (chain, step, ...) arrays
    stacked = [np.stack([np.concatenate([stats[k] for stats in chain]) for chain in chunks]) for k in range(8)]
    kept = slice(num_warmup, total)
    z, potential_energy, energy, num_steps, accept_prob, diverging, tree_depth, step_size = (
        value[:, kept] for value in stacked
    )
    constrain = jax.jit(jax.vmap(lambda flat: inits[0].postprocess_fn(unravel(flat))))
    samples = {name: np.asarray(value).reshape(num_chains, num_samples, *np.shape(value)[1:])
               for name, value in constrain(jnp.asarray(z.reshape(num_chains * num_samples, -1))).items()}  # fmt: skip
    sample_stats = {"lp": potential_energy, "energy": energy, "n_steps": num_steps, "acceptance_rate": accept_prob,
                    "diverging": diverging, "tree_depth": tree_depth, "step_size": step_size,
                    "reached_max_tree_depth": tree_depth >= max_tree_depth}  # fmt: skip
    datatree = azb.from_dict({"posterior": samples, "sample_stats": sample_stats}, coords=dict(coords or {}),
                             dims=dict(dims or {}))  # fmt: skip
    replace_observations(datatree, model, {k: jnp.asarray(v) for k, v in samples.items()},
                         pointwise_kwargs if pointwise_kwargs is not None else model_kwargs, coords, dims,
                         log_likelihood=log_likelihood)  # fmt: skip
    return NutsResult(
        datatree=datatree,
        mcmc=None,
        num_divergences=int(diverging.sum()),
        num_gradient_evals=int(num_steps.sum()),
        seconds_warmup=seconds_warmup,
        seconds_sampling=seconds_sampling,
        chain_method="sequential",
    )


def _chunk_steps(num_warmup: int, total: int) -> int:
    """Transitions per compiled call: at most CHUNK_STEPS, a divisor of ``num_warmup`` where one of 10 or
    more exists (so warm-up ends at a call's end and is timed apart), never more than ``total``."""
    for size in range(min(CHUNK_STEPS, total), 9, -1):
        if num_warmup % size == 0:
            return size
    return max(1, min(CHUNK_STEPS, total))
