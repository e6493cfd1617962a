"""The Dirichlet-mixture model: rows drawn from a K-component mixture of Dirichlets.

README, "Models": any prior over multinomials is approximated by a finite mixture
``sum_k w_k Dirichlet(alpha_k)`` (Dalal & Hall, 1983), and the mixture stays
conjugate; its closed-form update is :func:`models.closed_forms.mixture_posterior`.
The components are sampled exchangeably and relabelled per draw
(:func:`labelled_components`).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from bayesmatrix.models.closed_forms import sort_components
from bayesmatrix.models.matrix import check_observe, observe_rows
from bayesmatrix.models.priors import strength_prior


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

    w_unlabelled    ~ Dirichlet(1_K)                 mixture weights
    m_unlabelled_k  ~ Dirichlet(1_C)                 component mean rows   (plate ``component``)
    s_unlabelled_k  ~ LogNormal(log 2, 1.5)          component strengths   (plate ``component``)
    w, m, s         = the components sorted by alpha_k[0]   (deterministic sites)
    alpha_k         = s_k m_k                        (deterministic site ``alpha``, (K, C))
    probs_r  ~ sum_k w_k Dirichlet(alpha_k)
    counts_r ~ sum_k w_k DirichletMultinomial(alpha_k, N_r)   collapsed,
          or ~ Multinomial(N_r, probs_r)                      explicit

    The component of each row is a discrete latent, marginalised out with
    ``MixtureGeneral`` (a logsumexp over components). The ``*_unlabelled``
    sites carry arbitrary labels, different in different chains; ``w``, ``m``,
    ``s`` and ``alpha`` are the same draws in one canonical order
    (:func:`models.closed_forms.sort_components`), which is what summaries and
    convergence diagnostics should read. The observation options are those of
    :func:`models.matrix.observe_rows`.
    """
    check_observe(observe, probs=probs, counts=counts, total_count=total_count)
    w_unlabelled = numpyro.sample("w_unlabelled", dist.Dirichlet(jnp.ones(components)))
    with numpyro.plate("component", components):
        m_unlabelled = numpyro.sample("m_unlabelled", dist.Dirichlet(jnp.ones(num_cols)))
        s_unlabelled = numpyro.sample("s_unlabelled", strength_prior())
    w, m, s, alpha = labelled_components(w_unlabelled, m_unlabelled, s_unlabelled)
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


def labelled_components(w_unlabelled, m_unlabelled, s_unlabelled):
    """Deterministic sites ``w``, ``m``, ``s``, ``alpha``: the components in canonical order."""
    w, m, s = sort_components(w_unlabelled, m_unlabelled, s_unlabelled)
    with numpyro.plate("component", w.shape[-1]):  # names their leading axis
        w = numpyro.deterministic("w", w)
        m = numpyro.deterministic("m", m)
        s = numpyro.deterministic("s", s)
        return w, m, s, numpyro.deterministic("alpha", s[:, None] * m)  # (K, C)


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
