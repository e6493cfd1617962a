"""The NUTS driver: run NumPyro's No-U-Turn sampler on a model and return an ArviZ DataTree.

References: Hoffman & Gelman (2014), "The No-U-Turn Sampler"; NumPyro's
``numpyro.infer.MCMC``; ArviZ's ``from_numpyro(mcmc, log_likelihood=True)``,
which LOO needs.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from bayesmatrix.inference.runtime import chain_method

# Sampler statistics kept for diagnostics: energy gives E-BFMI, diverging the
# divergences, num_steps the tree depth and the sampler-overhead benchmark.
EXTRA_FIELDS = ("energy", "diverging", "num_steps", "accept_prob", "adapt_state.step_size", "potential_energy")


class NutsResult(NamedTuple):
    """What :func:`nuts` returns."""

    datatree: Any
    """ArviZ DataTree with ``posterior``, ``sample_stats``, ``log_likelihood`` and ``observed_data``."""
    mcmc: Any
    """The NumPyro ``MCMC`` object, for anything the DataTree does not hold."""
    num_divergences: int
    """Divergent transitions after warm-up, over all chains."""
    num_gradient_evals: int
    """Leapfrog steps after warm-up, over all chains (each is one gradient of the log density)."""
    seconds_warmup: float
    """Wall time of warm-up, compilation included."""
    seconds_sampling: float
    """Wall time of sampling after warm-up."""
    chain_method: str
    """'parallel' (one device per chain) or 'sequential'."""


def nuts(
    model: Callable,
    model_kwargs: Mapping[str, Any],
    *,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    target_accept_prob: float = 0.9,
    max_tree_depth: int = 10,
    regularize_mass_matrix: bool = False,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    progress_bar: bool = True,
    pointwise_kwargs: Mapping[str, Any] | None = None,
    log_likelihood: bool = True,
) -> NutsResult:
    """Sample ``model(**model_kwargs)`` with NUTS; warm-up and sampling are timed apart.

    ``pointwise_kwargs`` replace ``model_kwargs`` for the ``log_likelihood`` and
    ``observed_data`` groups: a model fitted through a sufficient statistic (one
    factor for all rows) gives its per-row log-likelihood, which LOO needs, when
    called with per-row observations on the same latent sites. ``log_likelihood=False`` leaves
    that group out (rows x draws values; ``analysis.loo`` recomputes them on a subsample).

    ``regularize_mass_matrix=False`` (the default here; NumPyro's is True)
    keeps the adapted variances as estimated. NumPyro, after Stan, shrinks each
    one toward 1e-3, ``n/(n + 5) var + 1e-3 * 5/(n + 5)`` after a window of
    ``n`` draws, which presumes posterior scales near 1 in the unconstrained
    space. A posterior from many rows is far narrower: the matrix model on
    1,000,000 rows has unconstrained variances of 3e-7 to 1e-3, the shrinkage
    (1e-5 after the last 500-draw window) inflates the small ones up to 30-fold,
    and NUTS then needs trees one level deeper (16 to 17 leapfrog steps per draw
    against 7; ``benchmarks.sufficient``). Without it the same model takes 7
    steps per draw at 10,000 and at 1,000,000 rows.
    """
    import arviz_base as azb
    import jax
    from numpyro.infer import MCMC, NUTS

    method = chain_method(num_chains)
    kernel = NUTS(model, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                  regularize_mass_matrix=regularize_mass_matrix)  # fmt: skip
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=method,
        progress_bar=progress_bar,
    )
    key_warmup, key_sample = jax.random.split(jax.random.PRNGKey(seed))
    start = time.perf_counter()
    # The same extra fields in both phases, so sampling reuses warm-up's compiled step.
    mcmc.warmup(key_warmup, extra_fields=EXTRA_FIELDS, **model_kwargs)
    jax.block_until_ready(mcmc.last_state)
    seconds_warmup = time.perf_counter() - start
    start = time.perf_counter()
    mcmc.run(key_sample, extra_fields=EXTRA_FIELDS, **model_kwargs)
    jax.block_until_ready(mcmc.get_samples())
    seconds_sampling = time.perf_counter() - start

    extra = mcmc.get_extra_fields()
    datatree = azb.from_numpyro(
        mcmc, log_likelihood=log_likelihood and pointwise_kwargs is None, coords=dict(coords or {}), dims=dict(dims or {})
    )
    if pointwise_kwargs is not None:
        replace_observations(datatree, model, mcmc.get_samples(group_by_chain=True), pointwise_kwargs, coords, dims,
                              log_likelihood=log_likelihood)  # fmt: skip
    return NutsResult(
        datatree=datatree,
        mcmc=mcmc,
        num_divergences=int(np.asarray(extra["diverging"]).sum()),
        num_gradient_evals=int(np.asarray(extra["num_steps"]).sum()),
        seconds_warmup=seconds_warmup,
        seconds_sampling=seconds_sampling,
        chain_method=method,
    )


def replace_observations(datatree, model, samples, model_kwargs, coords, dims, log_likelihood=True) -> None:
    """Set ``log_likelihood`` (unless told not to) and ``observed_data`` of ``datatree`` from
    ``model(**model_kwargs)`` on ``samples``."""
    import arviz_base as azb
    import jax
    from numpyro import handlers
    from numpyro.infer import log_likelihood as pointwise_log_likelihood

    trace = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(**model_kwargs)
    observed = {name: np.asarray(site["value"]) for name, site in trace.items()
                if site["type"] == "sample" and site["is_observed"]}
    groups = {"observed_data": observed}
    if log_likelihood:
        pointwise = pointwise_log_likelihood(model, samples, batch_ndims=2, **model_kwargs)
        groups["log_likelihood"] = {name: np.asarray(value) for name, value in pointwise.items()}
    groups = azb.from_dict(groups, coords=dict(coords or {}), dims=dict(dims or {}))
    for name in groups.children:
        datatree[name] = groups[name]
