"""Sufficient statistics of Dirichlet-multinomial counts: one pass, then a cost independent of the rows.

Reference: Sklar (2014), "Fast MLE computation for the Dirichlet multinomial"
(arXiv:1405.0099). For counts ``n_rc`` with row totals ``N_r`` and a prior
``Dirichlet(alpha)``, ``S = sum_c alpha_c``, the collapsed log-likelihood of all
rows is

    sum_r log DirMult(n_r | alpha, N_r)
      = sum_c sum_j H_c[j] log(alpha_c + j)  -  sum_j T[j] log(S + j)  +  const

    H_c[j] = #{rows r : n_rc > j}          (C, J), J = the largest count
    T[j]   = #{rows r : N_r > j}           (T,),   T = the largest row total
    const  = sum_r [log N_r! - sum_c log n_rc!]   (the multinomial coefficients)

because ``Gamma(a + n) / Gamma(a) = a (a + 1) ... (a + n - 1)`` (a rising
factorial): each row adds ``log(alpha_c + j)`` once for every ``j < n_rc``.
:func:`count_statistics` builds ``H``, ``T`` and the constant in one pass over
the counts (NumPy, exact integers); :func:`dirmult_log_likelihood` then costs
``C J + T`` logarithms, whatever the number of rows.

What it cannot give is a log-likelihood per row, which PSIS-LOO needs; the
model that uses it (``models.matrix.matrix`` with ``count_statistics``) is
fitted this way, and the per-row log-likelihood is computed afterwards by the
same model with per-row ``counts`` on the posterior draws (same latent sites).

Imports nothing of ours: NumPy to build, JAX to evaluate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class CountStatistics(NamedTuple):
    """The sufficient statistic of Dirichlet-multinomial rows (a JAX pytree of arrays)."""

    exceed: np.ndarray
    """(C, J) int: ``H_c[j]``, the number of rows whose count in column ``c`` exceeds ``j``."""
    total_exceed: np.ndarray
    """(T,) int: ``T[j]``, the number of rows whose total exceeds ``j``."""
    log_coefficient: np.ndarray
    """() float64: ``sum_r log(N_r! / prod_c n_rc!)``, the multinomial coefficients (no parameter in it)."""


def count_statistics(counts) -> CountStatistics:
    """The :class:`CountStatistics` of integer ``counts`` (rows, C); row totals are the row sums.

    One pass per column (``bincount``), so memory stays at one column's worth
    beyond the counts themselves.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(f"counts must be (rows, cols), got shape {counts.shape}")
    if counts.size and (not np.issubdtype(counts.dtype, np.integer) and not np.all(counts == np.round(counts))):
        raise ValueError("counts must be whole numbers")
    counts = counts.astype(np.int64, copy=False)
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")
    totals = counts.sum(axis=1)
    largest = int(counts.max()) if counts.size else 0
    largest_total = int(totals.max()) if totals.size else 0
    # log v! for v = 0..largest_total, exact to float64 rounding (no gammaln outside JAX here)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, largest_total + 1, dtype=np.float64)))])

    exceed = np.empty((counts.shape[1], largest), dtype=np.int64)
    log_coefficient = 0.0
    for c in range(counts.shape[1]):
        frequency = np.bincount(counts[:, c], minlength=largest + 1)  # rows with count v, v = 0..largest
        exceed[c] = _exceeding(frequency)
        log_coefficient -= float(frequency @ log_factorial[: largest + 1])
    total_frequency = np.bincount(totals, minlength=largest_total + 1)
    log_coefficient += float(total_frequency @ log_factorial)
    return CountStatistics(
        exceed=exceed, total_exceed=_exceeding(total_frequency), log_coefficient=np.asarray(log_coefficient)
    )


def _exceeding(frequency: np.ndarray) -> np.ndarray:
    """``#{v > j}`` for j = 0..len - 2 from the frequency of each value v = 0..len - 1."""
    return frequency[::-1].cumsum()[::-1][1:]


def dirmult_log_likelihood(alpha, statistics: CountStatistics):
    """``sum_r log DirMult(n_r | alpha, N_r)`` from :func:`count_statistics` of the counts.

    ``alpha`` is (C,) or has leading batch axes (..., C); returns a scalar or (...).
    Equal to the sum of ``numpyro.distributions.DirichletMultinomial(alpha, N_r).log_prob(n_r)``
    over rows, constant included.
    """
    alpha = jnp.asarray(alpha)
    exceed = jnp.asarray(statistics.exceed)
    total_exceed = jnp.asarray(statistics.total_exceed)
    steps = jnp.arange(exceed.shape[-1], dtype=alpha.dtype)  # j = 0..J-1
    total_steps = jnp.arange(total_exceed.shape[-1], dtype=alpha.dtype)
    # H_c[j] log(alpha_c + j), summed over columns and j; entries with H = 0 add nothing
    rising = jnp.sum(exceed * jnp.log(alpha[..., :, None] + steps), axis=(-2, -1))
    strength = alpha.sum(axis=-1)
    total_rising = jnp.sum(total_exceed * jnp.log(strength[..., None] + total_steps), axis=-1)
    return rising - total_rising + jnp.asarray(statistics.log_coefficient, dtype=alpha.dtype)
