"""PSIS-LOO on a simple random subsample of rows, for logs too large to hold every row's log-likelihood.

A run of 1,000,000 rows and 4,000 draws would need 4e9 pointwise
log-likelihoods (16 GB of float32) for full PSIS-LOO. Here they are never
stored: the model computes them on demand, a chunk of rows at a time, for

- every row at one point, the posterior mean (the surrogate ``pi_i``, the
  "point log predictive density" of Magnusson et al. 2019), and
- every draw on ``m`` rows drawn without replacement, where PSIS-LOO
  (``arviz_stats.loo``) gives ``elpd_loo_j``.

The difference estimator then corrects the surrogate's sum by the subsample's
mean error (Magnusson, Riis Andersen, Jonasson & Vehtari 2019, "Bayesian
leave-one-out cross-validation for large data", ICML, eqs. 7-9; the R
package loo's ``srs_diff_est``):

    elpd_hat = sum_i pi_i + N mean_j(elpd_loo_j - pi_j)
    subsampling variance = N^2 (1 - m/N) var_j(elpd_loo_j - pi_j) / m

``subsampling_se`` (the square root) is the approximation error against full
PSIS-LOO; ``se`` is the usual standard error of elpd over the N rows,
estimated from the same subsample. arviz_stats 0.8 has a ``loo_subsample``
too, but it reads the full ``log_likelihood`` group, which is the thing that
cannot exist at this size.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

DEFAULT_SUBSAMPLE = 2000
"""Rows of the subsample: the subsampling error falls as ``1/sqrt(m)``; 2,000 rows of 4,000 draws are 32 MB."""

CHUNK_VALUES = 2**22
"""Most log-likelihood values computed at once (rows per chunk = this / draws): the model's intermediates
are a multiple of it (a Dirichlet-multinomial one per column), so 4M values keep a chunk under a GB."""


class SubsampleLoo(NamedTuple):
    """What :func:`loo_subsample` returns."""

    elpd: float
    """Estimated elpd_loo over all rows (the difference estimator)."""
    se: float
    """Standard error of ``elpd`` over the rows, as full PSIS-LOO reports it (``sqrt(N var_i elpd_loo_i)``)."""
    subsampling_se: float
    """Standard error of ``elpd`` as an estimate of full PSIS-LOO's elpd: the approximation's error."""
    num_rows: int
    """N, the rows of the log."""
    rows: np.ndarray
    """The subsample: ``m`` row indices, sorted."""
    elpd_i: np.ndarray
    """PSIS-LOO elpd of each subsampled row, ``(m,)``."""
    pareto_k: np.ndarray
    """Pareto k of each subsampled row, ``(m,)``."""
    good_k: float
    """The Pareto-k threshold above which a row's PSIS estimate is unreliable."""
    surrogate: np.ndarray
    """Log-likelihood of every row at the posterior mean, ``(N,)``."""


def difference_estimate(surrogate: np.ndarray, elpd_sample: np.ndarray, rows: np.ndarray) -> tuple[float, float, float]:
    """``(elpd, se, subsampling_se)`` from the surrogate of every row and the exact values on ``rows``.

    Simple random sampling without replacement; arrays first: ``surrogate`` is ``(N,)``,
    ``elpd_sample`` and ``rows`` are ``(m,)`` with ``m >= 2``.
    """
    surrogate = np.asarray(surrogate, dtype=np.float64)
    elpd_sample = np.asarray(elpd_sample, dtype=np.float64)
    num_rows, size = surrogate.size, elpd_sample.size
    if size < 2 or size > num_rows:
        raise ValueError(f"a subsample of {size} rows out of {num_rows}; needs 2 to {num_rows}")
    approx = surrogate[np.asarray(rows)]
    error = elpd_sample - approx
    total_approx = surrogate.sum()
    total_error = num_rows * error.mean()
    elpd = total_approx + total_error
    subsampling_var = num_rows**2 * (1 - size / num_rows) * error.var(ddof=1) / size
    # The sum of squares over all rows, estimated the same way, less the square of the sum over N.
    sum_squares = np.sum(surrogate**2) + num_rows * np.mean(elpd_sample**2 - approx**2)
    var_total = sum_squares - (total_error**2 - subsampling_var + 2 * total_approx * elpd - total_approx**2) / num_rows
    return float(elpd), float(np.sqrt(max(var_total, 0.0))), float(np.sqrt(subsampling_var))


def row_slice(model_kwargs: Mapping[str, Any], num_rows: int, rows: np.ndarray) -> dict[str, Any]:
    """``model_kwargs`` restricted to ``rows``: every array whose first axis is the rows is indexed,
    ``num_rows`` becomes their count, the rest is kept (the model's rows are independent given its
    global sites, which is what pointwise LOO assumes)."""
    sliced = {}
    for name, value in model_kwargs.items():
        if name == "num_rows":
            sliced[name] = len(rows)
        elif hasattr(value, "shape") and np.ndim(value) >= 1 and np.shape(value)[0] == num_rows:
            sliced[name] = np.asarray(value)[rows]
        else:
            sliced[name] = value
    return sliced


def pointwise_log_likelihood(model: Callable, posterior: Mapping[str, np.ndarray], row_dims: Mapping[str, int],
                             model_kwargs: Mapping[str, Any], num_rows: int, rows: np.ndarray,
                             observed: tuple[str, ...]) -> np.ndarray:  # fmt: skip
    """Log-likelihood of each of ``rows`` under each draw, ``(chain, draw, len(rows))`` float32, in chunks.

    ``posterior`` holds the latent sites ``(chain, draw, ...)``; ``row_dims`` names those with a row
    axis and where it is (they are indexed with the rows). With several observed sites, a row's
    log-likelihood is their sum (one observation per row, as LOO leaves out).
    """
    from numpyro.infer import log_likelihood

    num_chains, num_draws = next(iter(posterior.values())).shape[:2]
    chunk = max(1, CHUNK_VALUES // (num_chains * num_draws))
    out = np.empty((num_chains, num_draws, len(rows)), dtype=np.float32)
    for start in range(0, len(rows), chunk):
        these = np.asarray(rows[start : start + chunk])
        samples = {name: (np.take(value, these, axis=row_dims[name]) if name in row_dims else value)
                   for name, value in posterior.items()}  # fmt: skip
        values = log_likelihood(model, samples, batch_ndims=2, **row_slice(model_kwargs, num_rows, these))
        total = sum(np.asarray(values[name]).reshape(num_chains, num_draws, len(these), -1).sum(-1) for name in observed)
        out[:, :, start : start + len(these)] = total
    return out


def loo_subsample(model: Callable, posterior: Mapping[str, np.ndarray], model_kwargs: Mapping[str, Any], *,
                  num_rows: int, observed: tuple[str, ...], row_dims: Mapping[str, int] | None = None,
                  subsample_size: int = DEFAULT_SUBSAMPLE, seed: int = 0) -> SubsampleLoo:  # fmt: skip
    """PSIS-LOO of ``model(**model_kwargs)`` on a simple random subsample of its ``num_rows`` rows.

    ``model_kwargs`` are the per-row inputs (``ModelInput.kwargs``, never a sufficient statistic);
    ``posterior`` the latent draws ``(chain, draw, ...)``. Nothing of size rows x draws is held:
    memory is the ``(chain, draw, subsample_size)`` block plus one chunk. With ``subsample_size``
    at least ``num_rows`` every row is used and the result is full PSIS-LOO (``subsampling_se`` 0).
    """
    from bayesmatrix.analysis.compare import loo_of

    row_dims = dict(row_dims or {})
    size = min(int(subsample_size), num_rows)
    rows = np.sort(np.random.default_rng(seed).choice(num_rows, size=size, replace=False))
    mean_point = {name: np.asarray(value, dtype=np.float64).mean(axis=(0, 1), keepdims=True).astype(np.asarray(value).dtype)
                  for name, value in posterior.items()}  # fmt: skip
    surrogate = pointwise_log_likelihood(model, mean_point, row_dims, model_kwargs, num_rows, np.arange(num_rows),
                                         observed)[0, 0].astype(np.float64)  # fmt: skip
    sample = pointwise_log_likelihood(model, posterior, row_dims, model_kwargs, num_rows, rows, observed)
    tree = loo_tree(sample, {name: value for name, value in posterior.items() if name not in row_dims})
    elpd = loo_of(tree)  # high Pareto k is reported by the caller, as in compare
    elpd_i = np.asarray(elpd.elpd_i).ravel()
    good_k = float(elpd.good_k) if elpd.good_k is not None else 0.7
    if size == num_rows:
        total, se, subsampling_se = float(elpd_i.sum()), float(elpd.se), 0.0
    else:
        total, se, subsampling_se = difference_estimate(surrogate, elpd_i, rows)
    return SubsampleLoo(elpd=total, se=se, subsampling_se=subsampling_se, num_rows=num_rows, rows=rows,
                        elpd_i=elpd_i, pareto_k=np.asarray(elpd.pareto_k).ravel(), good_k=good_k,
                        surrogate=surrogate)  # fmt: skip


def loo_tree(pointwise: np.ndarray, posterior: Mapping[str, np.ndarray]):
    """What ``arviz_stats.loo`` reads: ``pointwise`` ``(chain, draw, row)`` as the ``log_likelihood``
    group, beside the ``posterior`` draws it takes the relative efficiency (``r_eff``) from."""
    import arviz_base as azb

    return azb.from_dict({"posterior": dict(posterior), "log_likelihood": {"y": pointwise}}, dims={"y": ["row"]})


def loo_subsample_of_run(run, log_path, *, subsample_size: int = DEFAULT_SUBSAMPLE, seed: int = 0) -> SubsampleLoo:
    """:func:`loo_subsample` of a run directory read back (``inference.rundir.read_run``), its model's
    per-row inputs rebuilt from the log it was fitted to (checked against run.json's hash)."""
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.data.llmlog import read_log
    from bayesmatrix.inference.fit import FitOptions, prepare_for
    from bayesmatrix.inference.prepare import model_spec
    from bayesmatrix.inference.rundir import file_sha256

    if file_sha256(log_path) != run.info.get("data_sha256"):
        raise InputError(f"is not the log {run.path} was fitted to ({run.info.get('data_file')!r})", file=str(log_path))
    options = FitOptions(**run.info["options"])
    model_input = prepare_for(read_log(log_path), options)
    spec = model_spec(options.model)
    posterior = run.datatree["posterior"]
    num_rows = int(run.info["num_rows"])
    # Only the latent sample sites go back into the model; its deterministic sites follow from them.
    latent = latent_sites(spec.function, model_input.kwargs)
    draws = {name: np.asarray(posterior[name].values) for name in posterior.data_vars if name in latent}
    row_dims = {name: posterior[name].dims.index("row") for name in draws if "row" in posterior[name].dims}
    return loo_subsample(spec.function, draws, model_input.kwargs, num_rows=num_rows, observed=model_input.observed,
                         row_dims=row_dims, subsample_size=subsample_size, seed=seed)  # fmt: skip


def latent_sites(model: Callable, model_kwargs: Mapping[str, Any]) -> set[str]:
    """Names of the model's unobserved sample sites (one trace on two rows)."""
    import jax
    from numpyro import handlers

    num_rows = int(model_kwargs["num_rows"])
    small = row_slice(model_kwargs, num_rows, np.arange(min(2, num_rows)))
    trace = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(**small)
    return {name for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]}


def compare_subsampled(loos: Mapping[str, SubsampleLoo]):
    """The comparison table of runs' subsampled LOO on the same rows, best first, as ``arviz_stats.compare``
    names its columns (``rank``, ``elpd``, ``se``, ``elpd_diff``, ``dse``), plus ``subsampling_se`` and
    ``subsampling_dse`` (the subsample's approximation errors) and ``bad_pareto_k`` (subsampled rows
    above the threshold). Each difference is the difference estimator applied to the rows'
    differences, so its standard error accounts for their correlation, as ``dse`` does."""
    import pandas as pd

    order = sorted(loos, key=lambda name: loos[name].elpd, reverse=True)
    best = loos[order[0]]
    rows = []
    for rank, name in enumerate(order):
        loo = loos[name]
        if not np.array_equal(loo.rows, best.rows):
            raise ValueError("subsampled LOO compares runs on the same subsample of rows only")
        if rank == 0:
            diff, dse, subsampling_dse = 0.0, 0.0, 0.0
        else:
            diff, dse, subsampling_dse = difference_estimate(best.surrogate - loo.surrogate, best.elpd_i - loo.elpd_i,
                                                             loo.rows)  # fmt: skip
        rows.append({"rank": rank, "elpd": loo.elpd, "se": loo.se, "elpd_diff": diff, "dse": dse,
                     "subsampling_se": loo.subsampling_se, "subsampling_dse": subsampling_dse,
                     "bad_pareto_k": int(np.sum(loo.pareto_k > loo.good_k))})  # fmt: skip
    return pd.DataFrame(rows, index=order)


def compare_subsampled_runs(runs: Mapping[str, Any], data, *, subsample: int = DEFAULT_SUBSAMPLE, seed: int = 0,
                            progress: bool = False):  # fmt: skip
    """``analysis.compare.Comparison`` of runs (name -> ``Run``) by LOO on one subsample of rows of
    ``data``, the log they were fitted to; for runs that store no pointwise log-likelihood."""
    import sys

    from tqdm.auto import tqdm

    from bayesmatrix.analysis.compare import Comparison, model_description
    from bayesmatrix.data.errors import InputError

    if subsample < 2:
        raise InputError(f"is {subsample}; a subsample needs at least 2 rows", field="subsample")
    loos = {name: loo_subsample_of_run(run, data, subsample_size=subsample, seed=seed)
            for name, run in tqdm(runs.items(), desc="compare: subsampled PSIS-LOO", unit="run", disable=not progress,
                                  delay=1.0, file=sys.stderr, leave=False)}  # fmt: skip
    table = compare_subsampled(loos)
    messages = []
    for name, loo in loos.items():
        if loo.rows.size < loo.num_rows:
            messages.append(f"{name}: LOO estimated on {loo.rows.size} of {loo.num_rows} rows drawn at random; "
                            f"its error against full LOO is ± {loo.subsampling_se:.2f} (subsampling_se)")  # fmt: skip
        count = int(np.sum(loo.pareto_k > loo.good_k))
        if count:
            messages.append(f"{name}: {count} of {loo.rows.size} subsampled rows have Pareto k > {loo.good_k:.2f}; "
                            "its LOO estimate is unreliable there (consider K-fold CV or moment matching)")  # fmt: skip
    descriptions = {name: description for name, run in runs.items()
                    if (description := model_description(str(run.info.get("model", "")))) is not None}  # fmt: skip
    return Comparison(table=table, loo=loos, warnings=messages, descriptions=descriptions)
