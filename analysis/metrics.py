"""Distances and information between predictive rows: KL and entropy in bits, total variation.

Small pure functions on NumPy arrays; the last axis is the category axis and
leading axes broadcast. Tests, the consistency checks and the report all call
these, so a number means the same thing everywhere. :func:`kl_bits` is
:func:`bayesmatrix.data.closed_forms.kl_bits`, the wind tunnel's score: it
renormalises neither row (divide a model's row by its sum first to score the
renormalised row).
"""

from __future__ import annotations

import numpy as np

# One KL for the whole project: the wind tunnel's scorer (data layer) and the analysis use the same function.
from bayesmatrix.data.closed_forms import kl_bits

__all__ = ["entropy_bits", "kl_bits", "max_pairwise_total_variation", "mean_and_mcse", "renormalise", "total_variation"]


def _as_probs(p) -> np.ndarray:
    return np.asarray(p, dtype=np.float64)


def renormalise(probs) -> np.ndarray:
    """Rows divided by their sum over the last axis (a log's columns without ``<other>``, say)."""
    probs = _as_probs(probs)
    return probs / probs.sum(axis=-1, keepdims=True)


def entropy_bits(p) -> np.ndarray:
    """Shannon entropy ``-sum_c p_c log2 p_c`` in bits (0 log 0 = 0)."""
    p = _as_probs(p)
    positive = p > 0
    return -np.sum(np.where(positive, p * np.log2(np.where(positive, p, 1.0)), 0.0), axis=-1)


def total_variation(p, q) -> np.ndarray:
    """Total variation distance ``max_A |p(A) - q(A)| = sum_c |p_c - q_c| / 2``, in [0, 1]."""
    return 0.5 * np.sum(np.abs(_as_probs(p) - _as_probs(q)), axis=-1)


def max_pairwise_total_variation(rows) -> np.ndarray:
    """The largest total variation between any two of ``rows`` (..., n, C) along axis -2; returns (...)."""
    rows = _as_probs(rows)
    pairwise = total_variation(rows[..., :, None, :], rows[..., None, :, :])  # (..., n, n)
    return pairwise.max(axis=(-2, -1))


def mean_and_mcse(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mean of independent values and its Monte Carlo standard error ``sd / sqrt(n)``."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    sd = values.std(axis=axis, ddof=1) if n > 1 else np.full(np.mean(values, axis=axis).shape, np.nan)
    return values.mean(axis=axis), sd / np.sqrt(n)
