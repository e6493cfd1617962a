"""The matrix model: every row of the LLM's matrix is a draw from one Dirichlet prior.

README, "Models": row ``r`` of the matrix is the next-token distribution ``pi_r``,
and ``pi_r ~ Dirichlet(alpha)`` with ``alpha = s * m``. What is observed of a
row is the LLM's reported row itself (``probs``), tokens sampled from it
(``counts``), or both; :func:`observe_rows` writes those sites once for this
model and the Dirichlet mixture. Counts observed alone can also enter through
their sufficient statistic (:mod:`models.sufficient`), at a cost independent
of the number of rows.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayesmatrix.models.closed_forms import clip_simplex
from bayesmatrix.models.priors import strength_prior
from bayesmatrix.models.sufficient import CountStatistics, dirmult_log_likelihood

OBSERVABLE = ("probs", "counts")


def matrix(
    *,
    num_rows: int,
    num_cols: int,
    probs=None,
    counts=None,
    total_count=None,
    observe: Sequence[str] = ("probs",),
    explicit: bool = False,
    epsilon: float = 1e-6,
    count_statistics: CountStatistics | None = None,
):
    """One Dirichlet prior over all rows.

    m       ~ Dirichlet(1_C)                 prior mean row
    s       ~ LogNormal(log 2, 1.5)          strength S = sum(alpha)
    alpha   = s m                            (deterministic site)
    probs_r ~ Dirichlet(alpha)               the row pi_r, observed as the LLM's row
    counts_r ~ DirichletMultinomial(alpha, N_r)   pi_r integrated out (collapsed)
          or ~ Multinomial(N_r, probs_r)          when probs_r is a site (explicit)

    See :func:`observe_rows` for which sites ``observe`` and ``explicit`` create.

    ``count_statistics`` (:func:`models.sufficient.count_statistics` of the
    counts), given instead of ``counts`` and ``total_count`` with
    ``observe=("counts",)``: the collapsed likelihood of all rows enters as the
    one factor ``counts_sufficient``, equal to the sum of the per-row
    ``counts`` log-likelihoods, at a cost independent of ``num_rows``. The
    posterior is the same; the pointwise log-likelihood (LOO) and predictive
    checks come from this function called with per-row ``counts`` on the draws.
    """
    if count_statistics is not None:
        _check_sufficient(observe, explicit, counts=counts, probs=probs)
    else:
        check_observe(observe, probs=probs, counts=counts, total_count=total_count)
    m = numpyro.sample("m", dist.Dirichlet(jnp.ones(num_cols)))
    s = numpyro.sample("s", strength_prior())
    alpha = numpyro.deterministic("alpha", s * m)
    if count_statistics is not None:
        numpyro.factor("counts_sufficient", dirmult_log_likelihood(alpha, count_statistics))
        return
    with numpyro.plate("row", num_rows):
        observe_rows(
            dist.Dirichlet(alpha),
            lambda total, total_max: dist.DirichletMultinomial(alpha, total, total_count_max=total_max),
            probs=probs,
            counts=counts,
            total_count=total_count,
            observe=observe,
            explicit=explicit,
            epsilon=epsilon,
        )


def observe_rows(
    row_prior: dist.Distribution,
    collapsed_counts: Callable[..., dist.Distribution],
    *,
    probs,
    counts,
    total_count,
    observe: Sequence[str],
    explicit: bool,
    epsilon: float,
) -> None:
    """The observation sites of a row, inside the caller's ``row`` plate.

    - ``observe=("probs",)``: ``probs_r ~ row_prior`` — the LLM's reported row
      is the row ``pi_r`` itself, clipped at ``epsilon`` (see
      :func:`models.closed_forms.clip_simplex`).
    - ``observe=("counts",)``: ``counts_r ~ collapsed_counts(N_r)``, the row
      integrated out analytically (Dirichlet-multinomial); with ``explicit=True``
      the row is a latent site instead, ``probs_r ~ row_prior`` and
      ``counts_r ~ Multinomial(N_r, probs_r)`` (for comparison: it samples worse).
    - ``observe=("probs", "counts")``: the joint density of both, the row
      observed and the counts drawn from it: ``probs_r ~ row_prior``,
      ``counts_r ~ Multinomial(N_r, probs_r)``. Given the row, the counts carry
      no further information about the prior, so they change nothing in the
      posterior; they are kept so that predictive checks and LOO can use them.
      (Treating the two as independent views of the prior would count one row
      twice.)
    """
    row = None
    if "probs" in observe or explicit:
        observed_row = None if probs is None else clip_simplex(probs, epsilon)
        row = numpyro.sample("probs", row_prior, obs=observed_row)
    if "counts" in observe:
        total_max = _static_max(total_count)
        if row is None:
            numpyro.sample("counts", collapsed_counts(total_count, total_max), obs=counts)
        else:
            numpyro.sample("counts", dist.Multinomial(total_count, probs=row, total_count_max=total_max), obs=counts)


def _static_max(total_count) -> int | None:
    """The largest number of trials, known before tracing: sampling counts under jit needs it."""
    try:
        return int(np.max(np.asarray(total_count)))
    except jax.errors.TracerArrayConversionError:  # traced model arguments (jit_model_args=True)
        return None


def _check_sufficient(observe: Sequence[str], explicit: bool, *, counts, probs) -> None:
    if tuple(observe) != ("counts",) or explicit:
        raise ValueError("count_statistics stand for collapsed counts alone: observe=('counts',), explicit=False")
    if counts is not None or probs is not None:
        raise ValueError("give count_statistics instead of counts (and no probs), not both")


def check_observe(observe: Sequence[str], *, probs, counts, total_count) -> None:
    unknown = sorted(set(observe) - set(OBSERVABLE))
    if not observe or unknown:
        raise ValueError(f"observe must name one or both of {OBSERVABLE}, got {tuple(observe)}")
    if probs is not None and "probs" not in observe:
        raise ValueError("probs given but not in observe")
    if counts is not None and "counts" not in observe:
        raise ValueError("counts given but not in observe")
    if "counts" in observe and total_count is None:
        raise ValueError("observing counts needs total_count, the number of sampled tokens per row")
