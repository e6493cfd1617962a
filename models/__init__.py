"""NumPyro models of the matrix, Dirichlet mixtures and in-context learning, with their closed forms.

Imports nothing of ours but JAX and NumPyro. Every model is a function of
keyword arrays whose observed sites (``probs``, ``counts``) default to
``None``, so one function serves prior predictive, fitting and posterior
predictive. Plates name the models' axes (``row``, ``component``, ``col``,
``feature``, ``rank``). :data:`MODELS` maps each model's name to its
:class:`ModelSpec`; ``bayesmatrix.inference.prepare.prepare`` builds the
keyword arguments a model's function takes from an LLM log. A model of your
own is a function and one entry here (README, "Add your own model").
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

from bayesmatrix.models.closed_forms import (
    clip_simplex,
    decayed_counts,
    dirichlet_predictive,
    frequency_predictive,
    log_evidence,
    mixture_posterior,
    mixture_predictive,
    sort_components,
    tempered,
)
from bayesmatrix.models.embedding import embedding
from bayesmatrix.models.icl import icl, icl_framed, icl_frequency, icl_general, icl_mixture, icl_none
from bayesmatrix.models.matrix import matrix
from bayesmatrix.models.mixture import mixture


class ModelSpec(NamedTuple):
    """One entry of :data:`MODELS`: a model's function and what the layers above need to know of it."""

    function: Callable[..., None]
    """The NumPyro model. Its keyword parameters say which inputs ``prepare`` builds from a log
    (``num_rows``, ``num_cols``, ``context_counts``, ``embedding``, ``probs``, ...)."""
    description: str
    """One line for listings and reports: what the model says about the LLM."""
    observed: tuple[str, ...] = ("probs",)
    """The observed sites it can take (each a keyword parameter of ``function``)."""
    event_dims: Mapping[str, tuple[str, ...]] = {}
    """Names of the event axes of sites, the axes no plate can name (a Dirichlet's simplex axis):
    ``{"m": ("col",)}``. Plates name every other axis; ``probs`` and ``counts`` are rows over ``col``."""
    unlabelled: tuple[str, ...] = ()
    """Sample sites with arbitrary component labels (mixtures): left out of convergence
    diagnostics and summaries, which read their relabelled deterministic versions (``w``, ``m``, ``s``)."""
    in_context: bool = False
    """Its rows are predictions along in-context episodes (an ICL log): the report draws its
    fitted updater along an episode."""
    exact_bayes: bool = False
    """Its updater is exact Bayesian updating from a Dirichlet prior: the report measures the
    LLM's distance in bits from its fit."""


_ROWS = ("probs", "counts")
_PRIOR_DIMS = {"m": ("col",), "alpha": ("col",)}
_MIXTURE_DIMS = {"w_unlabelled": ("component",), "m_unlabelled": ("col",), "m": ("col",), "alpha": ("col",)}
_UNLABELLED = ("w_unlabelled", "m_unlabelled", "s_unlabelled")

MODELS: dict[str, ModelSpec] = {
    "matrix": ModelSpec(matrix, "every row drawn from one Dirichlet(s m)", _ROWS, _PRIOR_DIMS),
    "mixture": ModelSpec(
        mixture, "rows drawn from a K-component Dirichlet mixture", _ROWS, _MIXTURE_DIMS, _UNLABELLED
    ),
    "embedding": ModelSpec(
        embedding,
        "rows as a low-rank softmax map of the prompt embedding, softmax(b + U V^T e)",
        _ROWS,
        {"b": ("col",)},
    ),
    "icl": ModelSpec(
        icl, "exact Bayesian updating from a Dirichlet prior", _ROWS, _PRIOR_DIMS, in_context=True, exact_bayes=True
    ),
    "icl-framed": ModelSpec(
        icl_framed,
        "exact Bayesian updating from a Dirichlet prior of its own per framing level of the prompt",
        _ROWS,
        _PRIOR_DIMS,
        in_context=True,
        exact_bayes=True,
    ),
    "icl-general": ModelSpec(
        icl_general, "Bayesian updating with recency decay and temperature", _ROWS, _PRIOR_DIMS, in_context=True
    ),
    "icl-mixture": ModelSpec(
        icl_mixture,
        "exact Bayesian updating from a Dirichlet-mixture prior",
        _ROWS,
        _MIXTURE_DIMS,
        _UNLABELLED,
        in_context=True,
    ),
    "icl-none": ModelSpec(icl_none, "no updating: a constant predictive m", _ROWS, {"m": ("col",)}, in_context=True),
    "icl-frequency": ModelSpec(
        icl_frequency, "smoothed relative frequency of the examples", _ROWS, in_context=True
    ),
}

__all__ = [
    "MODELS",
    "ModelSpec",
    "clip_simplex",
    "decayed_counts",
    "dirichlet_predictive",
    "embedding",
    "frequency_predictive",
    "icl",
    "icl_framed",
    "icl_frequency",
    "icl_general",
    "icl_mixture",
    "icl_none",
    "log_evidence",
    "matrix",
    "mixture",
    "mixture_posterior",
    "mixture_predictive",
    "sort_components",
    "tempered",
]
