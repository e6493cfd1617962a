"""Bayesian-consistency checks of an in-context predictive: exchangeability and the martingale property.

An exact Bayesian reading i.i.d. observations has two properties
that can be checked on any model without knowing its prior:

- **exchangeability**: its predictive depends on the multiset of observations,
  not on their order. The check shows the same multiset in several orders and
  measures the spread of the predictive across orders: the largest total
  variation between two orders, and the standard deviation of each category's
  probability (both 0 for an exact Bayesian);
- **martingale**: under its own predictive, its next predictive is on average
  its current one, ``E_{y ~ p_k}[p_{k+1}(y_1..y_k, y)] = p_k``. The check
  samples paths from the model's own predictive and, at each position, averages
  the next predictive over the next observation. The average over the
  ``C`` categories is taken exactly (weights ``p_k``, one predictive per
  category) rather than over a few sampled continuations: the same expectation
  without the sampling noise, so an exact Bayesian gives 0 up to float error.
  The gap is ``mean_c |p_k(c) - E[p_{k+1}(c)]|``; the Monte Carlo is over the
  sampled paths, and the standard error is over paths.

Everything is written against a *predictive callable*,
``predictive(observations) -> probs``: ``observations`` (N, k) integer category
indices (all rows the same length k, which may be 0), ``probs`` (N, C) the
predictive after them, rows summing to 1. :func:`updater_predictive` builds one
for the generalised Bayesian updater (exact Bayes at ``decay = 1``,
``temperature = 1``), :func:`task_predictive` one for a transformers model
reading a task rendering (SmolLM2 on ``data.tasks``, or a wind-tunnel model).

References: Falck, Wang & Holmes (2024), "Is in-context learning in large
language models Bayesian? A martingale perspective"; Gupta et al. (2025) on
coin-flip in-context learning; de Finetti's theorem for the exchangeability view.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from bayesmatrix.analysis.metrics import max_pairwise_total_variation, mean_and_mcse
from bayesmatrix.data.closed_forms import categorical

Predictive = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------
# Array functions
# ---------------------------------------------------------------------------


def order_spread(predictive_by_order) -> tuple[np.ndarray, np.ndarray]:
    """Spread of the predictive across orders of one multiset.

    ``predictive_by_order`` (M, P, C): the predictive after each of P orders of
    each of M multisets. Returns ``(max_tv (M,), sd (M, C))``: the largest total
    variation between two orders, and the standard deviation (ddof 0) of each
    category's probability across orders.
    """
    predictive_by_order = np.asarray(predictive_by_order, dtype=np.float64)
    return max_pairwise_total_variation(predictive_by_order), predictive_by_order.std(axis=-2)


def martingale_gap(current, next_by_category) -> np.ndarray:
    """``mean_c |p_k(c) - sum_y p_k(y) p_{k+1}(c | y)|``.

    ``current`` (..., C) is ``p_k``; ``next_by_category`` (..., C, C) holds in
    row ``y`` the next predictive after observing category ``y``. Returns (...).
    """
    current = np.asarray(current, dtype=np.float64)
    expected = np.einsum("...y,...yc->...c", current, np.asarray(next_by_category, dtype=np.float64))
    return np.abs(current - expected).mean(axis=-1)


# ---------------------------------------------------------------------------
# The checks, on a predictive callable
# ---------------------------------------------------------------------------


class Exchangeability(NamedTuple):
    """What :func:`exchangeability` returns."""

    orders: np.ndarray
    """(M, P, k) int: the observations of each multiset in each order (order 0 as given)."""
    predictive: np.ndarray
    """(M, P, C): the predictive after each order."""
    max_tv: np.ndarray
    """(M,): the largest total variation between two orders of each multiset."""
    sd: np.ndarray
    """(M, C): the standard deviation of each category's probability across orders."""
    mean_max_tv: float
    """Mean of ``max_tv`` over multisets (0 for an exact Bayesian)."""
    mcse_max_tv: float
    """Its Monte Carlo standard error (over multisets)."""
    mean_sd: float
    """Mean of ``sd`` over multisets and categories."""


def permuted_orders(multisets, num_orders: int, seed: int = 0, keep_last: bool = False) -> np.ndarray:
    """Each multiset (rows of ``multisets`` (M, k)) in ``num_orders`` orders: (M, num_orders, k).

    Order 0 is the row as given; the others are random permutations of it, or
    with ``keep_last`` of all but its last observation, which stays last.
    """
    multisets = np.asarray(multisets, dtype=np.int64)
    if multisets.ndim != 2 or multisets.shape[0] < 2:
        raise ValueError("multisets must be (M, k) with M >= 2")
    if num_orders < 2:
        raise ValueError("num_orders must be at least 2")
    rng = np.random.default_rng(seed)
    orders = np.repeat(multisets[:, None], num_orders, axis=1)  # (M, num_orders, k), each order as given
    permuted = multisets.shape[1] - 1 if keep_last else multisets.shape[1]
    for order in range(1, num_orders):
        orders[:, order, :permuted] = rng.permuted(multisets[:, :permuted], axis=1)
    return orders


def predictive_by_order(predictive: Predictive, orders) -> np.ndarray:
    """``predictive`` after each order of :func:`permuted_orders` (M, P, k), in one call: (M, P, C)."""
    M, P, k = orders.shape
    return np.asarray(predictive(orders.reshape(M * P, k)), dtype=np.float64).reshape(M, P, -1)


def exchangeability(predictive: Predictive, multisets, num_orders: int = 8, seed: int = 0) -> Exchangeability:
    """Show each multiset (rows of ``multisets`` (M, k)) in ``num_orders`` orders and measure the spread.

    Order 0 is the row as given; the others are random permutations of it (:func:`permuted_orders`).
    """
    orders = permuted_orders(multisets, num_orders, seed)
    probs = predictive_by_order(predictive, orders)
    max_tv, sd = order_spread(probs)
    mean_tv, mcse_tv = mean_and_mcse(max_tv)
    return Exchangeability(
        orders=orders,
        predictive=probs,
        max_tv=max_tv,
        sd=sd,
        mean_max_tv=float(mean_tv),
        mcse_max_tv=float(mcse_tv),
        mean_sd=float(sd.mean()),
    )


class Martingale(NamedTuple):
    """What :func:`martingale` returns."""

    paths: np.ndarray
    """(N, K) int: observations sampled from the predictive itself (after the ``start`` prefix)."""
    predictive: np.ndarray
    """(N, K + 1, C): ``p_k`` along each path, k = 0..K sampled observations."""
    expected_next: np.ndarray
    """(N, K, C): ``E_{y ~ p_k}[p_{k+1}]`` at each position."""
    gap: np.ndarray
    """(N, K): ``mean_c |p_k(c) - E[p_{k+1}(c)]|`` (0 for an exact Bayesian)."""
    mean_gap: float
    """Mean gap over paths and positions."""
    mcse_gap: float
    """Its Monte Carlo standard error: over paths, of each path's mean gap."""
    gap_by_position: np.ndarray
    """(K,): mean gap at each position, over paths."""
    mcse_by_position: np.ndarray
    """(K,): its Monte Carlo standard error."""


def martingale(
    predictive: Predictive,
    num_categories: int,
    num_paths: int = 16,
    length: int = 12,
    seed: int = 0,
    start=None,
    progress: bool = False,
) -> Martingale:
    """Sample ``num_paths`` paths of ``length`` observations from ``predictive`` itself and measure the gap.

    ``start`` (num_paths, k0) optionally fixes a prefix of observations every
    path begins with (the positions then count from the end of the prefix).
    Each step costs one call of ``predictive`` on ``num_paths * num_categories``
    sequences. ``progress`` shows a bar over positions (stderr).
    """
    import sys

    from tqdm import tqdm

    if num_paths < 2 or length < 1:
        raise ValueError("need at least two paths of at least one observation")
    rng = np.random.default_rng(seed)
    C = int(num_categories)
    paths = np.zeros((num_paths, 0), dtype=np.int64) if start is None else np.asarray(start, dtype=np.int64)
    if paths.shape[0] != num_paths:
        raise ValueError("start must have one row per path")
    prefix = paths.shape[1]
    current = np.asarray(predictive(paths), dtype=np.float64)  # (N, C)
    along = [current]
    expected, gaps = [], []
    for _ in tqdm(range(length), desc="martingale", unit="position", file=sys.stderr, disable=not progress, leave=False):
        # every path extended by every category: (N * C, k + 1)
        extended = np.concatenate([np.repeat(paths, C, axis=0), np.tile(np.arange(C), num_paths)[:, None]], axis=1)
        next_by_category = np.asarray(predictive(extended), dtype=np.float64).reshape(num_paths, C, C)
        expected.append(np.einsum("ny,nyc->nc", current, next_by_category))
        gaps.append(martingale_gap(current, next_by_category))
        drawn = categorical(rng, current)
        paths = np.concatenate([paths, drawn[:, None]], axis=1)
        current = next_by_category[np.arange(num_paths), drawn]
        along.append(current)
    gap = np.stack(gaps, axis=1)  # (N, K)
    mean_gap, mcse_gap = mean_and_mcse(gap.mean(axis=1))
    by_position, mcse_by_position = mean_and_mcse(gap, axis=0)
    return Martingale(
        paths=paths[:, prefix:],
        predictive=np.stack(along, axis=1),
        expected_next=np.stack(expected, axis=1),
        gap=gap,
        mean_gap=float(mean_gap),
        mcse_gap=float(mcse_gap),
        gap_by_position=by_position,
        mcse_by_position=mcse_by_position,
    )


# ---------------------------------------------------------------------------
# Predictive callables
# ---------------------------------------------------------------------------


def updater_predictive(alpha, decay: float = 1.0, temperature: float = 1.0) -> Predictive:
    """The generalised Bayesian updater (the ``icl-general`` model) as a predictive callable.

    ``(alpha + w_k) / (sum(alpha) + sum(w_k))`` tempered by ``temperature``, with
    recency-weighted counts ``w_k``; ``decay = 1, temperature = 1`` is exact Bayes.
    """
    from bayesmatrix.data.closed_forms import dirichlet_predictive, tempered, weighted_counts

    alpha = np.asarray(alpha, dtype=np.float64)

    def predictive(observations):
        observations = np.asarray(observations, dtype=np.int64)
        counts = weighted_counts(observations, len(alpha), decay)[:, -1]  # after all k observations
        return tempered(dirichlet_predictive(alpha, counts), temperature)

    return predictive


def task_predictive(loaded, task, batch_size: int = 32, strict: bool = False) -> Predictive:
    """The predictive of a transformers causal LM reading ``task``'s rendering, over its categories.

    ``loaded`` is a :class:`data.llm.LoadedModel` (SmolLM2, a wind-tunnel
    folder, ...); ``task`` a :class:`data.tasks.Task`. The prompt of a sequence is
    the one :func:`data.llm.log_task` reads its last row from, and the
    predictive is the next-token distribution restricted to the category
    tokens and renormalised (what the ICL models see of a log without ``<other>``).
    With ``strict`` the category probabilities are returned as they are, the
    softmax over the whole vocabulary read at the category tokens (rows sum to
    one less the mass on every other token).
    """
    import torch

    from bayesmatrix.data.llm import episode_tokens, task_category_tokens, task_column_ids

    column_ids = task_column_ids(loaded.tokenizer, task)  # refuses categories of several tokens
    categories = task_category_tokens(loaded.tokenizer, task)
    model = loaded.model
    device = next(model.parameters()).device
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}

    def predictive(observations):
        observations = np.asarray(observations, dtype=np.int64)
        tokens = [episode_tokens(loaded, task, row.tolist(), categories).token_ids for row in observations]
        probs = np.empty((len(tokens), len(column_ids)))
        # Sequences of one token length batch without padding, so no attention mask is needed.
        by_length: dict[int, list[int]] = {}
        for index, ids in enumerate(tokens):
            by_length.setdefault(len(ids), []).append(index)
        for indices in by_length.values():
            for start in range(0, len(indices), batch_size):
                batch = indices[start : start + batch_size]
                input_ids = torch.as_tensor([tokens[i] for i in batch], dtype=torch.long, device=device)
                with torch.inference_mode():
                    logits = model(input_ids=input_ids, use_cache=False, **keep_last).logits[:, -1].double()
                on_categories = torch.log_softmax(logits, dim=-1)[:, column_ids]
                on_categories = on_categories.exp() if strict else torch.softmax(on_categories, dim=-1)
                probs[batch] = on_categories.cpu().numpy()
        return probs

    return predictive


# ---------------------------------------------------------------------------
# Both checks on one model, for the demo and the report
# ---------------------------------------------------------------------------


class ConsistencyResult(NamedTuple):
    """Both checks on one model and task."""

    name: str
    """What was checked, e.g. ``"SmolLM2 (coin)"``."""
    categories: tuple[str, ...]
    exchangeability: Exchangeability
    martingale: Martingale


def check(
    name: str,
    predictive: Predictive,
    categories: Sequence[str],
    multisets,
    *,
    num_orders: int = 8,
    num_paths: int = 16,
    length: int = 12,
    seed: int = 0,
    progress: bool = False,
) -> ConsistencyResult:
    """Run :func:`exchangeability` on ``multisets`` and :func:`martingale` on paths of ``length``."""
    return ConsistencyResult(
        name=name,
        categories=tuple(categories),
        exchangeability=exchangeability(predictive, multisets, num_orders, seed),
        martingale=martingale(predictive, len(categories), num_paths, length, seed, progress=progress),
    )


def task_multisets(task, num_multisets: int, length: int, seed: int = 0) -> np.ndarray:
    """Observation multisets drawn as the logger draws episodes: ``pi ~ Dirichlet(alpha)``, then ``length`` draws."""
    from bayesmatrix.data.tasks import draw_episode

    return np.stack([draw_episode(task, length, seed, episode) for episode in range(num_multisets)])


def consistency_table(results: Sequence[ConsistencyResult]) -> Any:
    """One row per checked model: the two statistics with their Monte Carlo standard errors (pandas)."""
    import pandas as pd

    rows = []
    for result in results:
        ex, mg = result.exchangeability, result.martingale
        rows.append(
            {
                "model": result.name,
                "categories": len(result.categories),
                "multisets x orders": f"{ex.orders.shape[0]} x {ex.orders.shape[1]}",
                "examples per multiset": ex.orders.shape[2],
                "order spread: max TV": ex.mean_max_tv,
                "max TV mcse": ex.mcse_max_tv,
                "order spread: sd of p": ex.mean_sd,
                "paths x positions": f"{mg.gap.shape[0]} x {mg.gap.shape[1]}",
                "martingale gap": mg.mean_gap,
                "gap mcse": mg.mcse_gap,
            }
        )
    return pd.DataFrame(rows).set_index("model")
