"""Order and position: an in-context predictive across permutations of the same examples, against exact Bayes.

An exact Bayesian reading i.i.d. examples predicts from their multiset alone,
so its predictive after any order of the same examples is the same. A
transformer sees the order through its positional encoding (rotary in Llama
and SmolLM2, learned absolute in GPT-2) and, even without one, through the
causal mask: with two or more layers the first layer's output at a position
depends on the examples up to it, so a model with no positional encoding is
not exchangeable by construction either (only a one-layer one is). This module
measures, for M multisets shown in P orders each (README, "Order and
position"):

- the **order variance**: the variance over the P orders (``ddof = 1``) of
  each category's predictive probability (renormalised over the categories),
  averaged over categories, then over multisets, with its standard error over
  multisets (0 for an exact Bayesian); the largest total variation between two
  orders beside it (:func:`bayesmatrix.analysis.consistency.order_spread`);
- the **strict KL from Bayes**, ``KL(q || p)`` in bits with ``q`` the exact
  Bayesian predictive after the multiset and ``p`` the model's probabilities
  of the categories as they are (mass on any other token counts against it;
  :func:`bayesmatrix.analysis.metrics.kl_bits`), of the *raw* predictive (one
  order; the mean over the P orders of each order's KL, which is the expected
  KL of an order drawn at random) against the *permutation-averaged*
  predictive (the mean over the P orders of ``p``). KL is convex in ``p``, so
  the averaged one is never the larger; how much smaller it is says how much
  of the model's distance from Bayes is order noise. The renormalised figures
  beside them drop the mass outside the categories.

With ``keep_last`` the orders permute all but the last example, which stays
last. A causal LM reads its predictive at the last example's position, so that
example enters twice, as one of the multiset and as the input the prediction
is made from; keeping it fixed leaves only the order of the others (all that a
one-layer model without positions cannot see).

Everything is written against the predictive callables of
:mod:`bayesmatrix.analysis.consistency` (strict ones: rows need not sum to 1).
The exact Bayesian predictive is that of the task's stated prior
(:func:`bayes_predictive`): for a wind tunnel its world's prior, which its
sequences are drawn from, so the reference is exact; for an LLM task such as
``coin`` the task's ``alpha`` (uniform unless set), a stated prior the LLM was
never trained on.

Reference: Chlon et al. (2025), "LLMs are Bayesian in expectation, not in
realization" (order variance about 1e-8 to 1e-6 with positional encodings,
about 1e-16 without).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from bayesmatrix.analysis.consistency import Predictive, order_spread, permuted_orders, predictive_by_order
from bayesmatrix.analysis.metrics import kl_bits, mean_and_mcse, renormalise
from bayesmatrix.data.atomic import write_rows_atomic
from bayesmatrix.data.closed_forms import mixture_predictive, weighted_counts
from bayesmatrix.data.errors import InputError

# ---------------------------------------------------------------------------
# Array functions
# ---------------------------------------------------------------------------


def order_variance(probs_by_order) -> np.ndarray:
    """The variance (``ddof = 1``) over orders of each category's probability: (M, P, C) -> (M, C)."""
    probs_by_order = np.asarray(probs_by_order, dtype=np.float64)
    return probs_by_order.var(axis=-2, ddof=1)


class OrderStatistics(NamedTuple):
    """What :func:`order_statistics` returns; the means are over multisets, the standard errors over them too."""

    variance: np.ndarray
    """(M, C): the order variance of each category's renormalised probability."""
    max_tv: np.ndarray
    """(M,): the largest total variation between two orders (renormalised)."""
    raw_kl: np.ndarray
    """(M,): strict ``KL(bayes || p)`` in bits, averaged over the orders (one order's expected KL)."""
    averaged_kl: np.ndarray
    """(M,): strict ``KL(bayes || mean over orders of p)`` in bits."""
    raw_kl_renormalised: np.ndarray
    """(M,): as ``raw_kl`` with ``p`` renormalised over the categories."""
    averaged_kl_renormalised: np.ndarray
    """(M,): as ``averaged_kl`` with each order's ``p`` renormalised before averaging."""
    outside: np.ndarray
    """(M,): the mass outside the categories, averaged over orders."""
    mean_variance: float
    se_variance: float
    mean_max_tv: float
    se_max_tv: float
    mean_raw_kl: float
    se_raw_kl: float
    mean_averaged_kl: float
    se_averaged_kl: float
    mean_kl_reduction: float
    """Mean of ``raw_kl - averaged_kl`` (never negative)."""
    se_kl_reduction: float
    """Its standard error (paired over multisets)."""
    mean_raw_kl_renormalised: float
    mean_averaged_kl_renormalised: float
    mean_outside: float


def order_statistics(probs_by_order, bayes) -> OrderStatistics:
    """Order variance and the raw and permutation-averaged strict KL from ``bayes``.

    ``probs_by_order`` (M, P, C): the model's category probabilities as they
    are after each of P orders of M multisets; ``bayes`` (M, C): the exact
    Bayesian predictive after each multiset.
    """
    probs = np.asarray(probs_by_order, dtype=np.float64)
    bayes = np.asarray(bayes, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[1] < 2 or bayes.shape != (probs.shape[0], probs.shape[2]):
        raise ValueError(f"need probs (M, P >= 2, C) and bayes (M, C); got {probs.shape} and {bayes.shape}")
    renormalised = renormalise(probs)
    variance = order_variance(renormalised)
    max_tv, _ = order_spread(renormalised)
    raw_kl = kl_bits(bayes[:, None], probs).mean(axis=1)
    averaged_kl = kl_bits(bayes, probs.mean(axis=1))
    raw_kl_renormalised = kl_bits(bayes[:, None], renormalised).mean(axis=1)
    averaged_kl_renormalised = kl_bits(bayes, renormalised.mean(axis=1))
    outside = (1.0 - probs.sum(axis=-1)).mean(axis=1)

    def mean_se(values) -> tuple[float, float]:
        mean, se = mean_and_mcse(values)
        return float(mean), float(se)

    mean_variance, se_variance = mean_se(variance.mean(axis=-1))
    mean_max_tv, se_max_tv = mean_se(max_tv)
    mean_raw_kl, se_raw_kl = mean_se(raw_kl)
    mean_averaged_kl, se_averaged_kl = mean_se(averaged_kl)
    mean_reduction, se_reduction = mean_se(raw_kl - averaged_kl)
    return OrderStatistics(
        variance=variance,
        max_tv=max_tv,
        raw_kl=raw_kl,
        averaged_kl=averaged_kl,
        raw_kl_renormalised=raw_kl_renormalised,
        averaged_kl_renormalised=averaged_kl_renormalised,
        outside=outside,
        mean_variance=mean_variance,
        se_variance=se_variance,
        mean_max_tv=mean_max_tv,
        se_max_tv=se_max_tv,
        mean_raw_kl=mean_raw_kl,
        se_raw_kl=se_raw_kl,
        mean_averaged_kl=mean_averaged_kl,
        se_averaged_kl=se_averaged_kl,
        mean_kl_reduction=mean_reduction,
        se_kl_reduction=se_reduction,
        mean_raw_kl_renormalised=float(raw_kl_renormalised.mean()),
        mean_averaged_kl_renormalised=float(averaged_kl_renormalised.mean()),
        mean_outside=float(outside.mean()),
    )


# ---------------------------------------------------------------------------
# The measurement, on a predictive callable
# ---------------------------------------------------------------------------


class OrderSensitivity(NamedTuple):
    """What :func:`order_sensitivity` returns."""

    orders: np.ndarray
    """(M, P, k) int: the examples of each multiset in each order (order 0 as given)."""
    probs: np.ndarray
    """(M, P, C): the predictive after each order, as the callable gave it (strict: not renormalised)."""
    bayes: np.ndarray
    """(M, C): the exact Bayesian predictive after each multiset."""
    statistics: OrderStatistics
    keep_last: bool
    """Whether the orders kept each multiset's last example last."""


def bayes_predictive(task) -> Predictive:
    """The exact Bayesian predictive of ``task``'s stated prior (its ``alpha``, or its Dirichlet mixture)."""
    if task.mixture is None:
        weights, alphas = np.ones(1), np.asarray([task.prior], dtype=np.float64)
    else:
        weights = np.asarray([weight for weight, _ in task.mixture], dtype=np.float64)
        alphas = np.asarray([alpha for _, alpha in task.mixture], dtype=np.float64)
    num_categories = alphas.shape[1]

    def predictive(observations):
        counts = weighted_counts(np.asarray(observations, dtype=np.int64), num_categories)[:, -1]
        return mixture_predictive(weights, alphas, counts)

    return predictive


def order_sensitivity(
    predictive: Predictive, bayes: Predictive, multisets, num_orders: int = 16, seed: int = 0, keep_last: bool = False
) -> OrderSensitivity:
    """Show each multiset (rows of ``multisets`` (M, k)) in ``num_orders`` orders; compare with ``bayes``.

    ``predictive`` should be strict (a model's category probabilities as they
    are); ``bayes`` is evaluated on the multisets as given (it must not depend
    on order). The orders are :func:`bayesmatrix.analysis.consistency.permuted_orders`'s
    (with ``keep_last``, of all but the last example).
    """
    orders = permuted_orders(multisets, num_orders, seed, keep_last)
    probs = predictive_by_order(predictive, orders)
    reference = np.asarray(bayes(orders[:, 0]), dtype=np.float64)
    statistics = order_statistics(probs, reference)
    return OrderSensitivity(orders=orders, probs=probs, bayes=reference, statistics=statistics, keep_last=keep_last)


# ---------------------------------------------------------------------------
# Models by name, for the command and the shipped table
# ---------------------------------------------------------------------------


class OrderCase(NamedTuple):
    """One model read on one task."""

    name: str
    """What the user named (``windtunnel:dirichlet-nope``, ``smollm2``, a folder, a hub id)."""
    loaded: Any
    """A :class:`bayesmatrix.data.llm.LoadedModel`."""
    task: Any
    """The :class:`bayesmatrix.data.tasks.Task` its prompts render."""
    positions: str
    """Its positional encoding, in words (:func:`positional_encoding`)."""
    parameters: int


def positional_encoding(config) -> str:
    """``"rotary"``, ``"learned absolute"``, ``"none"`` or ``"unknown"``, read from a transformers config."""
    no_rope = getattr(config, "no_rope_layers", None)
    if no_rope is not None:
        return "none" if not any(no_rope) else "rotary" if all(no_rope) else "rotary in some layers"
    if getattr(config, "model_type", None) == "gpt2":
        return "learned absolute"
    if getattr(config, "rope_parameters", None) or getattr(config, "rope_theta", None):
        return "rotary"
    return "unknown"


def load_case(spec: str, task_name: str, dtype: str = "float32") -> OrderCase:
    """``spec`` loaded, with its task: a wind-tunnel model's own world's, any other model's ``task_name``."""
    from bayesmatrix.data.catalog import WINDTUNNEL_RECORD, resolve
    from bayesmatrix.data.llm import LoadedModel, load_model
    from bayesmatrix.data.tasks import get_task, windtunnel_task

    path = Path(resolve(spec, field="model"))
    if (path / WINDTUNNEL_RECORD).is_file():
        from bayesmatrix.data.windtunnel.modeling import load

        trained = load(path)
        loaded = LoadedModel(trained.model, trained.tokenizer, spec, None)
        task = windtunnel_task(trained.world)  # its prompts are "<bos> A C B", as it was trained
    else:
        loaded = load_model(spec, dtype=dtype)
        task = get_task(task_name)
    parameters = sum(parameter.numel() for parameter in loaded.model.parameters())
    return OrderCase(spec, loaded, task, positional_encoding(loaded.model.config), parameters)


def check_settings(num_multisets: int, num_examples: int, num_orders: int) -> None:
    """Refuse settings no measurement can have (an :class:`InputError` names the field)."""
    for field, value, least in (("num_multisets", num_multisets, 2), ("num_examples", num_examples, 1),
                                ("num_orders", num_orders, 2)):  # fmt: skip
        if value < least:
            raise InputError(f"must be at least {least}, not {value}", field=field)


def measure_case(case: OrderCase, num_multisets: int, num_examples: int, num_orders: int, seed: int = 0,
                 batch_size: int = 32, keep_last: bool = False) -> OrderSensitivity:
    """:func:`order_sensitivity` of a loaded model on multisets its task's prior draws (as the logger draws)."""
    from bayesmatrix.analysis.consistency import task_multisets, task_predictive

    check_settings(num_multisets, num_examples, num_orders)
    multisets = task_multisets(case.task, num_multisets, num_examples, seed)
    predictive = task_predictive(case.loaded, case.task, batch_size=batch_size, strict=True)
    return order_sensitivity(predictive, bayes_predictive(case.task), multisets, num_orders, seed, keep_last)


def reference_label(task) -> str:
    """The exact Bayesian reference in words: the task's stated prior."""
    if task.mixture is not None:
        return "stated mixture: " + " + ".join(f"{w:g} Dir({', '.join(f'{a:g}' for a in alpha)})"
                                               for w, alpha in task.mixture)  # fmt: skip
    return "stated Dir(" + ", ".join(f"{a:g}" for a in task.prior) + ")"


def order_row(case: OrderCase, result: OrderSensitivity) -> dict[str, Any]:
    """One row of the table (plain Python values, for JSON and CSV)."""
    s = result.statistics
    M, P, k = result.orders.shape
    return {
        "model": case.name,
        "positions": case.positions,
        "parameters": case.parameters,
        "task": case.task.name,
        "reference": reference_label(case.task),
        "multisets": M,
        "orders": P,
        "examples": k,
        "keep_last": result.keep_last,
        "order_variance": s.mean_variance,
        "order_variance_se": s.se_variance,
        "max_tv": s.mean_max_tv,
        "max_tv_se": s.se_max_tv,
        "raw_strict_kl_bits": s.mean_raw_kl,
        "raw_strict_kl_bits_se": s.se_raw_kl,
        "averaged_strict_kl_bits": s.mean_averaged_kl,
        "averaged_strict_kl_bits_se": s.se_averaged_kl,
        "kl_reduction_bits": s.mean_kl_reduction,
        "kl_reduction_bits_se": s.se_kl_reduction,
        "raw_kl_bits_renormalised": s.mean_raw_kl_renormalised,
        "averaged_kl_bits_renormalised": s.mean_averaged_kl_renormalised,
        "outside_mass": s.mean_outside,
    }


def format_order_table(rows: Sequence[dict[str, Any]]) -> str:
    """The table in words: one line per model."""
    header = (f"{'model':<28} {'positions':<17} {'params':>11}  {'order variance':>21}  {'max TV':>7}  "
              f"{'strict KL raw (bits)':>21}  {'averaged':>21}  {'renorm raw/avg':>19}")  # fmt: skip
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['model']:<28} {row['positions']:<17} {row['parameters']:>11,}  "
            f"{row['order_variance']:>10.2e} ± {row['order_variance_se']:<8.1e}  {row['max_tv']:>7.4f}  "
            f"{row['raw_strict_kl_bits']:>10.3e} ± {row['raw_strict_kl_bits_se']:<8.1e}  "
            f"{row['averaged_strict_kl_bits']:>10.3e} ± {row['averaged_strict_kl_bits_se']:<8.1e}  "
            f"{row['raw_kl_bits_renormalised']:>9.2e}/{row['averaged_kl_bits_renormalised']:<9.2e}"
        )
    first = rows[0] if rows else None
    if first is not None:
        kept = " (the last example kept last)" if first["keep_last"] else ""
        lines.append(f"{first['multisets']} multisets x {first['orders']} orders{kept} of {first['examples']} "
                     "examples; the reference is each task's stated prior; ± one standard error over multisets")  # fmt: skip
    return "\n".join(lines)


def write_order_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike, command: str | None = None) -> Path:
    """Write the rows atomically: ``.json`` (the command that made them, then the rows) or ``.csv`` (the rows)."""
    return write_rows_atomic(path, list(rows), {"command": command})
