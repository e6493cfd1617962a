"""LOO comparison of runs fitted to the same observations, with Pareto-k warnings.

References: Vehtari, Gelman & Gabry (2017), "Practical Bayesian model
evaluation using leave-one-out cross-validation and WAIC"; Vehtari et al.
(2024), "Pareto smoothed importance sampling" (the k threshold
``min(1 - 1/log10(S), 0.7)``).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np

from bayesmatrix.data.errors import InputError


class Comparison(NamedTuple):
    """What :func:`compare_runs` returns."""

    table: Any
    """pandas DataFrame from ``arviz_stats.compare``: rank, elpd, p, elpd_diff, weight, se, dse, ...,
    one row per run, best first; plus ``bad_pareto_k`` (points above the threshold)."""
    loo: dict
    """Run name -> ``arviz_stats.ELPDData``."""
    warnings: list[str]
    """One sentence per run whose PSIS-LOO estimate is unreliable."""
    methods: dict = {}
    """Run name -> 'nuts' or 'svi' (from each DataTree's ``method`` attribute; empty where unknown)."""
    descriptions: dict = {}
    """Run name -> the one-line meaning of its model (``ModelSpec.description``), where known."""
    paths: dict = {}
    """Run name -> run directory (:func:`compare_runs`; empty for :func:`compare_datatrees`)."""


def loo_of(datatree):
    """PSIS-LOO of one DataTree (the log_likelihood group holds one pointwise variable per row).

    A row whose log-likelihood is the same under every draw (a row of counts with no token on the
    categories, say; the same up to rounding, :data:`CONSTANT_ULPS`) has an exact leave-one-out
    value: its importance ratios are all equal, so its weights are uniform and its elpd is that
    log-likelihood. PSIS cannot fit a Pareto tail to equal values (ArviZ raises "All tail values
    are the same", or gives NaN on float32 ties), so those rows get uniform weights and Pareto k 0
    (reliable) and PSIS smooths the rest as it would without them.
    """
    import arviz_stats as azs

    with warnings.catch_warnings():
        # ArviZ warns about high Pareto k itself; we report those as plain sentences instead.
        warnings.simplefilter("ignore", UserWarning)
        constant = _constant_rows(datatree)
        if constant is None:
            return azs.loo(datatree, pointwise=True)
        log_weights, pareto_k = _weights_with_constant_rows(datatree, constant)
        return azs.loo(datatree, pointwise=True, log_weights=log_weights, pareto_k=pareto_k)


CONSTANT_ULPS = 64
"""A row whose log-likelihood spreads over at most this many units of its last place is constant."""


def _log_likelihood(datatree):
    """The one pointwise variable of the log_likelihood group, as a DataArray."""
    group = datatree["log_likelihood"].to_dataset()
    if len(group.data_vars) != 1:
        return None
    return next(iter(group.data_vars.values()))


def _constant_rows(datatree):
    """A boolean DataArray over the observation dims, True where the log-likelihood does not vary over
    the draws; None where no row is constant (or the group is not one variable)."""
    log_lik = _log_likelihood(datatree)
    if log_lik is None:
        return None
    sample_dims = [dim for dim in ("chain", "draw") if dim in log_lik.dims]
    spread = log_lik.max(sample_dims) - log_lik.min(sample_dims)
    # constant up to rounding: a float32 log(0.5) computed from different draws differs in its last bit,
    # and PSIS's tail fit gives NaN on such ties
    rounding = CONSTANT_ULPS * np.finfo(log_lik.dtype).eps * np.maximum(1.0, np.abs(log_lik).max(sample_dims))
    constant = spread <= rounding
    return constant if bool(constant.any()) else None


def _weights_with_constant_rows(datatree, constant):
    """(log_weights, pareto_k) for every row: PSIS on the varying rows, uniform weights and k 0 on the constant."""
    import arviz_base as azb
    import arviz_stats as azs

    log_lik = _log_likelihood(datatree)
    obs_dims = [dim for dim in log_lik.dims if dim not in ("chain", "draw")]
    log_lik = log_lik.transpose("chain", "draw", *obs_dims)
    values = np.asarray(log_lik.values).reshape(log_lik.sizes["chain"], log_lik.sizes["draw"], -1)
    varying = ~np.asarray(constant.transpose(*obs_dims).values).ravel()
    log_weights = np.full(values.shape, -np.log(values.shape[0] * values.shape[1]))
    pareto_k = np.zeros(values.shape[2])
    if varying.any():
        posterior = {name: value.values for name, value in datatree["posterior"].to_dataset().data_vars.items()}
        subset = azb.from_dict({"posterior": posterior, "log_likelihood": {"y": values[..., varying]}},
                               dims={"y": ["varying_row"]})  # fmt: skip
        fitted = azs.loo(subset, pointwise=True)
        log_weights[..., varying] = np.asarray(fitted.log_weights.transpose("chain", "draw", "varying_row"))
        pareto_k[varying] = np.asarray(fitted.pareto_k)
    k_template = log_lik.isel(chain=0, draw=0, drop=True)
    return (log_lik.copy(data=log_weights.reshape(log_lik.shape)),
            k_template.copy(data=pareto_k.reshape(k_template.shape)))


def arviz_compare(loos: dict):
    """``arviz_stats.compare`` of ``loos`` as this project reads it on either ArviZ: unrounded numbers, best
    first, ``elpd_diff`` the best run's elpd minus this run's (0 or more, 0.8's sign).

    arviz-stats 1.x rounds its table by default and gives ``elpd_diff`` as this run minus the best
    (0 or less); 0.8 has no ``round_to`` and gives the other sign.
    """
    import inspect

    import arviz_stats as azs

    if "round_to" not in inspect.signature(azs.compare).parameters:
        return azs.compare(loos)
    table = azs.compare(loos, round_to="none")
    table["elpd_diff"] = table["elpd_diff"].abs()  # 0 or less against the best run, which is the reference
    return table


def compare_datatrees(datatrees: dict[str, Any], progress: bool = False) -> Comparison:
    """Compare DataTrees by PSIS-LOO; keys are the names shown in the table. ``progress``: a bar over the LOO of each."""
    import sys

    from tqdm.auto import tqdm

    loos = {name: loo_of(tree) for name, tree in tqdm(datatrees.items(), desc="compare: PSIS-LOO", unit="run",
                                                      disable=not progress, delay=1.0, file=sys.stderr, leave=False)}  # fmt: skip
    messages = []
    bad = {}
    for name, elpd in loos.items():
        k = np.asarray(elpd.pareto_k).ravel()
        threshold = float(elpd.good_k) if elpd.good_k is not None else 0.7
        count = int(np.sum(k > threshold))
        bad[name] = count
        if not np.isfinite(float(elpd.elpd)):
            messages.append(f"{name}: its elpd is {float(elpd.elpd)}; some row's log-likelihood is not finite "
                            "under the posterior, so LOO cannot rank this run")  # fmt: skip
        if count:
            messages.append(
                f"{name}: {count} of {k.size} observations have Pareto k > {threshold:.2f}; "
                "its LOO estimate is unreliable there (consider K-fold CV or moment matching)"
            )
    with warnings.catch_warnings():
        # pandas 3.1 deprecates an argument arviz_stats 0.8 still passes.
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        warnings.simplefilter("ignore", UserWarning)
        table = arviz_compare(loos)
    table["bad_pareto_k"] = [bad[name] for name in table.index]
    methods = {name: str(tree.attrs["method"]) for name, tree in datatrees.items() if "method" in tree.attrs}
    descriptions = {name: description for name, tree in datatrees.items()
                    if (description := model_description(str(tree.attrs.get("model", "")))) is not None}  # fmt: skip
    return Comparison(table=table, loo=loos, warnings=messages, methods=methods, descriptions=descriptions)


def model_description(name: str) -> str | None:
    """The one-line meaning of a model (registered, or ``module:attribute``); None where this process cannot find it."""
    from bayesmatrix.inference.prepare import model_spec

    try:
        return model_spec(name).description if name else None
    except InputError:
        return None


def compare_runs(run_dirs, progress: bool = False, log=None, subsample: int | None = None) -> Comparison:
    """Compare run directories; they must have been fitted to the same log and rows.

    ``progress`` shows a bar on stderr while the runs are read (after a second; tqdm). A run that
    stores no pointwise log-likelihood (``inference.fit.MAX_LOG_LIKELIHOOD_VALUES``) needs ``log``,
    the log the runs were fitted to: then every run's LOO is estimated on the same ``subsample`` of
    rows (default ``analysis.loo.DEFAULT_SUBSAMPLE``), their log-likelihoods recomputed from the
    model (``analysis.loo``), with the subsample's error against full LOO in the table."""
    import sys

    from tqdm.auto import tqdm

    from bayesmatrix.inference.rundir import read_run

    if len(run_dirs) < 2:
        raise InputError("compare needs at least two run directories", field="RUN_DIR")
    runs = [read_run(path) for path in tqdm(run_dirs, desc="compare: read", unit="run", disable=not progress,
                                             delay=1.0, file=sys.stderr, leave=False)]  # fmt: skip
    first = runs[0]
    seen = {}
    for run in runs:
        where = run.path.resolve()
        if where in seen:
            raise InputError(f"is given twice (as {seen[where]} too); compare each run once", file=str(run.path))
        seen[where] = run.path
    for run in runs[1:]:
        if run.info.get("data_sha256") != first.info.get("data_sha256"):
            raise InputError(
                f"was fitted to {run.info.get('data_file')!r}, not the log of {first.path} "
                f"({first.info.get('data_file')!r}); LOO compares runs on the same observations only",
                file=str(run.path),
            )
        observed, first_observed = (list(r.info.get("options", {}).get("observe", ["probs"])) for r in (run, first))
        if observed != first_observed:
            raise InputError(
                f"observes {','.join(observed)}, but {first.path} observes {','.join(first_observed)}; "
                "LOO compares densities of the same observations only",
                file=str(run.path),
            )
        if run.info.get("columns") != first.info.get("columns"):
            raise InputError(
                f"models its rows over columns {run.info.get('columns')}, but {first.path} over "
                f"{first.info.get('columns')}; refit with the same keep_other choice",
                file=str(run.path),
            )
    names = _unique_names(runs)
    if subsample is not None or any("log_likelihood" not in run.datatree.children for run in runs):
        from bayesmatrix.analysis.loo import DEFAULT_SUBSAMPLE, compare_subsampled_runs

        if log is None:
            stored = next((run for run in runs if "log_likelihood" not in run.datatree.children), None)
            raise InputError(("stores no pointwise log-likelihood (too many rows x draws); " if stored else "")
                             + "LOO on a subsample of rows recomputes them from the log the runs were fitted to: "
                             "give it", file=str(stored.path) if stored else None, field="log")  # fmt: skip
        comparison = compare_subsampled_runs(dict(zip(names, runs)), log, progress=progress,
                                             subsample=DEFAULT_SUBSAMPLE if subsample is None else subsample)  # fmt: skip
    else:
        comparison = compare_datatrees({name: run.datatree for name, run in zip(names, runs)}, progress=progress)
    methods = {name: str(run.info.get("method", "")) for name, run in zip(names, runs)}
    return comparison._replace(methods=methods, paths={name: run.path for name, run in zip(names, runs)})


def _unique_names(runs) -> list[str]:
    labels = [f"{run.info.get('model')} ({run.info.get('method')})" for run in runs]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{label} [{run.path.name}]" for label, run in zip(labels, runs)]


DISTINGUISHABLE_SE = 2.0
"""A difference in elpd smaller than this many of its standard errors does not tell two models apart."""
WEAK_SE = 3.0
"""A difference between :data:`DISTINGUISHABLE_SE` and this many standard errors is a weak preference: the
standard error is itself estimated, and a few influential observations can move the ratio by that much."""


def indistinguishable(table) -> list[tuple[str, float, float]]:
    """The runs LOO cannot tell from the best: ``(name, elpd_diff, dse)`` of every run after the first
    whose difference is at most :data:`DISTINGUISHABLE_SE` standard errors (or not finite)."""
    labels = [str(label) for label in table.index]
    return [(label, float(diff), float(dse))
            for label, diff, dse in zip(labels[1:], table["elpd_diff"].iloc[1:], table["dse"].iloc[1:])
            if not np.isfinite(diff) or not np.isfinite(dse) or diff <= DISTINGUISHABLE_SE * dse]  # fmt: skip


def verdict(table, methods=None, descriptions=None) -> str:
    """The sentences that claim no more than the table: which runs LOO cannot tell from the best.

    ``table`` is :attr:`Comparison.table` (best first, ``elpd_diff`` and its standard error ``dse``);
    ``descriptions`` (run name -> what its model says) name the explanations that stay in play;
    ``methods`` (run name -> 'nuts' or 'svi') mark the runs whose numbers come from a variational guide.
    """
    methods, descriptions = dict(methods or {}), dict(descriptions or {})
    best = str(table.index[0])
    level = indistinguishable(table)
    if not level:
        text = f"LOO prefers {best}: every other run is more than {DISTINGUISHABLE_SE:g} standard errors behind"
        if len(table) > 1:  # the run least separated from the best, in its standard errors
            ratios = np.asarray(table["elpd_diff"].iloc[1:], dtype=float) / np.asarray(table["dse"].iloc[1:], dtype=float)
            nearest = int(np.argmin(ratios)) + 1
            runner_up = str(table.index[nearest])
            text += (f" (the least separated, {runner_up}, is {table['elpd_diff'].iloc[nearest]:.1f} ± "
                     f"{table['dse'].iloc[nearest]:.1f} behind: {ratios[nearest - 1]:.2f} standard errors)")  # fmt: skip
            if ratios[nearest - 1] < WEAK_SE:
                text += (f". That is a weak preference (under {WEAK_SE:g} standard errors): "
                         f"{runner_up}{' = ' + descriptions[runner_up] if runner_up in descriptions else ''} "
                         "is not ruled out")  # fmt: skip
        text += "."
    else:
        text = (f"LOO ranks {best} first, but {', '.join(f'{label} ({diff:.1f} ± {dse:.1f})' for label, diff, dse in level)} "
                f"{'is' if len(level) == 1 else 'are'} within {DISTINGUISHABLE_SE:g} standard errors of it: "
                "not distinguishable, so each of these explanations stays in play.")  # fmt: skip
    in_play = [best, *(label for label, _, _ in level)]
    if level and any(label in descriptions for label in in_play):
        text += " In play: " + "; ".join(f"{label} = {descriptions[label]}" for label in in_play if label in descriptions) + "."
    if "bad_pareto_k" in table:
        unreliable = [label for label in in_play if table.loc[label, "bad_pareto_k"] > 0]
        if unreliable:
            text += f" The LOO estimate of {', '.join(unreliable)} is unreliable at some observations (Pareto k warnings below)."
    variational = [label for label in in_play if methods.get(label) == "svi"]
    if variational:
        text += (f" {', '.join(variational)} {'is an SVI fit' if len(variational) == 1 else 'are SVI fits'}: "
                 "its intervals and LOO come from a variational guide and are approximate.")  # fmt: skip
    return text


def format_comparison(comparison: Comparison) -> str:
    import pandas as pd

    columns = [c for c in ("rank", "elpd", "p", "elpd_diff", "dse", "se", "subsampling_se", "subsampling_dse", "weight",
                           "warning", "bad_pareto_k") if c in comparison.table]  # fmt: skip
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        text = comparison.table[columns].to_string(float_format=lambda v: f"{v:.2f}")
    text += "\n" + verdict(comparison.table, comparison.methods, comparison.descriptions)
    if comparison.warnings:
        text += "\nWARNINGS:\n" + "\n".join(f"  - {w}" for w in comparison.warnings)
    return text
