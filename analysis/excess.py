"""Excess code length: the bits per step an LLM's predictive wastes against the exact Bayesian predictive.

README, "Excess code length". A row ``r`` of an ICL log is the LLM's prediction
``p_r`` after the examples ``n_r`` (``k_r = sum(n_r)`` of them: the row's step).
Under a Dirichlet prior ``alpha`` the exact Bayesian predictive is

    q_r = (alpha + n_r) / (sum(alpha) + k_r),

and the excess of the row is ``KL(q_r || p_r)`` in bits
(:func:`bayesmatrix.analysis.metrics.kl_bits`): the expected extra code length,
per token, of coding with the LLM's ``p_r`` a next token drawn from ``q_r``.
``p_r`` is the log's probabilities of the categories *as they are*, not
renormalised over them: the mass the LLM puts on any other token (the log's
``<other>``) is code length wasted too, ``-log2(sum_c p_rc)`` above the KL to the
renormalised row, which is reported beside it. The excess is averaged over the
rows at each step, then over the steps: *excess bits per step*, the quantity
Chlon et al. (2025) report as 0.020 bits per step for Qwen2.5-7B on coin flips.

Two references:

- *fitted*: the effective prior of an ICL run (its ``alpha``; ``icl-framed``'s
  ``alpha`` of each row's framing level; ``icl-mixture``'s mixture, through its
  exact mixture predictive; ``icl-frequency``'s ``pseudocount * 1_C``). Every
  posterior draw gives a reference and an excess: the posterior mean and an
  ``inference.fit.INTERVAL_PROB`` equal-tailed interval. ``icl-general``'s
  decay and temperature are *not* applied: the reference is exact Bayes with
  the prior the run found, so the excess includes what decay and temperature
  cost. ``icl-none`` has no prior to update and no fitted reference.
- *stated*: a prior given outright: the log's task ``alpha`` (the prior the
  task's episodes are drawn from) or the caller's.

The interval is the posterior's uncertainty about ``alpha`` only; the rows are
the log's, and the standard error over episodes (:attr:`ExcessCodeLength.se`)
says how much another draw of episodes could move the mean.

Functions on arrays first (:func:`excess_bits_by_step`, :func:`bayes_references`),
then the wrappers on a log and a run (:func:`fitted_excess`, :func:`stated_excess`,
:func:`excess_of_runs`) and one line of words (:func:`excess_line`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from bayesmatrix.analysis.metrics import kl_bits, renormalise
from bayesmatrix.data.closed_forms import dirichlet_predictive, mixture_predictive
from bayesmatrix.data.errors import InputError

NUM_DRAWS = 400
"""Posterior draws an excess is computed from (evenly spaced over chains and draws)."""

_CHUNK_VALUES = 2**22
"""Most reference probabilities held at once (draws x rows x categories): 32 MiB of float64."""


def excess_bits_by_step(llm, bayes, position) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, by_step)``: the steps present (T,) and the mean over the rows at each step of
    ``KL(bayes_r || llm_r)`` in bits, (..., T).

    ``llm`` (rows, C) are the LLM's probabilities of the categories, not renormalised; ``bayes``
    (..., rows, C) the reference predictive of each row (leading axes: posterior draws);
    ``position`` (rows,) each row's step, the number of examples seen.
    """
    return mean_by_step(kl_bits(bayes, llm), position)


def mean_by_step(values, position) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, by_step)``: the steps present (T,) and the mean of per-row ``values`` (..., rows) over
    the rows at each step, (..., T)."""
    position, values = np.asarray(position), np.asarray(values)
    steps = np.unique(position)
    return steps, np.stack([values[..., position == step].mean(axis=-1) for step in steps], axis=-1)


def bayes_references(context_counts, *, alpha=None, framing=None, weights=None, chunk_start: int = 0):
    """(draws, rows, C): the exact Bayesian predictive of each row under each draw's prior.

    ``alpha`` (draws, C): one Dirichlet prior per draw; (draws, F, C) with ``framing`` (rows,): the
    prior of each row's framing level; (draws, K, C) with ``weights`` (draws, K): a Dirichlet-mixture
    prior, updated exactly (:func:`bayesmatrix.data.closed_forms.mixture_predictive`).
    """
    counts = np.asarray(context_counts, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    if weights is not None:
        return mixture_predictive(np.asarray(weights)[:, None, :], alpha[:, None], counts[None])
    if framing is not None:
        return dirichlet_predictive(alpha[:, np.asarray(framing)], counts[None])
    return dirichlet_predictive(alpha[:, None, :], counts[None])


class ExcessCodeLength(NamedTuple):
    """What :func:`fitted_excess` and :func:`stated_excess` return: excess bits of one reference."""

    label: str
    """What the reference is: a run's name (``"icl (nuts)"``) or ``"stated alpha = (2, 1)"``."""
    reference: str
    """``"fitted"`` (a run's effective prior, per posterior draw) or ``"stated"``."""
    steps: np.ndarray
    """(T,) the steps (examples seen) of the log's rows."""
    by_step: np.ndarray
    """(draws, T): mean excess bits over the rows at each step, per draw (one row for a stated prior)."""
    per_step: np.ndarray
    """(draws,): the mean of ``by_step`` over steps, excess bits per step."""
    renormalised: np.ndarray
    """(draws,): the same with the LLM's rows renormalised over the categories (the mass on other
    tokens forgiven)."""
    se: float
    """Standard error of the posterior-mean excess per step over episodes (NaN with one episode)."""

    @property
    def mean(self) -> float:
        return float(self.per_step.mean())

    def interval(self, prob: float | None = None) -> tuple[float, float]:
        """Equal-tailed interval of the excess per step over the draws (``inference.fit.INTERVAL_PROB``)."""
        return _interval(self.per_step, prob)

    def by_step_summary(self, prob: float | None = None) -> np.ndarray:
        """(3, T): the mean over draws and the interval's low and high at each step."""
        low, high = _interval(self.by_step, prob, axis=0)
        return np.stack([self.by_step.mean(axis=0), low, high])


def _interval(values, prob: float | None, axis=None):
    from bayesmatrix.inference.fit import INTERVAL_PROB

    tail = (1.0 - (INTERVAL_PROB if prob is None else prob)) / 2
    values = np.asarray(values)
    return np.quantile(values, tail, axis=axis), np.quantile(values, 1.0 - tail, axis=axis)


class _IclRows(NamedTuple):
    llm: np.ndarray  # (rows, C) the log's probabilities of the columns, not renormalised
    counts: np.ndarray  # (rows, C)
    position: np.ndarray  # (rows,)
    episode: np.ndarray | None  # (rows,)
    framing: np.ndarray | None  # (rows,)


def is_icl_log(log: os.PathLike | str) -> bool:
    """Whether ``log`` is an ICL log (it has ``context_counts``), the logs that have an excess code length."""
    from bayesmatrix.data.llmlog import read_log

    return "context_counts" in read_log(log)


def _icl_rows(ds, columns: Sequence[str] | None, file: str | None) -> _IclRows:
    from bayesmatrix.data.llmlog import OTHER

    file = file or ds.encoding.get("source") or "<in memory>"
    if "context_counts" not in ds:
        raise InputError("missing; excess code length needs an ICL log (episodes of in-context examples)",
                         file=file, field="context_counts")  # fmt: skip
    labels = [str(c) for c in ds["col"].values]
    columns = [c for c in labels if c != OTHER] if columns is None else list(columns)
    missing = [c for c in columns if c not in labels]
    if missing:
        raise InputError(f"has no column {missing[0]!r}, which the run models", file=file, field="col")
    index = [labels.index(c) for c in columns]
    counts = np.asarray(ds["context_counts"].values, dtype=np.float64)
    return _IclRows(
        llm=np.asarray(ds["probs"].values, dtype=np.float64)[:, index],
        counts=counts[:, index],
        position=np.asarray(ds["position"].values) if "position" in ds else counts.sum(axis=1).astype(int),
        episode=np.asarray(ds["episode"].values) if "episode" in ds else None,
        framing=np.asarray(ds["framing"].values, dtype=np.int64) if "framing" in ds else None,
    )


def _excess(label: str, reference: str, rows: _IclRows, references) -> ExcessCodeLength:
    """Excess of ``references`` (an iterable of (draws, rows, C) chunks) against the rows."""
    by_step, renormalised, row_kl = [], [], []
    llm_renormalised = renormalise(rows.llm)
    for bayes in references:
        kl = kl_bits(bayes, rows.llm)  # (draws, rows)
        steps, chunk = mean_by_step(kl, rows.position)
        by_step.append(chunk)
        renormalised.append(excess_bits_by_step(llm_renormalised, bayes, rows.position)[1].mean(axis=-1))
        row_kl.append(kl.sum(axis=0))
    by_step_all = np.concatenate(by_step)
    mean_row_kl = np.sum(row_kl, axis=0) / len(by_step_all)  # (rows,) the excess of each row, averaged over draws
    return ExcessCodeLength(label=label, reference=reference, steps=steps, by_step=by_step_all,
                            per_step=by_step_all.mean(axis=-1), renormalised=np.concatenate(renormalised),
                            se=_episode_se(mean_row_kl, rows))  # fmt: skip


def _episode_se(row_kl: np.ndarray, rows: _IclRows) -> float:
    """Standard error over episodes of the per-step mean: each episode's own mean over its steps."""
    from bayesmatrix.analysis.metrics import mean_and_mcse

    if rows.episode is None:
        return float("nan")
    episodes = np.unique(rows.episode)
    per_episode = np.array([row_kl[rows.episode == e].mean() for e in episodes])
    return float(mean_and_mcse(per_episode)[1]) if len(episodes) > 1 else float("nan")


def stated_excess(ds, alpha=None, *, file: str | None = None) -> ExcessCodeLength:
    """Excess bits per step of the log ``ds`` against exact Bayes with the stated prior ``alpha`` (C,).

    Without ``alpha``, the log's task ``alpha`` (the prior its episodes are drawn from); a log whose
    task states none (or states a mixture) is an :class:`InputError` on ``alpha``.
    """
    from bayesmatrix.data.llmlog import task_of

    rows = _icl_rows(ds, None, file)
    if alpha is None:
        task = task_of(ds, file)
        if "alpha" not in task:
            reason = "a mixture, not one Dirichlet" if "mixture" in task else "no prior"
            raise InputError(f"the log's task states {reason}; give the stated prior alpha", file=file,
                             field="alpha")  # fmt: skip
        alpha = task["alpha"]
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.shape != (rows.llm.shape[1],) or not np.all(np.isfinite(alpha)) or not np.all(alpha > 0):
        raise InputError(f"must be {rows.llm.shape[1]} positive numbers (one per category), got "
                         f"{', '.join(f'{a:g}' for a in np.ravel(alpha))}", file=file, field="alpha")  # fmt: skip
    label = "stated alpha = (" + ", ".join(f"{a:g}" for a in alpha) + ")"
    return _excess(label, "stated", rows, [bayes_references(rows.counts, alpha=alpha[None])])


def has_effective_prior(run) -> bool:
    """Whether a run's posterior holds an effective prior to update (``alpha``, or ``pseudocount``)."""
    posterior = run.datatree["posterior"]
    return "alpha" in posterior or "pseudocount" in posterior


def fitted_excess(run, ds, *, label: str | None = None, num_draws: int = NUM_DRAWS,
                  file: str | None = None) -> ExcessCodeLength:
    """Excess bits per step of the log ``ds`` against exact Bayes with the effective prior of ``run``
    (an :class:`inference.rundir.Run` fitted to it), one value per posterior draw (at most ``num_draws``).

    A run without an effective prior (``icl-none``; :func:`has_effective_prior`) is an
    :class:`InputError` naming the run.
    """
    from bayesmatrix.analysis.predictive import thinned_draws

    label = label or f"{run.info.get('model')} ({run.info.get('method')})"
    if not has_effective_prior(run):
        raise InputError(f"{run.info.get('model')} has no effective prior to update from (it does not update); "
                         "no fitted excess", file=str(run.path))  # fmt: skip
    posterior = run.datatree["posterior"]
    columns = [str(c) for c in posterior["col"].values] if "col" in posterior.coords else run.info.get("columns")
    rows = _icl_rows(ds, columns, file)
    draws = thinned_draws(posterior, num_draws)
    C = rows.llm.shape[1]
    framing = weights = None
    if "alpha" in posterior:
        alpha = draws["alpha"]
        prior_dims = posterior["alpha"].dims[2:]
        if prior_dims == ("framing", "col"):
            if rows.framing is None:
                raise InputError("missing; the run's prior is per framing level", file=file, field="framing")
            framing = rows.framing
        elif len(prior_dims) == 2:  # a mixture's components
            weights = draws["w"]
    else:  # icl-frequency: the uniform prior eps 1_C
        alpha = draws["pseudocount"][:, None] * np.ones(C)
    if alpha.shape[-1] != C:
        raise InputError(f"models {alpha.shape[-1]} columns, the log has {C}", file=str(run.path), field="col")
    per_draw = len(rows.llm) * C * (1 if weights is None else alpha.shape[1])
    size = max(1, _CHUNK_VALUES // max(1, per_draw))
    chunks = (bayes_references(rows.counts, alpha=alpha[start:start + size], framing=framing,
                               weights=None if weights is None else weights[start:start + size])
              for start in range(0, len(alpha), size))  # fmt: skip
    return _excess(label, "fitted", rows, chunks)


class RunExcess(NamedTuple):
    """One run's fitted excess in :func:`excess_of_runs`: the result, or why there is none."""

    label: str
    excess: ExcessCodeLength | None
    reason: str = ""


def excess_of_runs(runs: dict, log: os.PathLike | str, stated_alpha=None,
                   num_draws: int = NUM_DRAWS) -> tuple[list[RunExcess], ExcessCodeLength | None, str]:
    """The fitted excess of each run (name -> run directory or :class:`inference.rundir.Run`) on ``log``,
    and the stated one (``stated_alpha``, else the log's task ``alpha``; None and the reason where
    neither exists). A run fitted to another log is an :class:`InputError` naming it."""
    from bayesmatrix.data.llmlog import read_log
    from bayesmatrix.inference.prepare import model_spec
    from bayesmatrix.inference.rundir import Run, file_sha256, read_run

    name = Path(log).name
    ds = read_log(log)
    sha = file_sha256(log)
    _icl_rows(ds, None, name)  # not an ICL log: one error, before any run is read
    results = []
    for label, run in runs.items():
        run = run if isinstance(run, Run) else read_run(run)
        if run.info.get("data_sha256") != sha:
            raise InputError(f"was fitted to {run.info.get('data_file')!r}, not to {name}", file=str(run.path))
        try:
            in_context = model_spec(str(run.info.get("model", ""))).in_context
        except InputError:
            in_context = has_effective_prior(run)
        if not in_context:
            results.append(RunExcess(label, None, "not an in-context model"))
        elif not has_effective_prior(run):
            results.append(RunExcess(label, None, "the model does not update, so it has no effective prior"))
        else:
            results.append(RunExcess(label, fitted_excess(run, ds, label=label, num_draws=num_draws, file=name)))
    try:
        stated = stated_excess(ds, stated_alpha, file=name)
        reason = ""
    except InputError as error:
        if stated_alpha is not None:
            if error.field == "alpha":  # the caller's value, not a field of the log
                raise InputError(f"{error.reason} for the categories of {name}", field="stated_alpha") from None
            raise
        stated, reason = None, error.reason
    return results, stated, reason


def excess_line(excess: ExcessCodeLength) -> str:
    """One line of words: excess bits per step with its interval, the renormalised figure and the episodes' se."""
    from bayesmatrix.inference.fit import INTERVAL_PROB

    if excess.reference == "fitted":
        low, high = excess.interval()
        value = f"{excess.mean:.4g} [{low:.4g}, {high:.4g}] bits/step ({INTERVAL_PROB:.0%} interval over the posterior)"
        renormalised = f"{float(np.mean(excess.renormalised)):.4g}"
    else:
        value = f"{excess.mean:.4g} bits/step"
        renormalised = f"{float(excess.renormalised[0]):.4g}"
    se = f", ± {excess.se:.2g} over episodes" if np.isfinite(excess.se) else ""
    return f"{excess.label}: excess {value}{se}; renormalised over the categories {renormalised}"


def format_excess(results: Sequence[RunExcess], stated: ExcessCodeLength | None, reason: str = "") -> str:
    """The excess-code-length lines of :func:`excess_of_runs`, for ``compare`` and the report."""
    lines = ["Excess code length, KL(exact Bayes || LLM) per step, the LLM's rows not renormalised "
             "(mass on other tokens counts against it):"]  # fmt: skip
    for result in results:
        lines.append(f"  {excess_line(result.excess)}" if result.excess is not None
                     else f"  {result.label}: no fitted excess: {result.reason}")  # fmt: skip
    lines.append(f"  {excess_line(stated)}" if stated is not None else f"  stated prior: none: {reason}")
    return "\n".join(lines)
