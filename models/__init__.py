"""NumPyro models of the matrix, Dirichlet mixtures and in-context learning, with their closed forms.

Imports nothing of ours but JAX and NumPyro. Every model is a function of
keyword arrays whose observed sites (``probs``, ``counts``) default to
``None``, so one function serves prior predictive, fitting and posterior
predictive. :data:`MODELS` maps each model's name to its :class:`ModelSpec`;
``inference.prepare.prepare`` turns an LLM log into the keyword arguments.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

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
from bayesmatrix.models.icl import icl, icl_frequency, icl_general, icl_mixture, icl_none
from bayesmatrix.models.matrix import matrix
from bayesmatrix.models.mixture import mixture


class ModelSpec(NamedTuple):
    """One entry of :data:`MODELS`."""

    function: Callable[..., None]
    """The NumPyro model; call it with ``prepare(...).kwargs``."""
    observed: tuple[str, ...]
    """The observed sites it can take (each a keyword argument of ``function``)."""
    description: str
    """One line for listings and reports."""
    defaults: Mapping[str, Any]
    """The model's options (keyword arguments that are not data) and their defaults."""
    family: str
    """``"rows"`` (independent rows of the matrix), ``"embedding"`` (rows as a map of their prompt's
    embedding) or ``"icl"`` (predictions along in-context episodes)."""
    unlabelled: tuple[str, ...] = ()
    """Sample sites with arbitrary component labels (mixtures): leave them out of convergence
    diagnostics and summaries, and read their relabelled deterministic versions ``w``, ``m``, ``s``."""


_UNLABELLED = ("w_unlabelled", "m_unlabelled", "s_unlabelled")
_ROWS_DEFAULTS = {"observe": ("probs",), "explicit": False, "epsilon": 1e-6}
_ICL_DEFAULTS = {"observe": ("probs",), "epsilon": 1e-6}

MODELS: dict[str, ModelSpec] = {
    "matrix": ModelSpec(
        matrix, ("probs", "counts"), "every row drawn from one Dirichlet(s m)", _ROWS_DEFAULTS, "rows"
    ),
    "mixture": ModelSpec(
        mixture,
        ("probs", "counts"),
        "rows drawn from a K-component Dirichlet mixture",
        {**_ROWS_DEFAULTS, "components": 2},
        "rows",
        _UNLABELLED,
    ),
    "embedding": ModelSpec(
        embedding,
        ("probs", "counts"),
        "rows as a low-rank softmax map of the prompt embedding, softmax(b + U V^T e)",
        {"observe": ("probs",), "epsilon": 1e-6, "rank": 4, "batch_size": None},
        "embedding",
    ),
    "icl": ModelSpec(
        icl, ("probs", "counts"), "exact Bayesian updating from a Dirichlet prior", _ICL_DEFAULTS, "icl"
    ),
    "icl-general": ModelSpec(
        icl_general,
        ("probs", "counts"),
        "Bayesian updating with recency decay and temperature",
        _ICL_DEFAULTS,
        "icl",
    ),
    "icl-mixture": ModelSpec(
        icl_mixture,
        ("probs", "counts"),
        "exact Bayesian updating from a Dirichlet-mixture prior",
        {**_ICL_DEFAULTS, "components": 2},
        "icl",
        _UNLABELLED,
    ),
    "icl-none": ModelSpec(
        icl_none, ("probs", "counts"), "no updating: a constant predictive m", _ICL_DEFAULTS, "icl"
    ),
    "icl-frequency": ModelSpec(
        icl_frequency,
        ("probs", "counts"),
        "smoothed relative frequency of the examples",
        _ICL_DEFAULTS,
        "icl",
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
