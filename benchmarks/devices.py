"""Several devices: NUTS chains in parallel, and SVI with the rows sharded over a device mesh.

(a) NUTS on the matrix model (2,000 x 20 counts, per row), 4 chains, one per
    device (``chain_method="parallel"``, which ``inference.nuts`` picks when
    there are enough devices) against the same chains one after another on one
    device. Times exclude JAX's compilation (``benchmarks.CompileClock``).
(b) SVI on the embedding model: the full-batch ELBO at the same parameters and
    random key on one device and with the rows sharded over every device
    (``inference.sharding.shard_rows``; XLA partitions the per-row work), which
    must agree to float tolerance; then minibatch SVI steps per second both ways
    (the same minibatches, since the keys are the same).

On a CPU the devices are XLA host devices (``--xla_force_host_platform_device_count``,
set by ``inference.runtime.configure`` before JAX starts) sharing the machine's
cores, so speed-ups are bounded by the cores, not the device count; on GPUs or
several hosts the same code spreads over real devices. Run from the repository
root: ``python -m benchmarks.devices`` (``--devices 4``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks import CompileClock, print_table


def embedding_inputs(rows: int, cols: int, embed_dim: int, rank: int, seed: int) -> dict:
    """Keyword arguments of the embedding model for a simulated log (``bayesmatrix.inference.simulate.simulate_embedding``)."""
    from bayesmatrix.inference.simulate import simulate_embedding
    from bayesmatrix.inference.prepare import prepare

    ds = simulate_embedding(rows, cols, embed_dim, rank, concentration=50.0, seed=seed)
    return prepare(ds, "embedding", rank=rank).kwargs


def elbo_losses(model, model_kwargs, num_rows: int, mesh, seed: int = 0) -> tuple[float, float]:
    """The ELBO loss of an AutoNormal guide at its initial parameters: on one device, and sharded by rows."""
    import jax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.optim import Adam

    from bayesmatrix.inference.sharding import shard_rows, split_data

    key_init, key_loss = jax.random.split(jax.random.PRNGKey(seed))
    guide = AutoNormal(model)
    engine = SVI(model, guide, Adam(1e-2), Trace_ELBO())
    params = engine.get_params(engine.init(key_init, **model_kwargs))
    _, options = split_data(model_kwargs)

    @jax.jit
    def loss(params, data):
        return Trace_ELBO().loss(key_loss, params, model, guide, **options, **data)

    one_device = jax.device_put(split_data(model_kwargs)[0], jax.devices()[0])
    sharded = split_data(shard_rows(model_kwargs, mesh, num_rows))[0]
    return float(loss(params, one_device)), float(loss(params, sharded))


def svi_steps_per_second(model, model_kwargs, steps: int, seed: int, clock: CompileClock) -> tuple[float, np.ndarray]:
    """Steps per second of ``inference.svi`` chunks (compilation excluded) and the losses of those steps."""
    from bayesmatrix.inference.svi import svi

    start = time.perf_counter()
    full_data = {name: value for name, value in model_kwargs.items() if name != "batch_size"}
    result = svi(model, model_kwargs, max_steps=steps, min_steps=steps, chunk=steps // 2, num_samples=2, seed=seed,
                 progress_bar=False, predict_kwargs=full_data)  # fmt: skip
    compile_seconds = clock.seconds(start, start + result.seconds)
    return steps / (result.seconds - compile_seconds), result.losses


def nuts_timings(model, args, clock: CompileClock) -> dict[str, float]:
    """Seconds (without compilation) of ``inference.nuts.nuts`` with one chain per device, and of the
    same chains one after another."""
    from benchmarks.peers import simulate_counts
    from bayesmatrix.inference.nuts import nuts

    counts, _ = simulate_counts(args.matrix_rows, 20, args.seed)
    data = {"num_rows": args.matrix_rows, "num_cols": 20, "observe": ("counts",), "counts": counts,
            "total_count": counts.sum(axis=1)}  # fmt: skip
    start = time.perf_counter()
    result = nuts(model, data, num_samples=args.num_samples, num_warmup=args.num_warmup, num_chains=args.devices,
                  seed=args.seed, progress_bar=False)  # fmt: skip
    wall = result.seconds_warmup + result.seconds_sampling
    timings = {result.chain_method: wall - clock.seconds(start, start + wall)}
    start = time.perf_counter()
    sequential_nuts(model, data, args)
    wall = time.perf_counter() - start
    timings["sequential"] = wall - clock.seconds(start, start + wall)
    return timings


def sequential_nuts(model, model_kwargs, args) -> int:
    """``inference.nuts.nuts``'s warm-up and sampling with the chains one after another on one device;
    returns the leapfrog steps after warm-up."""
    import jax
    from numpyro.infer import MCMC, NUTS

    from bayesmatrix.inference.nuts import EXTRA_FIELDS

    mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=args.num_warmup, num_samples=args.num_samples,
                num_chains=args.devices, chain_method="sequential", progress_bar=False)  # fmt: skip
    key_warmup, key_sample = jax.random.split(jax.random.PRNGKey(args.seed))
    mcmc.warmup(key_warmup, extra_fields=EXTRA_FIELDS, **model_kwargs)
    mcmc.run(key_sample, extra_fields=EXTRA_FIELDS, **model_kwargs)
    return int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())


def main(args: argparse.Namespace) -> dict:
    from bayesmatrix.inference.runtime import configure

    configure(num_chains=args.devices, device=args.device)  # the host devices must exist before JAX starts
    import jax

    from bayesmatrix.inference.runtime import chain_method
    from bayesmatrix.inference.sharding import row_mesh, shard_rows
    from bayesmatrix.models import matrix
    from bayesmatrix.models.embedding import embedding

    clock = CompileClock()
    mesh = row_mesh()
    report: dict = {"devices": jax.device_count()}

    # (a) chains in parallel against one after another
    report["chain_method"] = chain_method(args.devices)
    report["chains"] = nuts_timings(matrix, args, clock) if args.chains else {}

    # (b) SVI: the same ELBO sharded, and minibatch steps per second
    kwargs = embedding_inputs(args.rows, args.cols, args.embed_dim, args.rank, args.seed)
    one, sharded = elbo_losses(embedding, kwargs, args.rows, mesh, seed=args.seed)
    minibatch = {**kwargs, "batch_size": args.batch_size}
    row_shards = shard_rows(kwargs, mesh, args.rows)["probs"].addressable_shards
    report["row_shards"] = [list(shard.data.shape) for shard in row_shards]
    single_rate, single_losses = svi_steps_per_second(embedding, minibatch, args.steps, args.seed, clock)
    shard_rate, shard_losses = svi_steps_per_second(embedding, shard_rows(minibatch, mesh, args.rows), args.steps,
                                                    args.seed, clock)  # fmt: skip
    report.update(
        elbo_one_device=one,
        elbo_sharded=sharded,
        svi_steps_per_second={"one device": single_rate, "sharded": shard_rate},
        svi_largest_loss_difference=float(np.max(np.abs(single_losses - shard_losses) / np.abs(single_losses))),
    )

    chains = report["chains"]
    rows = []
    if chains:
        rows.append([f"NUTS, {args.devices} chains, matrix {args.matrix_rows} x 20: seconds without compilation",
                     chains["sequential"], chains["parallel"], chains["sequential"] / chains["parallel"]])
    rows += [
        [f"SVI full-batch ELBO loss, embedding {args.rows} x {args.cols}", one, sharded, sharded / one],
        [f"SVI steps per second, minibatch {args.batch_size}, without compilation", single_rate, shard_rate,
         shard_rate / single_rate],
    ]
    print(f"{report['devices']} devices ({jax.devices()[0].platform}); NUTS chain method: {report['chain_method']}")
    print_table(["measurement", "one device", f"{report['devices']} devices", "ratio"], rows)
    print(f"relative difference of the full-batch ELBO losses: {abs(sharded - one) / abs(one):.1e}")
    difference = report["svi_largest_loss_difference"]
    print(f"largest relative difference of the {args.steps} minibatch losses: {difference:.1e}")
    if args.json:
        print(json.dumps(report))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4, help="XLA host devices (CPU) and chains")
    parser.add_argument("--matrix-rows", type=int, default=2000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20000, help="embedding rows (a multiple of --devices)")
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--embed-dim", type=int, default=32)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="JAX platform (cpu or gpu)")
    parser.add_argument("--chains", action=argparse.BooleanOptionalAction, default=True,
                        help="time NUTS chains in parallel against one after another")
    parser.add_argument("--json", action="store_true", help="also print the measurements as one JSON line")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
