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

:func:`sbc` takes any NumPyro model and draws its data sets from the prior
predictive directly. :func:`sbc_model` checks a registered model on the path
a user's data takes: each replication's parameters are drawn from the model's
prior, its log is simulated from them as ``bayesmatrix simulate`` does
(:func:`bayesmatrix.inference.simulate.draw_rows`: the model run forward on
a skeleton log's inputs), and the log is prepared as ``fit`` prepares it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import xarray as xr
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

    key_prior, key_fits = jax.random.split(jax.random.PRNGKey(seed))
    truths = Predictive(model, num_samples=num_replications)(key_prior, **model_kwargs)
    return fit_ranks(
        model, model_kwargs, observed, truths[observed], {name: truths[name] for name in params},
        num_warmup=num_warmup, num_draws=num_draws, thin=thin, target_accept_prob=target_accept_prob, key=key_fits,
    )


def fit_ranks(
    model: Callable,
    model_kwargs: Mapping[str, Any],
    observed: str,
    data,
    truths: Mapping[str, Any],
    *,
    num_warmup: int = 300,
    num_draws: int = 99,
    thin: int = 3,
    target_accept_prob: float = 0.8,
    key=None,
) -> SbcResult:
    """Fit ``model`` to each data set ``data[i]`` (the ``observed`` argument) and rank ``truths[name][i]``.

    ``data`` and every ``truths`` value have a leading axis of replications.
    """
    import jax
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    key = jax.random.PRNGKey(0) if key is None else key
    key_init, key_fits = jax.random.split(key)
    num_replications = len(data)

    def data_kwargs(data):
        return {**model_kwargs, observed: data}

    info = initialize_model(key_init, model, model_kwargs=data_kwargs(data[0]), dynamic_args=True)
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
    draws, divergences = jax.jit(lambda k, d: jax.lax.map(lambda a: fit_one(*a), (k, d)))(keys, data)
    ranks = {}
    for name in truths:
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


class SbcSetup(NamedTuple):
    """A registered model and the skeleton log its calibration is checked on."""

    model: str
    """The name in :data:`bayesmatrix.models.MODELS`."""
    skeleton: xr.Dataset
    """The log whose inputs every replication shares (episodes, counts per row); its rows are simulated."""
    observe: tuple[str, ...]
    """The observed site (one)."""
    params: tuple[str, ...]
    """The parameters whose ranks are tested."""


def setups() -> dict[str, SbcSetup]:
    """The set-ups of ``bayesmatrix sbc``: ``matrix`` (20 rows of 10 sampled tokens, counts observed)
    and ``icl`` (6 episodes of 8 observations from a Dirichlet(1, 1, 1) world, probs observed)."""
    from bayesmatrix.inference.simulate import draw_episodes, rows_log

    counts = np.zeros((20, 3), dtype=np.int64)
    counts[:, 0] = 10  # only the totals matter: 10 tokens per row
    episodes = draw_episodes(np.random.default_rng(0), 6, 8, [1.0], np.ones((1, 3)))
    icl_skeleton = rows_log(
        "icl", 3, context_counts=episodes.context_counts, episode=episodes.episode, position=episodes.position
    )
    return {
        "matrix": SbcSetup("matrix", rows_log("matrix", 3, counts=counts), ("counts",), ("m", "s")),
        "icl": SbcSetup("icl", icl_skeleton, ("probs",), ("m", "s", "tau")),
    }


def sbc_model(
    name: str,
    *,
    num_replications: int = 100,
    num_warmup: int = 300,
    num_draws: int = 99,
    thin: int = 3,
    epsilon: float = 1e-6,
    seed: int = 0,
) -> SbcResult:
    """SBC of the set-up ``name`` of :func:`setups` on logs simulated by the model itself.

    Per replication: parameters from the prior
    (:func:`bayesmatrix.inference.simulate.prior_parameters`), the rows drawn
    by the model with them substituted (:func:`~bayesmatrix.inference.simulate.draw_rows`),
    written into the skeleton log and read back by
    :func:`bayesmatrix.inference.prepare.prepare`, as ``fit`` would. ``epsilon``
    is the model's clip of observed probabilities.
    """
    import jax

    from bayesmatrix.data.errors import InputError
    from bayesmatrix.inference.prepare import prepare
    from bayesmatrix.inference.simulate import draw_rows, model_inputs, prior_parameters, rows_log
    from bayesmatrix.models import MODELS

    available = setups()
    if name not in available:
        raise InputError(f"no SBC set-up for {name!r}; choose one of {', '.join(available)}", field="model")
    setup = available[name]
    (observed,) = setup.observe
    key_prior, key_data, key_fits = jax.random.split(jax.random.PRNGKey(seed), 3)
    options = {"observe": setup.observe, "inputs": {"epsilon": epsilon}}
    truths = prior_parameters(setup.model, setup.skeleton, num_replications, seed=key_prior, **options)
    drawn = draw_rows(setup.model, setup.skeleton, truths, seed=key_data, batched=True, **options)
    skeleton = setup.skeleton
    num_cols = skeleton.sizes["col"] - 1
    inputs = {name: skeleton[name].values[:, :-1] if name == "context_counts" else skeleton[name].values
              for name in ("context_counts", "episode", "position", "embedding") if name in skeleton}
    data = []
    for replication in range(num_replications):
        log = rows_log(
            setup.model,
            num_cols,
            None if drawn.probs is None else drawn.probs[replication],
            counts=None if drawn.counts is None else drawn.counts[replication],
            **inputs,
        )
        data.append(prepare(log, setup.model, observe=setup.observe).kwargs[observed])
    kwargs = model_inputs(setup.model, skeleton, **options)
    return fit_ranks(
        MODELS[setup.model].function, kwargs, observed, np.stack(data), {p: truths[p] for p in setup.params},
        num_warmup=num_warmup, num_draws=num_draws, thin=thin, key=key_fits,
    )


def report(name: str, result: SbcResult, num_replications: int) -> dict:
    """The JSON-ready summary ``bayesmatrix sbc`` prints: p-values per parameter component."""
    return {
        "model": name,
        "replications": num_replications,
        "num_draws": result.num_draws,
        "divergences": result.num_divergences,
        "pvalues": {param: np.atleast_1d(uniformity_pvalue(ranks, result.num_draws)).tolist()
                    for param, ranks in result.ranks.items()},
    }
