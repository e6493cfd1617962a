"""The Dirichlet-mixture model: rows drawn from a K-component mixture of Dirichlets.

DESIGN.md §1: any prior over multinomials is approximated by a finite mixture
``sum_k w_k Dirichlet(alpha_k)`` (Dalal & Hall, 1983), and the mixture stays
conjugate; its closed-form update is :func:`models.closed_forms.mixture_posterior`.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from models.matrix import check_observe, observe_rows
from models.priors import component_strength_prior


def mixture(
    *,
    num_rows: int,
    num_cols: int,
    components: int = 2,
    probs=None,
    counts=None,
    total_count=None,
    observe: Sequence[str] = ("probs",),
    explicit: bool = False,
    epsilon: float = 1e-6,
):
    """A K-component Dirichlet mixture prior over rows.

    w        ~ Dirichlet(1_K)                          mixture weights
    m_k      ~ Dirichlet(1_C)                          component mean rows (plate ``component``)
    s        ~ sorted K iid LogNormal(log 2, 1.5)      strengths, s_1 < ... < s_K
    alpha_k  = s_k m_k                                 (deterministic site ``alpha``, (K, C))
    probs_r  ~ sum_k w_k Dirichlet(alpha_k)
    counts_r ~ sum_k w_k DirichletMultinomial(alpha_k, N_r)   collapsed,
          or ~ Multinomial(N_r, probs_r)                      explicit

    The component of each row is a discrete latent, marginalised out with
    ``MixtureGeneral`` (a logsumexp over components). Ordering the strengths
    fixes the labels (see :class:`models.priors.SortedLogNormal`). The
    observation options are those of :func:`models.matrix.observe_rows`.
    """
    check_observe(observe, probs=probs, counts=counts, total_count=total_count)
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(components)))
    with numpyro.plate("component", components):
        m = numpyro.sample("m", dist.Dirichlet(jnp.ones(num_cols)))
    s = numpyro.sample("s", component_strength_prior(components))
    alpha = numpyro.deterministic("alpha", s[:, None] * m)  # (K, C)
    with numpyro.plate("row", num_rows):
        observe_rows(
            dirichlet_mixture(w, alpha),
            lambda total, total_max: dirichlet_multinomial_mixture(w, alpha, total, total_max),
            probs=probs,
            counts=counts,
            total_count=total_count,
            observe=observe,
            explicit=explicit,
            epsilon=epsilon,
        )


def dirichlet_mixture(weights, alphas) -> dist.Distribution:
    """``sum_k w_k Dirichlet(alpha_k)`` over one row; ``alphas`` is ``(K, C)``."""
    components = [dist.Dirichlet(alphas[k]) for k in range(alphas.shape[0])]
    return dist.MixtureGeneral(dist.Categorical(probs=weights), components)


def dirichlet_multinomial_mixture(weights, alphas, total_count, total_count_max=None) -> dist.Distribution:
    """``sum_k w_k DirichletMultinomial(alpha_k, N)``; ``MixtureSameFamily`` refuses a support that depends on N."""
    components = [
        dist.DirichletMultinomial(alphas[k], total_count, total_count_max=total_count_max)
        for k in range(alphas.shape[0])
    ]
    return dist.MixtureGeneral(dist.Categorical(probs=weights), components)
