"""Simulation-based calibration: ranks of prior draws among posterior draws are uniform
when the inference is correct.

Reference: Talts, Betancourt, Simpson, Vehtari & Gelman (2018), "Validating
Bayesian Inference Algorithms with Simulation-Based Calibration".

For each replication: draw parameters and data from the model's prior
predictive, fit the model to that data with NUTS, thin the posterior to ``L``
nearly independent draws and record, for every scalar parameter, how many of
them fall below the true value (a rank in 0..L). Over many replications each
rank is uniform on 0..L; :func:`uniformity_pvalue` tests that with a
chi-square test on binned ranks.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
from scipy import stats


class SbcResult(NamedTuple):
    """What :func:`sbc` returns."""

    ranks: dict
    """Site name -> ranks, shape (replications, *site_shape), integers in 0..num_draws."""
    num_draws: int
    """L, the thinned posterior draws each rank is taken among."""
    num_divergences: int
    """Divergent transitions over all replications (a calibration failure may come from them)."""


def sbc(
    model: Callable,
    model_kwargs: Mapping[str, Any],
    observed: str,
    params: list[str],
    *,
    num_replications: int = 100,
    num_warmup: int = 300,
    num_draws: int = 99,
    thin: int = 3,
    target_accept_prob: float = 0.8,
    seed: int = 0,
) -> SbcResult:
    """Run SBC for ``model(**model_kwargs, observed=...)`` over ``params``.

    NUTS (with its usual step-size and mass-matrix adaptation) is written as one
    jitted function of the data, through NumPyro's functional ``hmc`` API, so it
    compiles once and is mapped over all replications; ``MCMC.run`` would
    recompile its sampling loop for every new data set.
    """
    import jax
    from numpyro.infer import Predictive
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    key_prior, key_init, key_fits = jax.random.split(jax.random.PRNGKey(seed), 3)
    truths = Predictive(model, num_samples=num_replications)(key_prior, **model_kwargs)

    def data_kwargs(data):
        return {**model_kwargs, observed: data}

    info = initialize_model(key_init, model, model_kwargs=data_kwargs(truths[observed][0]), dynamic_args=True)
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    start_z = info.param_info.z
    num_steps = num_warmup + num_draws * thin

    def fit_one(key, data):
        kwargs = data_kwargs(data)
        state = init_kernel(
            start_z, num_warmup, target_accept_prob=target_accept_prob, model_kwargs=kwargs, rng_key=key
        )

        def step(state, _):
            state = sample_kernel(state, model_kwargs=kwargs)
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(step, state, None, length=num_steps)
        kept = jax.tree.map(lambda v: v[num_warmup::thin], z)
        constrained = jax.vmap(lambda one: info.postprocess_fn(**kwargs)(one))(kept)
        return constrained, diverging[num_warmup:].sum()

    keys = jax.random.split(key_fits, num_replications)
    draws, divergences = jax.jit(lambda k, d: jax.lax.map(lambda a: fit_one(*a), (k, d)))(keys, truths[observed])
    ranks = {}
    for name in params:
        truth = np.asarray(truths[name])  # (replications, *shape)
        ranks[name] = np.sum(np.asarray(draws[name]) < truth[:, None, ...], axis=1)
    return SbcResult(ranks=ranks, num_draws=num_draws, num_divergences=int(np.asarray(divergences).sum()))


def uniformity_pvalue(ranks: np.ndarray, num_draws: int, bins: int = 10) -> np.ndarray:
    """Chi-square p-value that ranks (replications, ...) are uniform on 0..num_draws, per component."""
    ranks = np.asarray(ranks)
    if (num_draws + 1) % bins:
        raise ValueError("num_draws + 1 must be a multiple of bins, so every bin holds as many ranks")
    binned = ranks // ((num_draws + 1) // bins)
    flat = binned.reshape(binned.shape[0], -1)
    pvalues = []
    for column in flat.T:
        observed = np.bincount(column, minlength=bins)
        pvalues.append(stats.chisquare(observed).pvalue)
    return np.asarray(pvalues).reshape(ranks.shape[1:])


def icl_context_counts(episodes: int, length: int, categories: int, seed: int = 0) -> np.ndarray:
    """Context counts of ``episodes`` random episodes, positions 0..length-1, as an ICL log holds them."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(episodes):
        counts = np.zeros(categories, dtype=np.int64)
        for _ in range(length):
            rows.append(counts.copy())
            counts[rng.integers(categories)] += 1
    return np.asarray(rows)


def setups(epsilon: float) -> dict[str, tuple[Callable, dict, str, list[str]]]:
    """The SBC set-ups run by ``python -m analysis.sbc``: model, its keyword data, observed site, parameters."""
    import jax.numpy as jnp

    from bayesmatrix.models import MODELS

    return {
        "matrix": (
            MODELS["matrix"].function,
            {"num_rows": 20, "num_cols": 3, "total_count": jnp.full(20, 10), "observe": ("counts",)},
            "counts",
            ["m", "s"],
        ),
        "icl": (
            MODELS["icl"].function,
            {"context_counts": jnp.asarray(icl_context_counts(6, 9, 3)), "epsilon": epsilon},
            "probs",
            ["m", "s", "tau"],
        ),
    }


def main(argv=None) -> int:
    """Run SBC for one model and print one JSON object of p-values (per parameter component)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m analysis.sbc", description=main.__doc__)
    parser.add_argument("model", choices=("matrix", "icl"))
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--num-warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epsilon",
        type=float,
        default=1e-300,
        help="clip of the observed probabilities; the models' default 1e-6 changes data drawn from "
        "extreme priors, so calibration of the inference itself is checked with a negligible clip",
    )
    parser.add_argument("--x64", action="store_true", help="float64, so a negligible clip does not underflow")
    args = parser.parse_args(argv)
    if args.x64:
        import numpyro

        numpyro.enable_x64()
    model, kwargs, observed, params = setups(args.epsilon)[args.model]
    result = sbc(model, kwargs, observed, params, num_replications=args.replications,
                 num_warmup=args.num_warmup, seed=args.seed)
    report = {
        "model": args.model,
        "replications": args.replications,
        "num_draws": result.num_draws,
        "divergences": result.num_divergences,
        "pvalues": {name: np.atleast_1d(uniformity_pvalue(ranks, result.num_draws)).tolist()
                    for name, ranks in result.ranks.items()},
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
