"""Fit a model to an LLM log and write a run directory: the library side of ``bayesmatrix fit``."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from bayesmatrix.data.errors import InputError, checked_seed
from bayesmatrix.data.llmlog import read_log
from bayesmatrix.inference.svi import GUIDES, elbo_relative_change

METHODS = ("nuts", "svi")
SAMPLERS = ("numpyro", "compiled")
"""NUTS samplers: NumPyro's (``inference.nuts``), or NUTS compiled as one loop (``inference.compiled_nuts``),
whose own work per leapfrog step is smaller, for models whose gradient costs microseconds."""


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Options of one fit, checked when made (an :class:`InputError` naming the field); all go into run.json.

    ``dataclasses.asdict(options)`` is what run.json stores, and ``FitOptions(**run_info["options"])``
    reads it back. Whether ``model`` exists and observes ``observe`` is checked by ``prepare``.
    """

    model: str
    """A registered name (``bayesmatrix.models.MODELS``) or ``"module:attribute"`` naming a ModelSpec."""
    method: str = "nuts"
    sampler: str = "numpyro"
    """Which NUTS (``SAMPLERS``); method nuts only."""
    components: int = 2
    keep_other: bool = False
    num_samples: int = 1000
    num_warmup: int = 1000
    num_chains: int = 4
    seed: int = 0
    target_accept_prob: float = 0.9
    guide: str = "normal"
    learning_rate: float = 0.01
    max_steps: int = 20000
    progress_bar: bool = True
    rank: int = 4
    """R of the embedding model."""
    batch_size: int | None = None
    """SVI minibatch rows for models that subsample (embedding); None: every row at every step."""
    observe: tuple[str, ...] = ("probs",)
    """The observed sites (``prepare``'s ``observe``): ``("probs",)``, ``("counts",)`` or both, for the
    models whose ``ModelSpec.observed`` has them. A model with a ``count_statistics`` parameter
    (``matrix``) observing ``("counts",)`` alone is fitted through the counts' sufficient statistic.
    Read back from run.json as a list, kept as a tuple."""

    def __post_init__(self):
        observe = (self.observe,) if isinstance(self.observe, str) else tuple(self.observe)
        object.__setattr__(self, "observe", observe)
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}", field="method")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}", field="sampler")
        if self.sampler != "numpyro" and self.method != "nuts":
            raise InputError(f"the {self.sampler} sampler is a NUTS sampler; it needs the nuts method", field="sampler")
        checked_seed(self.seed)
        for name in ("components", "num_samples", "num_warmup", "num_chains", "max_steps", "rank", "batch_size"):
            value = getattr(self, name)
            if not (value is None and name == "batch_size") and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError(f"is {value!r}; must be a whole number", field=name)
        for name in ("target_accept_prob", "learning_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"is {value!r}; must be a finite number", field=name)
        if self.guide not in GUIDES:
            raise InputError(f"unknown guide {self.guide!r}; choose one of {', '.join(GUIDES)}", field="guide")
        for name in ("num_samples", "num_chains", "components", "max_steps", "rank"):
            if getattr(self, name) < 1:
                raise InputError(f"is {getattr(self, name)}; must be at least 1", field=name)
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"is {self.batch_size}; must be at least 1", field="batch_size")
        if self.num_warmup < 0:
            raise InputError(f"is {self.num_warmup}; must not be negative", field="num_warmup")
        if not 0 < self.target_accept_prob < 1:
            raise InputError(f"is {self.target_accept_prob}; must lie strictly between 0 and 1",
                             field="target_accept_prob")  # fmt: skip
        if not self.learning_rate > 0:
            raise InputError(f"is {self.learning_rate}; must be positive", field="learning_rate")
        if self.batch_size is not None and self.method != "svi":
            raise InputError("minibatches need the svi method and a model that subsamples rows (embedding)",
                             field="batch_size")  # fmt: skip


class FitResult(NamedTuple):
    """What :func:`fit` returns."""

    path: Path
    """The run directory written."""
    datatree: Any
    """The DataTree written to posterior.nc."""
    info: dict
    """What was written to run.json."""


# The DataTree attribute naming the sites left out of summaries: a mixture's components are
# sampled unordered (``*_unlabelled``, ``ModelSpec.unlabelled``) and sorted into labelled
# deterministic sites (``w``, ``m``, ``s``, ``alpha``); the unordered ones switch labels between
# chains by design, so their R-hat means nothing. Stored with the run, so reading a run needs
# no registry.
UNLABELLED_ATTR = "unlabelled_sites"


def global_sites(datatree) -> list[str]:
    """Posterior sites that are not per-row and carry a label (the ones worth a summary)."""
    posterior = datatree["posterior"]
    unlabelled = set(str(datatree.attrs.get(UNLABELLED_ATTR, "")).split())
    if UNLABELLED_ATTR not in datatree.attrs:  # a run written before the attribute existed
        from bayesmatrix.models import MODELS

        spec = MODELS.get(str(datatree.attrs.get("model", "")))
        unlabelled = set(spec.unlabelled) if spec is not None else set()
    return [name for name, var in posterior.data_vars.items() if "row" not in var.dims and name not in unlabelled]


def prepare_for(ds, options: FitOptions):
    """The model input a fit with ``options`` uses: the one call of ``prepare`` that fitting and
    reading a run back (``FitOptions(**run.info["options"])``) share, so both see the same data."""
    from bayesmatrix.inference.prepare import prepare

    return prepare(ds, options.model, keep_other=options.keep_other, components=options.components, rank=options.rank,
                   observe=options.observe)  # fmt: skip


INTERVAL_PROB = 0.94
"""The probability of every interval the project computes or prints (summary.csv, diagnose, the
report, compare's findings): equal-tailed (ArviZ's ``ci_kind="eti"``). ArviZ's own default is
``rcParams["stats.ci_prob"] = 0.89``; ``arviz_stats.summary(tree, ci_prob=INTERVAL_PROB)``
reproduces summary.csv. Stored in run.json (``interval_prob``) and posterior.nc's attributes."""

INTERVAL_LABEL = f"{INTERVAL_PROB:.0%} equal-tailed intervals"
"""How printed output names the intervals."""

INTERVAL_COLUMNS = (f"eti{INTERVAL_PROB * 100:.0f}_lb", f"eti{INTERVAL_PROB * 100:.0f}_ub")
"""The interval's columns in an ArviZ summary (and summary.csv): lower and upper bound."""


def summarize(datatree):
    """ArviZ summary (mean, sd, :data:`INTERVAL_PROB` equal-tailed interval, ESS, R-hat, MCSE) of the global sites."""
    import arviz_stats as azs

    return azs.summary(datatree, var_names=global_sites(datatree), round_to="none", ci_prob=INTERVAL_PROB,
                       ci_kind="eti")  # fmt: skip


MAX_PREDICTIVE_DRAWS = 500
"""Most posterior draws the posterior_predictive group holds, evenly spaced in each chain: enough
for predictive checks and LOO-PIT, at an eighth of the size of a default run's 4,000 draws."""

MAX_PREDICTIVE_VALUES = 2**24
"""Most values the posterior_predictive group holds (64 MiB of float32): fewer draws still for a
large log (an embedding's thousands of columns)."""


MAX_LOG_LIKELIHOOD_VALUES = 2**28
"""Most pointwise log-likelihoods (rows x draws, 1 GiB of float32) a NUTS run stores in its
``log_likelihood`` group. Past it (1,000,000 rows and 4,000 draws would be 16 GB) the group is left
out, run.json says ``"log_likelihood_stored": false``, and compare estimates LOO on a subsample
of rows, recomputing their log-likelihoods from the model and the log (``analysis.loo``)."""


def add_posterior_predictive(datatree, model, model_kwargs, *, seed: int = 0, coords=None, dims=None,
                             max_draws: int = MAX_PREDICTIVE_DRAWS, max_values: int = MAX_PREDICTIVE_VALUES) -> None:  # fmt: skip
    """Add a ``posterior_predictive`` group: the model's own draws of its observed sites, one per
    posterior draw kept (at most ``max_draws`` in all and ``max_values`` values, evenly spaced in each
    chain, the ``draw`` coordinate saying which), with the dims and coords of ``observed_data``;
    counts stay whole numbers. ``analysis.predictive.loo_pit`` pairs them with their log-likelihoods."""
    import arviz_base as azb
    import jax
    import numpy as np
    from numpyro.infer import Predictive

    observed = list(datatree["observed_data"].data_vars)
    posterior = datatree["posterior"]
    num_chains, num_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    values_per_draw = sum(int(np.prod(datatree["observed_data"][name].shape)) for name in observed)
    kept_per_chain = int(min(num_draws, max(1, max_draws // num_chains),
                             max(1, max_values // max(1, values_per_draw * num_chains))))  # fmt: skip
    keep = np.unique(np.linspace(0, num_draws - 1, kept_per_chain).round().astype(int))
    draws = posterior.isel(draw=keep)
    latent = {name: np.asarray(draws[name].values).reshape(num_chains * len(keep), *draws[name].shape[2:])
              for name in draws.data_vars}  # fmt: skip
    # The observations removed, the model draws its own (the observed sites default to None).
    free = {name: (None if name in observed else value) for name, value in model_kwargs.items()}
    predicted = Predictive(model, posterior_samples=latent, return_sites=observed)(jax.random.PRNGKey(seed), **free)

    def as_observed(name):
        values = np.asarray(predicted[name]).reshape(num_chains, len(keep), *np.shape(predicted[name])[1:])
        dtype = datatree["observed_data"][name].dtype
        # Count distributions sample whole numbers as floats; stored as the observations' integers.
        return np.rint(values).astype(dtype) if np.issubdtype(dtype, np.integer) else values

    groups = azb.from_dict(
        {"posterior_predictive": {name: as_observed(name) for name in observed}},
        coords={**dict(coords or {}), "chain": posterior["chain"].values, "draw": posterior["draw"].values[keep]},
        dims=dict(dims or {}),
    )  # fmt: skip
    datatree["posterior_predictive"] = groups["posterior_predictive"]


def fit(
    log_path: str | os.PathLike,
    options: FitOptions,
    out: str | os.PathLike,
    *,
    force: bool = False,
    figures: Callable[[Any, Path], None] | None = None,
) -> FitResult:
    """Read the log, fit ``options.model`` by ``options.method`` and write the run directory ``out``."""
    from bayesmatrix.inference.compiled_nuts import compiled_nuts
    from bayesmatrix.inference.nuts import nuts
    from bayesmatrix.inference.prepare import model_parameters, model_spec
    from bayesmatrix.inference.rundir import check_destination, file_sha256, package_versions, write_run_dir
    from bayesmatrix.inference.runtime import x64_enabled
    from bayesmatrix.inference.svi import svi

    spec = model_spec(options.model)
    if options.batch_size is not None and "batch_size" not in model_parameters(spec):
        raise InputError(f"minibatches need a model that subsamples rows (embedding), not {options.model}",
                         field="batch_size")  # fmt: skip
    check_destination(out, force, inputs=(log_path,))
    ds = read_log(log_path)
    data_sha256 = file_sha256(log_path)  # the file as just read, not as it may be after sampling
    model_input = prepare_for(ds, options)
    model_fn = spec.function
    # A sufficient statistic where the model takes one (prepare); per-row data for LOO and predictions.
    fit_kwargs = model_input.fit_kwargs
    predict_kwargs = None if fit_kwargs is model_input.kwargs else model_input.kwargs
    if options.batch_size is not None:
        # Minibatch gradients while fitting; draws and log-likelihood on every row.
        fit_kwargs = {**model_input.kwargs, "batch_size": options.batch_size}
        predict_kwargs = model_input.kwargs

    store_log_likelihood = int(ds.sizes["row"]) * options.num_chains * options.num_samples <= MAX_LOG_LIKELIHOOD_VALUES
    start = time.perf_counter()
    if options.method == "nuts":
        result = (nuts if options.sampler == "numpyro" else compiled_nuts)(
            model_fn,
            fit_kwargs,
            num_samples=options.num_samples,
            num_warmup=options.num_warmup,
            num_chains=options.num_chains,
            seed=options.seed,
            target_accept_prob=options.target_accept_prob,
            coords=model_input.coords,
            dims=model_input.dims,
            progress_bar=options.progress_bar,
            pointwise_kwargs=predict_kwargs,
            log_likelihood=store_log_likelihood,
        )
        method_info = {
            "log_likelihood_stored": store_log_likelihood,
            "num_divergences": result.num_divergences,
            "num_gradient_evals": result.num_gradient_evals,
            "chain_method": result.chain_method,
            "seconds_warmup": result.seconds_warmup,
            "seconds_sampling": result.seconds_sampling,
        }
    else:
        result = svi(
            model_fn,
            fit_kwargs,
            guide=options.guide,
            learning_rate=options.learning_rate,
            max_steps=options.max_steps,
            num_samples=options.num_samples,
            seed=options.seed,
            coords=model_input.coords,
            dims=model_input.dims,
            progress_bar=options.progress_bar,
            predict_kwargs=predict_kwargs,
        )
        method_info = {
            "converged": result.converged,
            "num_steps": result.num_steps,
            "final_loss": float(result.losses[-1]),
            "elbo_relative_change": elbo_relative_change(result.losses),
            "seconds_optimise": result.seconds,
        }
    datatree = result.datatree
    # Per-row inputs (never the sufficient statistic or a minibatch): one predictive draw per row.
    add_posterior_predictive(datatree, model_fn, model_input.kwargs, seed=options.seed, coords=model_input.coords,
                             dims=model_input.dims)  # fmt: skip
    datatree.attrs.update({"model": options.model, "method": options.method, UNLABELLED_ATTR: " ".join(spec.unlabelled),
                           "interval_prob": INTERVAL_PROB})  # fmt: skip
    summary = summarize(datatree)
    info = {
        "model": options.model,
        "method": options.method,
        "options": dataclasses.asdict(options),
        "seed": options.seed,
        "data_file": Path(log_path).name,
        "data_sha256": data_sha256,
        "data_model": ds.attrs.get("model", ""),
        "columns": list(model_input.columns),
        "num_rows": int(ds.sizes["row"]),
        "x64": x64_enabled(),
        "versions": package_versions(),
        "interval_prob": INTERVAL_PROB,
        "seconds_total": time.perf_counter() - start,
        **method_info,
    }
    path = write_run_dir(out, datatree, info, summary=summary, figures=figures, force=force)
    return FitResult(path=path, datatree=datatree, info=info)
