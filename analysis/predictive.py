"""A fitted run's predictives: the updater ``q_r`` under posterior draws, and the run's posterior predictive.

The posterior predictive checks read the run's own ``posterior_predictive`` group,
drawn at fit time (``inference.fit.add_posterior_predictive``):
:func:`posterior_predictive_datatree` splits it by column for ArviZ's PPC plot,
:func:`loo_pit` computes LOO-PIT of it.

Every ICL model observes ``probs_r ~ Dirichlet(tau * q_r)`` (models/icl.py), so
the updater a posterior draw implies is the normalised concentration of the
``probs`` site. Reading it from a trace of the model, with the draw
substituted, works for every model of the registry without a formula per model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from bayesmatrix.data.errors import InputError


class FittedPredictive(NamedTuple):
    """What :func:`fitted_predictive` returns."""

    updater: np.ndarray
    """(draws, rows, C): the updater ``q_r`` under each posterior draw kept."""
    posterior_predictive: np.ndarray
    """(draws, rows, C): one draw of ``probs_r ~ Dirichlet(tau q_r)`` per posterior draw."""
    columns: list[str]
    """The columns the model sees (the log's, without ``<other>`` unless kept)."""
    observed: np.ndarray
    """(rows, C): the log's rows as the model sees them (renormalised over ``columns``)."""


def thinned_draws(posterior, num_draws: int) -> dict[str, np.ndarray]:
    """At most ``num_draws`` draws of every posterior variable, evenly spaced over chains and draws."""
    stacked = posterior.to_dataset().stack(sample=("chain", "draw"))
    total = stacked.sizes["sample"]
    keep = np.unique(np.linspace(0, total - 1, min(num_draws, total)).round().astype(int))
    out = {}
    for name, var in stacked.data_vars.items():
        values = var.isel(sample=keep).transpose("sample", ...).values
        out[name] = values
    return out


def fitted_predictive(run, ds, num_draws: int = 200, seed: int = 0) -> FittedPredictive:
    """Updater and posterior predictive draws of ``run`` (an :class:`inference.rundir.Run`) on its log ``ds``."""
    import dataclasses

    import jax
    from numpyro import handlers

    from bayesmatrix.inference.fit import FitOptions, prepare_for
    from bayesmatrix.inference.prepare import model_spec

    # Rebuilt with every option of the fit (rank included), not a hand-picked subset; the row
    # itself is observed here whatever the fit observed, since the updater is read off its site.
    options = dataclasses.replace(FitOptions(**run.info["options"]), observe=("probs",))
    model_input = prepare_for(ds, options)
    model = model_spec(run.info["model"]).function
    kwargs = dict(model_input.kwargs)
    draws = thinned_draws(run.datatree["posterior"], num_draws)
    latent = _latent_sites(model, kwargs)
    draws = {name: value for name, value in draws.items() if name in latent}

    def updater_of(draw, key):
        conditioned = handlers.substitute(handlers.seed(model, key), data=draw)
        site = handlers.trace(conditioned).get_trace(**kwargs)["probs"]
        concentration = _concentration(site["fn"])
        return concentration / concentration.sum(axis=-1, keepdims=True), site["fn"].sample(key)

    num_kept = len(next(iter(draws.values())))
    keys = jax.random.split(jax.random.PRNGKey(seed), num_kept)
    updater, predictive = jax.vmap(updater_of)(draws, keys)
    return FittedPredictive(
        updater=np.asarray(updater),
        posterior_predictive=np.asarray(predictive),
        columns=list(model_input.columns),
        observed=np.asarray(model_input.kwargs["probs"]),
    )


def _latent_sites(model, kwargs: dict[str, Any]) -> set[str]:
    import jax
    from numpyro import handlers

    trace = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(**kwargs)
    return {name for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]}


def _concentration(fn):
    # Inside a plate the Dirichlet may come wrapped (expanded or masked).
    while not hasattr(fn, "concentration") and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn.concentration


def posterior_predictive_datatree(datatree, rows: np.ndarray | None = None, variable: str | None = None):
    """A DataTree for ArviZ's PPC plots from a run's own ``posterior_predictive`` group: one variable
    ``p(<col>)`` (``count(<col>)`` for counts) of dims (chain, draw, row) per column.

    ``datatree`` is a run's (``inference.fit.add_posterior_predictive`` wrote the group); ``variable``
    is the observed site to check (default: ``probs`` where the run predicts it, else its first).
    ArviZ pools every non-sample dimension of a variable into one density, so each column becomes
    its own variable: the check compares the spread of that column across rows. A run without the
    group raises :class:`InputError`: refit it, the predictive is drawn at fit time.
    """
    import arviz_base as azb

    if "posterior_predictive" not in datatree.children:
        raise InputError("has no posterior_predictive group (written before fits stored one); refit the run",
                         field="posterior_predictive")  # fmt: skip
    predictive_group = datatree["posterior_predictive"]
    names = list(predictive_group.data_vars)
    variable = variable or ("probs" if "probs" in names else names[0])
    predictive = predictive_group[variable]  # (chain, draw, row, col)
    observed = datatree["observed_data"][variable]  # (row, col)
    rows = np.arange(observed.sizes["row"]) if rows is None else np.asarray(rows)
    prefix = "p" if variable == "probs" else "count"
    columns = [str(c) for c in observed["col"].values]
    names = [f"{prefix}({column})" for column in columns]
    values = np.asarray(predictive.transpose("chain", "draw", "row", "col").values)
    observed_values = np.asarray(observed.transpose("row", "col").values)
    return azb.from_dict(
        {
            "posterior_predictive": {name: values[:, :, rows, c] for c, name in enumerate(names)},
            "observed_data": {name: observed_values[rows, c] for c, name in enumerate(names)},
        },
        coords={"row": rows, "chain": predictive["chain"].values, "draw": predictive["draw"].values},
        dims={name: ["row"] for name in names},
    )


def loo_pit(datatree, var_names=None):
    """``arviz_stats.loo_pit`` of a run's ``posterior_predictive`` group, for observations that are rows.

    A row's log-likelihood is one number (``chain, draw, row``) while its prediction is a vector
    (``chain, draw, row, col``), ArviZ's layout for multivariate observations; ``arviz_stats`` 0.8's
    ``loo_pit`` does not broadcast the row's PSIS weights over ``col`` (an IndexError), and pairs
    predictive draws with log-likelihoods draw by draw, while a run keeps the predictive of a subset
    of its draws (``inference.fit.MAX_PREDICTIVE_DRAWS``). Here the weights are computed per row
    from the log-likelihoods of the draws the predictive holds and broadcast over its columns, so
    each entry's LOO-PIT leaves its whole row out.
    """
    import arviz_stats as azs
    import xarray as xr

    names = list(datatree["observed_data"].data_vars) if var_names is None else list(var_names)
    kept = datatree["posterior_predictive"]["draw"].values
    posterior = datatree["posterior"].to_dataset().sel(draw=kept)
    num_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
    r_eff = 1.0
    if posterior.sizes["chain"] > 1:  # as arviz_stats.loo_pit: the mean relative ESS of the draws used
        ess = posterior.azstats.ess(method="mean")
        r_eff = min(1.0, float(np.mean(np.hstack([np.ravel(ess[name].values) for name in ess.data_vars]))) / num_samples)
    log_weights, pareto_k = {}, {}
    for name in names:
        predictive = datatree["posterior_predictive"][name]
        log_likelihood = datatree["log_likelihood"][name].sel(draw=kept)
        weights, khat = log_likelihood.azstats.psislw(r_eff=r_eff, dim=["chain", "draw"])
        log_weights[name] = weights.broadcast_like(predictive)
        pareto_k[name] = khat.broadcast_like(predictive.isel(chain=0, draw=0, drop=True))
    return azs.loo_pit(datatree, var_names=names, log_weights=xr.Dataset(log_weights), pareto_k=xr.Dataset(pareto_k))
