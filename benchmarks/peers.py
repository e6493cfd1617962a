"""NUTS on the hierarchical matrix model in NumPyro (ours), PyMC and Stan: minimum bulk ESS per second.

The model (models/matrix.py with ``observe=("counts",)``), written once per library:

    m ~ Dirichlet(1_C),  s ~ LogNormal(log 2, 1.5),  alpha = s m
    counts_r ~ DirichletMultinomial(alpha, N_r)        r = 1..R   (the row pi_r integrated out)

on R = 2,000 rows x C = 20 columns of counts drawn from it (ragged totals
N_r between 20 and 80), 4 chains, the same warm-up and draws everywhere, target
acceptance 0.9. Each side is timed with and without compilation:

- NumPyro: ``inference.nuts.nuts`` (warm-up and sampling, as ``bayesmatrix
  fit`` runs them); compilation is the time JAX reports for tracing, lowering
  and compiling (``benchmarks.CompileClock``). Two rows: the per-row model,
  like for like with the others, and the default fit path through the counts'
  sufficient statistic (``models.sufficient``).
- PyMC: ``pm.sample`` (its NUTS, one process per chain); without compilation
  is its own ``sampling_time`` (tuning and draws).
- Stan through PyStan 3: ``stan.build`` is the compilation (httpstan caches
  built models, so a second run shows a cache hit), ``posterior.sample`` the rest.
- nutpie (Rust NUTS with its own mass-matrix adaptation) on the same PyMC
  model: ``nutpie.compile_pymc_model`` (numba) is the compilation, ``nutpie.sample``
  the rest.
- BlackJAX's NUTS on our JAX log density (the potential energy NumPyro derives
  from models/matrix.py, per row and through the sufficient statistic): Stan's
  window adaptation, then the draws, each chain one compiled program;
  compilation as for NumPyro.

The posteriors must agree: the largest ``|mean_a - mean_b| / sqrt(mcse_a^2 +
mcse_b^2)`` over ``s`` and every ``m_c`` against the per-row NumPyro run is
printed (below about 4 is agreement at this many comparisons). Goal: NumPyro's
ESS/s without compilation at least 3x PyMC's and at least Stan's and nutpie's.

Run from the repository root: ``python -m benchmarks.peers`` (PyMC, PyStan,
nutpie and BlackJAX: ``pip install -e '.[bench]'``, or ``make bench``). ``--samplers numpyro`` runs
our side alone.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmarks import CompileClock, largest_z, min_bulk_ess, print_table

SAMPLERS = ("numpyro", "numpyro-sufficient", "pymc", "stan", "nutpie", "blackjax", "blackjax-sufficient")

STAN_PROGRAM = """
data {
  int<lower=1> R;
  int<lower=2> C;
  array[R, C] int<lower=0> counts;
}
transformed data {
  matrix[R, C] n = to_matrix(counts);
  vector[R] N = n * rep_vector(1, C);
}
parameters {
  simplex[C] m;
  real<lower=0> s;
}
transformed parameters {
  vector[C] alpha = s * m;
}
model {
  m ~ dirichlet(rep_vector(1, C));
  s ~ lognormal(log(2), 1.5);
  // collapsed Dirichlet-multinomial, vectorised; the multinomial coefficient is a constant
  target += R * (lgamma(s) - sum(lgamma(alpha))) - sum(lgamma(s + N))
            + sum(lgamma(rep_matrix(alpha', R) + n));
}
"""


def simulate_counts(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts (rows, cols) from the model's own story, with a prior mean and strength drawn once."""
    rng = np.random.default_rng(seed)
    alpha = 10.0 * rng.dirichlet(np.ones(cols))
    totals = rng.integers(20, 81, size=rows)
    pi = rng.dirichlet(alpha, size=rows)
    return np.stack([rng.multinomial(n, p) for n, p in zip(totals, pi)]), alpha


def run_numpyro(counts, args, clock: CompileClock, sufficient: bool) -> dict:
    from bayesmatrix.inference.nuts import nuts
    from bayesmatrix.models import matrix
    from bayesmatrix.models.sufficient import count_statistics

    data = {"num_rows": counts.shape[0], "num_cols": counts.shape[1], "observe": ("counts",)}
    start = time.perf_counter()
    if sufficient:
        data["count_statistics"] = count_statistics(counts)  # the one pass over the rows counts as sampling time
    else:
        data.update(counts=counts, total_count=counts.sum(axis=1))
    compiled_before = clock.seconds()
    result = nuts(matrix, data, num_samples=args.num_samples, num_warmup=args.num_warmup,
                  num_chains=args.num_chains, seed=args.seed, progress_bar=False)  # fmt: skip
    total = time.perf_counter() - start
    compile_seconds = clock.seconds() - compiled_before
    samples = result.mcmc.get_samples(group_by_chain=True)
    return {
        "draws": {"s": np.asarray(samples["s"]), "m": np.asarray(samples["m"])},
        "total": total,
        "compile": compile_seconds,
        "sampling": total - compile_seconds,
        "gradients": result.num_gradient_evals,
        "divergences": result.num_divergences,
    }


def run_pymc(counts, args) -> dict:
    import pymc as pm

    start = time.perf_counter()
    with pymc_model(counts):
        idata = pm.sample(draws=args.num_samples, tune=args.num_warmup, chains=args.num_chains,
                          cores=args.num_chains, target_accept=0.9, random_seed=args.seed, progressbar=False,
                          compute_convergence_checks=False)  # fmt: skip
    total = time.perf_counter() - start
    sampling = float(idata.sample_stats.attrs["sampling_time"])
    stats = idata.sample_stats
    return {
        "draws": {"s": idata.posterior["s"].values, "m": idata.posterior["m"].values},
        "total": total,
        "compile": total - sampling,
        "sampling": sampling,
        "gradients": int(stats["n_steps"].values.sum()),
        "divergences": int(stats["diverging"].values.sum()),
    }


def pymc_model(counts):
    """The model in PyMC (for ``pm.sample`` and nutpie alike)."""
    import pymc as pm

    with pm.Model() as model:
        m = pm.Dirichlet("m", a=np.ones(counts.shape[1]))
        s = pm.LogNormal("s", mu=math.log(2.0), sigma=1.5)
        pm.DirichletMultinomial("counts", n=counts.sum(axis=1), a=s * m, observed=counts)
    return model


def run_nutpie(counts, args) -> dict:
    import nutpie

    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(pymc_model(counts))  # numba, its default backend
    built = time.perf_counter()
    idata = nutpie.sample(compiled, draws=args.num_samples, tune=args.num_warmup, chains=args.num_chains,
                          cores=args.num_chains, seed=args.seed, target_accept=0.9, progress_bar=False)  # fmt: skip
    done = time.perf_counter()
    stats = idata.sample_stats
    return {
        "draws": {"s": idata.posterior["s"].values, "m": idata.posterior["m"].values},
        "total": done - start,
        "compile": built - start,
        "sampling": done - built,
        "gradients": int(stats["n_steps"].values.sum()),
        "divergences": int(stats["diverging"].values.sum()),
    }


def run_blackjax(counts, args, clock: CompileClock, sufficient: bool) -> dict:
    """BlackJAX's NUTS on the potential energy NumPyro derives from models/matrix.py (the same
    unconstrained space): Stan-style window adaptation, then the draws, one chain per XLA device
    (``jax.pmap``), each chain's whole warm-up and sampling one compiled program."""
    import blackjax
    import jax
    from numpyro.infer.util import initialize_model

    from bayesmatrix.models import matrix
    from bayesmatrix.models.sufficient import count_statistics

    data = {"num_rows": counts.shape[0], "num_cols": counts.shape[1], "observe": ("counts",)}
    start = time.perf_counter()
    if sufficient:
        data["count_statistics"] = count_statistics(counts)
    else:
        data.update(counts=counts, total_count=counts.sum(axis=1))
    init = initialize_model(jax.random.PRNGKey(args.seed), matrix, model_kwargs=data)

    def logdensity(z):
        return -init.potential_fn(z)

    def chain(key):
        key_warmup, key_sample = jax.random.split(key)
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, target_acceptance_rate=0.9)
        (state, parameters), _ = warmup.run(key_warmup, init.param_info.z, num_steps=args.num_warmup)
        kernel = blackjax.nuts(logdensity, **parameters)

        def step(state, key):
            state, info = kernel.step(key, state)
            return state, (state.position, info.num_integration_steps, info.is_divergent)

        _, (positions, steps, divergent) = jax.lax.scan(step, state, jax.random.split(key_sample, args.num_samples))
        return jax.vmap(init.postprocess_fn)(positions), steps, divergent

    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.num_chains)
    compiled_before = clock.seconds()
    if jax.local_device_count() >= args.num_chains:
        draws, steps, divergent = jax.block_until_ready(jax.pmap(chain)(keys))
    else:
        one = jax.jit(chain)  # compiled once, run chain after chain
        outputs = [jax.block_until_ready(one(key)) for key in keys]
        draws = {name: np.stack([out[0][name] for out in outputs]) for name in outputs[0][0]}
        steps, divergent = np.stack([out[1] for out in outputs]), np.stack([out[2] for out in outputs])
    total = time.perf_counter() - start
    compile_seconds = clock.seconds() - compiled_before
    return {
        "draws": {"s": np.asarray(draws["s"]), "m": np.asarray(draws["m"])},
        "total": total,
        "compile": compile_seconds,
        "sampling": total - compile_seconds,
        "gradients": int(np.sum(steps)),
        "divergences": int(np.sum(divergent)),
    }


def run_stan(counts, args) -> dict:
    import stan

    data = {"R": int(counts.shape[0]), "C": int(counts.shape[1]), "counts": counts.astype(int).tolist()}
    start = time.perf_counter()
    posterior = stan.build(STAN_PROGRAM, data=data, random_seed=args.seed)
    built = time.perf_counter()
    fit = posterior.sample(num_chains=args.num_chains, num_samples=args.num_samples, num_warmup=args.num_warmup,
                           delta=0.9)  # fmt: skip
    done = time.perf_counter()
    chains, draws = args.num_chains, args.num_samples

    def by_chain(values):  # PyStan stacks chains one after another on the last axis
        values = np.asarray(values)
        return np.moveaxis(values.reshape(values.shape[:-1] + (chains, draws)), (-2, -1), (0, 1))

    return {
        "draws": {"s": by_chain(fit["s"]), "m": by_chain(fit["m"])},
        "total": done - start,
        "compile": built - start,
        "sampling": done - built,
        "gradients": int(np.sum(fit["n_leapfrog__"])),
        "divergences": int(np.sum(fit["divergent__"])),
    }


def main(args: argparse.Namespace) -> dict[str, dict]:
    from bayesmatrix.inference.runtime import configure

    configure(num_chains=args.num_chains, device=args.device)  # one XLA host device per chain, before JAX starts
    counts, _ = simulate_counts(args.rows, args.cols, args.seed)
    samplers = [name.strip() for name in args.samplers.split(",")]
    unknown = sorted(set(samplers) - set(SAMPLERS))
    if unknown:
        raise SystemExit(f"unknown samplers {unknown}; choose from {SAMPLERS}")
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    # The peers first: both start worker processes, which should not inherit a running JAX.
    peers = {"stan": run_stan, "pymc": run_pymc, "nutpie": run_nutpie}
    for name in [s for s in peers if s in samplers]:
        try:
            results[name] = peers[name](counts, args)
        except Exception as error:  # a peer that cannot be installed or run is reported, not faked
            failures[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    clock = CompileClock()
    for name in ("numpyro", "numpyro-sufficient"):
        if name in samplers:
            results[name] = run_numpyro(counts, args, clock, sufficient=name == "numpyro-sufficient")
    for name in ("blackjax", "blackjax-sufficient"):
        if name in samplers:
            try:
                results[name] = run_blackjax(counts, args, clock, sufficient=name == "blackjax-sufficient")
            except ImportError as error:
                failures[name] = f"{type(error).__name__}: {error}"

    reference = results.get("numpyro") or next(iter(results.values()))
    rows = []
    for name, result in results.items():
        ess = min_bulk_ess(result["draws"])
        result.update(ess=ess, ess_per_second=ess / result["sampling"], ess_per_second_total=ess / result["total"])
        rows.append([name, result["total"], result["compile"], result["sampling"], ess, result["ess_per_second"],
                     result["ess_per_second_total"], result["gradients"], result["divergences"],
                     largest_z(result["draws"], reference["draws"])])  # fmt: skip
    print(f"{args.rows} rows x {args.cols} columns, {args.num_chains} chains, "
          f"{args.num_warmup} warm-up + {args.num_samples} draws each, target acceptance 0.9")  # fmt: skip
    print_table(["sampler", "total s", "compile s", "sampling s", "min bulk ESS", "ESS/s", "ESS/s incl. compile",
                 "gradients", "divergences", "max z vs numpyro"], rows)  # fmt: skip
    ours = results.get("numpyro")
    if ours:
        print()
        ratio_rows = []
        for peer in ("pymc", "stan", "nutpie", "blackjax", "blackjax-sufficient"):
            if peer in results:
                for name in ("numpyro", "numpyro-sufficient"):
                    if name in results:
                        ours, theirs = results[name], results[peer]
                        ratio_rows.append([f"{name} / {peer}", ours["ess_per_second"] / theirs["ess_per_second"],
                                           ours["ess_per_second_total"] / theirs["ess_per_second_total"],
                                           {"pymc": ">= 3", "stan": ">= 1", "nutpie": ">= 1"}.get(peer, "")])  # fmt: skip
        if ratio_rows:
            print_table(["ESS/s ratio", "without compilation", "with compilation", "goal (without)"], ratio_rows)
    for name, message in failures.items():
        print(f"{name} failed: {message}")
    return results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated, of {SAMPLERS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="JAX platform (cpu or gpu)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
