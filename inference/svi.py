"""The SVI driver: fit an autoguide by stochastic variational inference until the ELBO plateaus.

References: Hoffman, Blei, Wang & Paisley (2013), "Stochastic Variational
Inference"; Kucukelbir et al. (2017), "Automatic Differentiation Variational
Inference"; NumPyro's ``numpyro.infer.SVI`` and autoguides.

The optimiser runs in jitted chunks of steps (``lax.scan``); after each chunk
the mean loss of the latest window is compared with the window before it; a
relative change below ``tolerance`` is a plateau. At each plateau the Adam step
size drops tenfold (three phases), so the final parameters settle instead of
jittering around the optimum; the run has converged when the last phase
plateaus before ``max_steps``.
Draws from the fitted guide go into a DataTree with one chain, so diagnostics,
LOO and plots treat NUTS and SVI runs alike.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

GUIDES = ("normal", "mvn", "delta")

# Adam's last iterate jitters by about one step size around the optimum, which
# moves posterior means visibly; after each plateau the step size drops tenfold
# and the run goes on until the ELBO plateaus again.
LEARNING_RATE_PHASES = (1.0, 0.1, 0.01)


class SviResult(NamedTuple):
    """What :func:`svi` returns."""

    datatree: Any
    """ArviZ DataTree with ``posterior`` (chain 1, draw = guide draws), ``sample_stats`` (each draw's
    log importance weight, :data:`IMPORTANCE_SITE`), ``log_likelihood``, ``observed_data`` and
    ``elbo`` (the loss, = -ELBO, at every step)."""
    params: dict
    """Optimised guide parameters."""
    losses: np.ndarray
    """Loss (negative ELBO, in nats) at every step."""
    converged: bool
    """Whether the ELBO reached a plateau before ``max_steps``."""
    num_steps: int
    """Steps taken."""
    seconds: float
    """Wall time of the optimisation, compilation included."""
    guide: Any
    """The NumPyro autoguide, for further sampling."""


def make_guide(model: Callable, kind: str = "normal"):
    """An autoguide by name: 'normal' (mean-field), 'mvn' (full covariance) or 'delta' (MAP)."""
    from numpyro.infer import autoguide

    if kind == "normal":
        return autoguide.AutoNormal(model)
    if kind == "mvn":
        return autoguide.AutoMultivariateNormal(model)
    if kind == "delta":
        return autoguide.AutoDelta(model)
    raise ValueError(f"unknown guide {kind!r}; choose one of {GUIDES}")


def _chunk_runner(engine, model_kwargs, chunk):
    import jax

    from bayesmatrix.inference.sharding import split_data

    # The data go in as arguments: closed over, they would be constants of the compiled
    # program (compile time and memory growing with the data) and lose any sharding.
    data, options = split_data(model_kwargs)

    @jax.jit
    def run_chunk(state, data):
        return jax.lax.scan(lambda s, _: engine.update(s, **options, **data), state, None, length=chunk)

    return lambda state: run_chunk(state, data)


PLATEAU_WINDOW = 500
PLATEAU_TOLERANCE = 1e-4


def elbo_relative_change(losses: np.ndarray, window: int = PLATEAU_WINDOW) -> float:
    """``|mean(last window) - mean(window before)| / max(|mean(window before)|, 1)`` of the loss: the
    plateau criterion, NaN with fewer than ``2 window`` steps (or a non-finite loss)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) < 2 * window:
        return float("nan")
    recent = float(np.mean(losses[-window:]))
    before = float(np.mean(losses[-2 * window : -window]))
    return abs(recent - before) / max(abs(before), 1.0)


def plateaued(losses: np.ndarray, window: int = PLATEAU_WINDOW, tolerance: float = PLATEAU_TOLERANCE) -> bool:
    """True when the mean loss of the last ``window`` steps moved by less than ``tolerance``
    (relative) from the window before it."""
    return bool(elbo_relative_change(losses, window) <= tolerance)


def svi(
    model: Callable,
    model_kwargs: Mapping[str, Any],
    *,
    guide: str = "normal",
    learning_rate: float = 0.01,
    max_steps: int = 20000,
    min_steps: int = 1000,
    chunk: int = 250,
    window: int = PLATEAU_WINDOW,
    tolerance: float = PLATEAU_TOLERANCE,
    num_particles: int = 1,
    num_samples: int = 1000,
    seed: int = 0,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    progress_bar: bool = True,
    predict_kwargs: Mapping[str, Any] | None = None,
) -> SviResult:
    """Fit ``model(**model_kwargs)`` by SVI with an autoguide and draw ``num_samples`` from it.

    ``predict_kwargs`` replace ``model_kwargs`` when the draws, deterministic sites and
    pointwise log-likelihood are computed: a model fitted on minibatches
    (``plate(..., subsample_size=B)``) is evaluated on every row there.
    """
    import jax
    import numpyro
    import xarray as xr
    from numpyro.infer import SVI, Trace_ELBO
    from tqdm.auto import tqdm

    key_init, key_draws = jax.random.split(jax.random.PRNGKey(seed))
    auto = make_guide(model, guide)
    elbo = Trace_ELBO(num_particles=num_particles)

    start = time.perf_counter()
    losses: list[np.ndarray] = []
    params = None
    converged = True
    with tqdm(total=max_steps, desc="SVI", unit="step", disable=not progress_bar, leave=False) as bar:
        for phase, phase_rate in enumerate(learning_rate * np.asarray(LEARNING_RATE_PHASES)):
            engine = SVI(model, auto, numpyro.optim.Adam(float(phase_rate)), loss=elbo)
            state = engine.init(key_init, init_params=params, **model_kwargs)
            runners = {}  # one compiled program per chunk length: the usual one, and a last, shorter one
            phase_losses: list[np.ndarray] = []
            phase_min_steps = min_steps if phase == 0 else 2 * window
            plateau = False
            while (done := sum(map(len, losses))) < max_steps:
                length = min(chunk, max_steps - done)  # never past max_steps
                if length not in runners:
                    runners[length] = _chunk_runner(engine, model_kwargs, length)
                state, chunk_losses = runners[length](state)
                chunk_losses = np.asarray(chunk_losses)
                losses.append(chunk_losses)
                phase_losses.append(chunk_losses)
                bar.update(length)
                bar.set_postfix_str(f"lr {phase_rate:.1e} loss {np.mean(chunk_losses):.4g}", refresh=False)
                if not np.isfinite(chunk_losses).all():
                    break
                flat_phase = np.concatenate(phase_losses)
                if len(flat_phase) >= phase_min_steps and plateaued(flat_phase, window, tolerance):
                    plateau = True
                    break
            params = engine.get_params(state)
            if not plateau:
                converged = False
                break
    seconds = time.perf_counter() - start
    flat = np.concatenate(losses)

    datatree = draws_to_datatree(
        model,
        model_kwargs if predict_kwargs is None else predict_kwargs,
        guide=auto,
        params=params,
        num_samples=num_samples,
        key=key_draws,
        coords=coords,
        dims=dims,
    )
    datatree["elbo"] = xr.DataTree(xr.Dataset({"loss": ("step", flat)}, coords={"step": np.arange(1, len(flat) + 1)}))
    return SviResult(
        datatree=datatree,
        params=params,
        losses=flat,
        converged=converged,
        num_steps=len(flat),
        seconds=seconds,
        guide=auto,
    )


IMPORTANCE_SITE = "log_importance_weight"
"""The ``sample_stats`` variable of an SVI run holding ``log p(x, z) - log q(z)`` of each guide draw
``z``: the importance weights of the guide as a proposal for the posterior, from which the
diagnostics read the Pareto k of the guide (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it
work?: Evaluating variational inference")."""


def guide_draws(model, guide, params, model_kwargs, num_samples: int, key, batch_size: int = 100):
    """``num_samples`` draws ``z ~ q`` of the latent sites from a fitted guide, and each draw's log
    importance weight ``log p(x, z) - log q(z)`` (NaN for a point-mass guide, AutoDelta, which has no
    density). Both densities are in the constrained space (the guide's trace carries the Jacobian)."""
    import jax
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.infer import autoguide
    from numpyro.infer.util import log_density

    def one(key):
        log_q, trace = log_density(handlers.seed(guide, key), (), dict(model_kwargs), params)
        latent = {name: site["value"] for name, site in trace.items()
                  if site["type"] == "sample" and not name.startswith("_")}  # fmt: skip
        log_p, _ = log_density(model, (), dict(model_kwargs), latent)
        return latent, log_p - log_q

    # In batches: the model's density of every row for all draws at once can exceed memory.
    latent, log_weight = jax.lax.map(one, jax.random.split(key, num_samples), batch_size=batch_size)
    if isinstance(guide, autoguide.AutoDelta):
        log_weight = jnp.full(num_samples, jnp.nan)
    return {name: np.asarray(value) for name, value in latent.items()}, np.asarray(log_weight)


def draws_to_datatree(model, model_kwargs, *, guide, params, num_samples, key, coords=None, dims=None):
    """Draws from a fitted guide, with the model's deterministic sites, pointwise log-likelihood and
    each draw's log importance weight (``sample_stats``, :data:`IMPORTANCE_SITE`), as a DataTree with one chain."""
    import arviz_base as azb
    import jax
    from numpyro import handlers
    from numpyro.infer import Predictive, log_likelihood

    key_guide, key_model = jax.random.split(key)
    latent, log_weight = guide_draws(model, guide, params, model_kwargs, num_samples, key_guide)
    trace = handlers.trace(handlers.seed(model, key_model)).get_trace(**model_kwargs)
    observed = {name: site["value"] for name, site in trace.items() if site["type"] == "sample" and site["is_observed"]}
    deterministic = [name for name, site in trace.items() if site["type"] == "deterministic"]
    if deterministic:
        with_det = Predictive(model, posterior_samples=latent, return_sites=deterministic)(key_model, **model_kwargs)
        latent.update(with_det)
    loglik = log_likelihood(model, latent, **model_kwargs)

    def by_chain(values):
        return {name: np.asarray(value)[None, ...] for name, value in values.items()}

    return azb.from_dict(
        {
            "posterior": by_chain(latent),
            "sample_stats": {IMPORTANCE_SITE: log_weight[None, :]},
            "log_likelihood": by_chain(loglik),
            "observed_data": {name: np.asarray(value) for name, value in observed.items()},
        },
        coords=dict(coords or {}),
        dims=dict(dims or {}),
    )
