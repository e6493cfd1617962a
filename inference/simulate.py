"""Synthetic LLM logs drawn from the NumPyro models themselves, at known parameters.

A simulated log is a model's log by construction: the inputs a model takes
as given (in-context episodes, embeddings) are drawn first, in NumPy; then
:func:`draw_rows` runs the registered model forward with its latent sites
fixed at the true values (``numpyro.handlers.substitute``) and keeps what its
own observation sites ``probs`` and ``counts`` draw. The model's inputs come
from :func:`bayesmatrix.inference.prepare.prepare` on the log's skeleton, the
same function that feeds a fit. Simulation-based calibration
(:mod:`bayesmatrix.analysis.sbc`) draws its data sets the same way.

Every log has columns ``c0 .. c{C-1}`` and ``"<other>"`` and stores every
value it was drawn from as JSON in the attribute ``truth`` (layout below).
The inputs come from ``numpy.random.default_rng(seed)`` and the model's
sites from ``jax.random.PRNGKey(seed)``, in float64 whatever JAX's default
precision, so the same seed gives the same log (all but ``created``).

Kinds (C categories, rows r, episodes e, positions k)
-----------------------------------------------------

``matrix``: the ``matrix`` model with ``m = alpha / s``, ``s = sum(alpha)``,
or the ``mixture`` model when ``weights`` are given::

    probs_r  ~ Dirichlet(alpha)  or  sum_j w_j Dirichlet(alpha_j)
    counts_r ~ Multinomial(N, probs_r)                only when N > 0

The component each mixture row came from is kept in ``truth["components"]``.

``icl``: episodes from the world ``pi_e ~ Dirichlet(world_alpha)``,
``y_(e,1..K) ~ Categorical(pi_e)`` (the wind tunnel's
:class:`bayesmatrix.data.windtunnel.worlds.World`), then the LLM's rows from
the ``icl`` model (exact Bayes) or, when ``decay`` or ``temperature`` is not
1, from ``icl-general``::

    q_k     = tempered((alpha + w_k) / (sum(alpha) + sum(w_k)), temperature)
    probs_k ~ Dirichlet(tau * q_k)

With ``framing_alphas`` (F, C) the rows come from ``icl-framed`` instead:
episode ``e`` is under framing level ``f = e mod F`` (as ``bayesmatrix log``
poses a framed task), read with the prior ``framing_alphas[f]``; the world is
``Dirichlet(world_alpha)``, all ones unless given, the same for every level
(as a task's episodes are drawn from its own prior whatever the framing). The
log has a ``framing`` variable and a ``framing_levels`` attribute
(``[{"alpha": "8,2"}, ...]``). That model has neither decay nor temperature.

``icl-mixture``: episodes from the world mixture ``z_e ~ Categorical(world_w)``,
``pi_e ~ Dirichlet(world_alpha_(z_e))``, rows from the ``icl-mixture`` model
(the exact predictive of the prior ``sum_j w_j Dirichlet(alpha_j)``). That
model has no decay: a ``decay`` below 1 enters through its input, the model
reading the recency-weighted counts ``w_k`` in place of the raw counts (its
predictive is a function of the counts alone, and the conjugate formula holds
for non-integer counts). It has no temperature either, so ``temperature``
must be 1.

Each episode gives ``K + 1`` consecutive rows (k = 0..K) with ``episode = e``,
``position = k`` and ``context_counts`` the raw counts of ``y_1..y_k``, so
``y_(k+1)`` is the column where ``context_counts`` grows from row k to k + 1.

``embedding``: ``e_r ~ N(0, I_D)``, ``U_ci ~ N(0, 1/sqrt(rank))``,
``V_di ~ N(0, 1/sqrt(D))``, ``b_c ~ N(0, 1)`` (scales that give the logits
``U V^T e_r`` unit variance per entry), then the ``embedding`` model::

    probs_r  ~ Dirichlet(s * softmax(b + U V^T e_r))
    counts_r ~ Multinomial(N, probs_r)                only when N > 0

``prepare`` would hand the model centred, rotated, rescaled features of
``e_r``; the truth is stated in the log's own embedding coordinates, so the
model is run on ``e_r`` itself.

What the models do not contain is applied after them:

- ``other_mass`` (ICL kinds): the rows are scaled by ``1 - other_mass`` and
  ``<other>`` gets the rest. ``prepare`` drops ``<other>`` and renormalises,
  which gives back exactly the model's rows (the Dirichlet aggregation
  property), so a fit sees the model's own data.
- ``store_probs=False`` (matrix): the log's ``probs`` are the empirical
  frequencies ``counts_r / N`` (what sampling an LLM without
  log-probabilities gives); the model's rows are kept in ``truth["pi"]``.

NumPyro's Dirichlet clips every draw to ``[tiny, 1 - eps]`` of its float
type, so no probability is exactly 0 and none is NaN, even where a tempered
updater underflows to exact zeros (:func:`draw_rows`).

``truth`` layout (JSON; arrays as nested lists; ``kind`` names the simulator,
``model`` the registered model whose sites drew the rows)
-------------------------------------------------------------------------

- matrix: ``kind, model, seed, rows, cols, counts_per_row, probs_from ("pi"
  or "counts"), alpha (C,), m (C,), s``; a mixture has ``alpha (K, C), m (K,
  C), s (K,), w (K,), components (R,)``; ``pi (R, C)`` only when
  ``probs_from`` is ``"counts"``.
- icl: ``kind, model, seed, episodes, length, alpha, m, s, world_alpha,
  decay, temperature, tau, other_mass``; with framings ``alpha (F, C), m (F,
  C), s (F,)``, one row per level, and ``framing_levels``.
- icl-mixture: ``kind, model, seed, episodes, length, w, alpha (K, C), m (K,
  C), s (K,), world_w, world_alpha (K', C), world_components (E,), decay,
  temperature, tau, other_mass``.
- embedding: ``kind, model, seed, rows, cols, embed_dim, rank,
  counts_per_row, U (C, rank), V (D, rank), b (C,), s``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import xarray as xr

from bayesmatrix.data.closed_forms import weighted_counts
from bayesmatrix.data.errors import InputError, checked_seed
from bayesmatrix.data.llmlog import OTHER, make_log
from bayesmatrix.inference.prepare import prepare
from bayesmatrix.models import MODELS

KINDS = ("matrix", "icl", "icl-mixture", "embedding")
OBSERVATION_SITES = ("probs", "counts")


# ---------------------------------------------------------------------------
# The path every simulated log takes: skeleton log -> prepare -> the model's sites
# ---------------------------------------------------------------------------


class DrawnRows(NamedTuple):
    """What :func:`draw_rows` returns; with ``batched=True`` every array has a leading axis of draws."""

    probs: np.ndarray | None
    """(rows, C) float64: the model's ``probs`` site, or ``None`` where it has none."""
    counts: np.ndarray | None
    """(rows, C) int64: the model's ``counts`` site, or ``None`` where it is not observed."""
    sites: dict[str, np.ndarray]
    """Every sample and deterministic site of the run (``alpha``, a mixture's canonical ``w``, ...)."""
    components: np.ndarray | None
    """(rows,) int: for a mixture's rows, the component (in the model's canonical order) each came from."""


def model_inputs(
    model: str, skeleton: xr.Dataset, *, observe: Sequence[str] = ("probs",), inputs: Mapping[str, Any] | None = None,
    **prepare_options: Any,
) -> dict[str, Any]:
    """The keyword arguments of ``MODELS[model]`` on a skeleton log, with its observation sites left to draw.

    :func:`prepare` builds them (``prepare_options`` go to it), as for a fit;
    ``inputs`` then replace some of them.
    """
    kwargs = dict(prepare(skeleton, model, observe=observe, **prepare_options).kwargs)
    kwargs.update({site: None for site in OBSERVATION_SITES if site in kwargs})  # to be drawn
    kwargs.update(inputs or {})
    return kwargs


def draw_rows(
    model: str,
    skeleton: xr.Dataset,
    parameters: Mapping[str, Any],
    *,
    observe: Sequence[str] = ("probs",),
    seed: Any = 0,
    inputs: Mapping[str, Any] | None = None,
    batched: bool = False,
    **prepare_options: Any,
) -> DrawnRows:
    """The observation sites of ``MODELS[model]`` drawn on a log's inputs, its latent sites fixed at ``parameters``.

    ``skeleton`` is a log whose ``probs`` (and ``counts``, whose row totals are
    the number of tokens drawn) only give shapes; :func:`model_inputs` turns
    it into the model's keyword arguments. ``parameters`` must give every
    latent sample site of the model (``m``, ``s``, ``tau``, ...; deterministic
    sites such as ``alpha`` follow from them): the model is run forward under
    ``numpyro.handlers.substitute``. ``seed`` is an integer or a JAX key.
    ``batched=True``: every parameter has a leading axis of draws, and one
    compiled run draws a data set for each (as simulation-based calibration needs).
    """
    import jax
    import numpyro
    from numpyro import handlers

    function = MODELS[model].function
    kwargs = model_inputs(model, skeleton, observe=observe, inputs=inputs, **prepare_options)
    parameters = {name: np.asarray(value, dtype=np.float64) for name, value in parameters.items()}
    missing: list[str] = []

    def run(key, values):
        trace = handlers.trace(handlers.seed(handlers.substitute(function, data=values), key)).get_trace(**kwargs)
        missing[:] = [
            name for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"] and name not in values
            and name not in OBSERVATION_SITES
        ]
        sites = {name: site["value"] for name, site in trace.items() if site["type"] in ("sample", "deterministic")}
        intermediates = trace["probs"]["intermediates"] if "probs" in trace else []
        return sites, (intermediates[0] if intermediates else None)

    # Argument validation is off for the draw only: at an extreme temperature the tempered
    # updater underflows to exact zeros, a Dirichlet concentration of 0 whose draw is its
    # limit (that category gets the smallest positive float), though no density exists there.
    with jax.enable_x64(True), numpyro.validation_enabled(False):
        key = jax.random.PRNGKey(seed) if isinstance(seed, (int, np.integer)) else seed
        if batched:
            num_draws = len(next(iter(parameters.values())))
            sites, components = jax.jit(jax.vmap(run))(jax.random.split(key, num_draws), parameters)
        else:
            sites, components = run(key, parameters)
    if missing:
        raise ValueError(f"parameters of {model!r} missing: {', '.join(missing)}")
    sites = {name: np.asarray(value) for name, value in sites.items()}
    return DrawnRows(
        probs=sites["probs"].astype(np.float64) if "probs" in sites else None,
        counts=np.rint(sites["counts"]).astype(np.int64) if "counts" in sites else None,
        sites=sites,
        components=None if components is None else np.asarray(components),
    )


def prior_parameters(
    model: str, skeleton: xr.Dataset, num_draws: int, *, observe: Sequence[str] = ("probs",), seed: Any = 0,
    inputs: Mapping[str, Any] | None = None, **prepare_options: Any,
) -> dict[str, np.ndarray]:
    """``num_draws`` draws of the latent sample sites of ``MODELS[model]`` from its prior, on a skeleton's inputs.

    The values :func:`draw_rows` takes (``batched=True``): drawing the
    parameters here and the rows there is drawing from the prior predictive.
    """
    import jax
    from numpyro import handlers
    from numpyro.infer import Predictive

    function = MODELS[model].function
    kwargs = model_inputs(model, skeleton, observe=observe, inputs=inputs, **prepare_options)
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(seed) if isinstance(seed, (int, np.integer)) else seed
        trace = handlers.trace(handlers.seed(function, key)).get_trace(**kwargs)
        latent = [
            name for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"] and name not in OBSERVATION_SITES
        ]
        draws = Predictive(function, num_samples=num_draws, return_sites=latent)(key, **kwargs)
    return {name: np.asarray(draws[name], dtype=np.float64) for name in latent}


def rows_log(
    kind: str,
    num_cols: int,
    probs: np.ndarray | None = None,
    *,
    rows: int | None = None,
    counts: np.ndarray | None = None,
    other_mass: float = 0.0,
    seed: int = 0,
    truth: Mapping[str, Any] | None = None,
    **arrays: Any,
) -> xr.Dataset:
    """A simulated log with columns ``c0 .. c{C-1}`` and ``<other>`` from rows (rows, C) over the categories.

    ``probs=None`` gives a skeleton: ``rows`` uniform rows that only carry
    the shape (what :func:`draw_rows` reads). ``other_mass`` of every row goes to
    ``<other>``, the rest is scaled down; counts and ``context_counts`` get
    an empty ``<other>`` column. ``arrays`` (``episode``, ``embedding``, ...)
    go to :func:`bayesmatrix.data.llmlog.make_log` as they are.
    """
    rows = _rows_of(probs, counts, arrays) if rows is None else rows
    if probs is None:
        probs = np.full((rows, num_cols), 1.0 / num_cols)
    probs = np.concatenate([(1.0 - other_mass) * probs, np.full((rows, 1), other_mass)], axis=1)
    if "context_counts" in arrays:
        arrays["context_counts"] = _with_other(np.asarray(arrays["context_counts"]))
    return make_log(
        probs,
        [f"c{c}" for c in range(num_cols)] + [OTHER],
        model=f"simulate:{kind}",
        task={"kind": "simulate", "simulator": kind},
        counts=None if counts is None else _with_other(np.asarray(counts)),
        seed=seed,
        truth=None if truth is None else json.dumps(truth),
        **arrays,
    )


def _rows_of(probs, counts, arrays) -> int:
    for value in (probs, counts, *arrays.values()):
        if value is not None:
            return len(value)
    raise ValueError("a log needs at least one array with rows")


class Episodes(NamedTuple):
    """In-context episodes drawn from a world, as an ICL log's rows hold them."""

    tokens: np.ndarray
    """(episodes, K) int: ``y_(e,1..K)``."""
    context_counts: np.ndarray
    """(episodes * (K + 1), C) int: raw counts of ``y_1..y_k`` at row (e, k)."""
    episode: np.ndarray
    """(episodes * (K + 1),) int."""
    position: np.ndarray
    """(episodes * (K + 1),) int: k."""
    components: np.ndarray
    """(episodes,) int: the world's mixture component of each episode."""


def draw_episodes(
    rng: np.random.Generator, episodes: int, length: int, world_weights, world_alphas
) -> Episodes:
    """``episodes`` episodes of ``length`` observations from the world ``sum_j w_j Dirichlet(alpha_j)``.

    The world is a wind-tunnel world (:class:`bayesmatrix.data.windtunnel.worlds.World`),
    whose ``sample`` draws ``z_e``, ``pi_e`` and the tokens.
    """
    from bayesmatrix.data.windtunnel.worlds import World

    world_alphas = np.asarray(world_alphas, dtype=np.float64)
    world = World(
        name="simulate",
        categories=tuple(f"c{c}" for c in range(world_alphas.shape[1])),
        weights=tuple(float(w) for w in world_weights),
        alphas=tuple(tuple(float(a) for a in alpha) for alpha in world_alphas),
    )
    drawn = world.sample(rng, episodes, length)
    counts = weighted_counts(drawn.tokens, world.num_categories)  # (episodes, length + 1, C)
    return Episodes(
        tokens=drawn.tokens,
        context_counts=np.rint(counts).astype(np.int64).reshape(-1, world.num_categories),
        episode=np.repeat(np.arange(episodes), length + 1),
        position=np.tile(np.arange(length + 1), episodes),
        components=drawn.component,
    )


def _with_other(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values, np.zeros(values.shape[:-1] + (1,), dtype=values.dtype)], axis=-1)


# ---------------------------------------------------------------------------
# Simulators
# ---------------------------------------------------------------------------


def simulate_matrix(
    rows: int,
    alpha,
    *,
    weights=None,
    counts_per_row: int = 0,
    store_probs: bool = True,
    seed: int = 0,
) -> xr.Dataset:
    """Rows from the ``matrix`` model with ``alpha`` (C,), or the ``mixture`` model with ``weights`` (K,), ``alpha`` (K, C).

    ``counts_per_row = N > 0`` adds ``counts ~ Multinomial(N, probs_r)``.
    ``store_probs=False`` stores ``counts / N`` as ``probs`` (needs N > 0).
    """
    rows = _count(rows, "rows", minimum=1)
    counts_per_row = _count(counts_per_row, "counts_per_row", minimum=0)
    mixture = weights is not None
    if mixture:
        alpha = _positive_matrix(alpha, "alpha")
        weights = _weights(weights, "weights", len(alpha))
    else:
        alpha = _positive_vector(alpha, "alpha")
    C = alpha.shape[-1]
    if not store_probs and counts_per_row == 0:
        raise InputError("probs can be left out only when counts are drawn (counts_per_row > 0)", field="probs")
    observe = ("probs", "counts") if counts_per_row > 0 else ("probs",)
    counts = np.zeros((rows, C), dtype=np.int64)
    counts[:, 0] = counts_per_row  # only the totals matter: N tokens per row
    skeleton = rows_log("matrix", C, rows=rows, counts=counts if counts_per_row > 0 else None, seed=seed)
    strength = alpha.sum(axis=-1)
    parameters: dict[str, Any]
    if mixture:
        model = "mixture"
        parameters = {"w_unlabelled": weights, "m_unlabelled": alpha / strength[:, None], "s_unlabelled": strength}
        drawn = draw_rows(model, skeleton, parameters, observe=observe, seed=seed, components=len(alpha))
    else:
        model = "matrix"
        drawn = draw_rows(model, skeleton, {"m": alpha / strength, "s": strength}, observe=observe, seed=seed)

    truth: dict[str, Any] = {
        "kind": "matrix", "model": model, "seed": seed, "rows": rows, "cols": C, "counts_per_row": counts_per_row,
    }
    truth.update(_prior_truth(alpha))
    if mixture:
        truth.update(w=weights.tolist(), components=_given_components(drawn, weights, alpha).tolist())
    if store_probs:
        probs = drawn.probs
        truth["probs_from"] = "pi"
    else:
        probs = drawn.counts / counts_per_row
        truth["probs_from"] = "counts"
        truth["pi"] = drawn.probs.tolist()
    return rows_log("matrix", C, probs, counts=drawn.counts, seed=seed, truth=truth)


def _given_components(drawn: DrawnRows, weights: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Each row's mixture component, numbered as given.

    The mixture model draws its rows from its components in canonical order
    (its deterministic sites ``w`` and ``alpha``); each is matched back to
    the given component it equals.
    """
    given = np.column_stack([weights, alphas])
    canonical = np.column_stack([drawn.sites["w"], drawn.sites["alpha"]])
    unused = list(range(len(given)))
    to_given = []
    for row in canonical:
        match = min(unused, key=lambda j: np.abs(given[j] - row).sum())
        unused.remove(match)
        to_given.append(match)
    return np.asarray(to_given)[drawn.components]


def simulate_icl(
    episodes: int,
    length: int,
    alpha,
    *,
    world_alpha=None,
    decay: float = 1.0,
    temperature: float = 1.0,
    tau: float = 200.0,
    other_mass: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """ICL episodes read by the ``icl`` model, or ``icl-general`` when ``decay`` or ``temperature`` is not 1.

    Returns ``episodes * (length + 1)`` rows (see the module docstring).
    """
    alpha = _positive_vector(alpha, "alpha")
    world_alpha = alpha if world_alpha is None else _positive_vector(world_alpha, "world_alpha")
    if len(world_alpha) != len(alpha):
        raise InputError(f"has {len(world_alpha)} values but alpha has {len(alpha)}", field="world_alpha")
    episodes, length = _count(episodes, "episodes", minimum=1), _count(length, "length", minimum=1)
    _check_updater(decay, temperature, tau, other_mass)
    rng = np.random.default_rng(seed)
    drawn_episodes = draw_episodes(rng, episodes, length, [1.0], world_alpha[None, :])
    strength = alpha.sum()
    parameters = {"m": alpha / strength, "s": strength, "tau": tau}
    model = "icl"
    if decay != 1.0 or temperature != 1.0:
        model = "icl-general"
        parameters.update(decay=decay, temperature=temperature)
    truth = {
        "kind": "icl",
        "model": model,
        "seed": seed,
        "episodes": episodes,
        "length": length,
        **_prior_truth(alpha),
        "world_alpha": world_alpha.tolist(),
        "decay": decay,
        "temperature": temperature,
        "tau": tau,
        "other_mass": other_mass,
    }
    return _icl_log("icl", model, drawn_episodes, parameters, len(alpha), other_mass, seed, truth)


def simulate_icl_framed(
    episodes: int,
    length: int,
    framing_alphas,
    *,
    world_alpha=None,
    tau: float = 200.0,
    other_mass: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """ICL episodes read by the ``icl-framed`` model: episode ``e`` under framing level ``e mod F``, whose
    prior is ``framing_alphas[f]`` (F, C); the world is ``Dirichlet(world_alpha)`` (default all ones)."""
    alphas = _positive_matrix(framing_alphas, "framing_alphas")
    num_framings, C = alphas.shape
    world_alpha = np.ones(C) if world_alpha is None else _positive_vector(world_alpha, "world_alpha")
    if len(world_alpha) != C:
        raise InputError(f"has {len(world_alpha)} values but framing_alphas has {C} columns", field="world_alpha")
    episodes, length = _count(episodes, "episodes", minimum=1), _count(length, "length", minimum=1)
    _check_updater(1.0, 1.0, tau, other_mass)
    rng = np.random.default_rng(seed)
    drawn_episodes = draw_episodes(rng, episodes, length, [1.0], world_alpha[None, :])
    strengths = alphas.sum(axis=1)
    parameters = {"m": alphas / strengths[:, None], "s": strengths, "tau": tau}
    levels = [{"alpha": ",".join(f"{a:g}" for a in alpha)} for alpha in alphas]
    truth = {
        "kind": "icl",
        "model": "icl-framed",
        "seed": seed,
        "episodes": episodes,
        "length": length,
        **_prior_truth(alphas),
        "framing_levels": levels,
        "world_alpha": world_alpha.tolist(),
        "decay": 1.0,
        "temperature": 1.0,
        "tau": tau,
        "other_mass": other_mass,
    }
    framing = drawn_episodes.episode % num_framings
    return _icl_log("icl", "icl-framed", drawn_episodes, parameters, C, other_mass, seed, truth,
                    framing=framing, framing_levels=levels)


def simulate_icl_mixture(
    episodes: int,
    length: int,
    weights,
    alphas,
    *,
    world_weights=None,
    world_alphas=None,
    decay: float = 1.0,
    temperature: float = 1.0,
    tau: float = 200.0,
    other_mass: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """ICL episodes read by the ``icl-mixture`` model (the exact predictive of a Dirichlet-mixture prior).

    ``weights`` (K,), ``alphas`` (K, C). The world is the same mixture unless
    ``world_weights`` / ``world_alphas`` are given (both, or neither). A
    ``decay`` below 1 enters as recency-weighted input counts; the model has
    no temperature, so ``temperature`` must be 1 (module docstring).
    """
    alphas = _positive_matrix(alphas, "alphas")
    weights = _weights(weights, "weights", len(alphas))
    if (world_weights is None) != (world_alphas is None):
        raise InputError("world_weights and world_alphas go together", field="world_alphas")
    if world_alphas is None:
        world_weights, world_alphas = weights, alphas
    else:
        world_alphas = _positive_matrix(world_alphas, "world_alphas")
        world_weights = _weights(world_weights, "world_weights", len(world_alphas))
        if world_alphas.shape[1] != alphas.shape[1]:
            raise InputError(
                f"has {world_alphas.shape[1]} categories but alphas has {alphas.shape[1]}", field="world_alphas"
            )
    episodes, length = _count(episodes, "episodes", minimum=1), _count(length, "length", minimum=1)
    _check_updater(decay, temperature, tau, other_mass)
    if temperature != 1.0:
        raise InputError(
            f"is {temperature}; the icl-mixture model has no temperature, so its logs are drawn at 1",
            field="temperature",
        )
    rng = np.random.default_rng(seed)
    drawn_episodes = draw_episodes(rng, episodes, length, world_weights, world_alphas)
    strengths = alphas.sum(axis=1)
    parameters = {"w_unlabelled": weights, "m_unlabelled": alphas / strengths[:, None], "s_unlabelled": strengths,
                  "tau": tau}
    inputs = None
    if decay != 1.0:
        C = alphas.shape[1]
        inputs = {"context_counts": weighted_counts(drawn_episodes.tokens, C, decay).reshape(-1, C)}
    truth = {
        "kind": "icl-mixture",
        "model": "icl-mixture",
        "seed": seed,
        "episodes": episodes,
        "length": length,
        "w": weights.tolist(),
        **_prior_truth(alphas),
        "world_w": world_weights.tolist(),
        "world_alpha": world_alphas.tolist(),
        "world_components": drawn_episodes.components.tolist(),
        "decay": decay,
        "temperature": temperature,
        "tau": tau,
        "other_mass": other_mass,
    }
    return _icl_log(
        "icl-mixture", "icl-mixture", drawn_episodes, parameters, alphas.shape[1], other_mass, seed, truth,
        inputs=inputs, components=len(alphas),
    )


def _icl_log(
    kind: str,
    model: str,
    drawn_episodes: Episodes,
    parameters: Mapping[str, Any],
    num_cols: int,
    other_mass: float,
    seed: int,
    truth: Mapping[str, Any],
    *,
    inputs: Mapping[str, Any] | None = None,
    framing: np.ndarray | None = None,
    framing_levels: list[dict[str, str]] | None = None,
    **prepare_options: Any,
) -> xr.Dataset:
    arrays: dict[str, Any] = {
        "context_counts": drawn_episodes.context_counts,
        "episode": drawn_episodes.episode,
        "position": drawn_episodes.position,
    }
    if framing is not None:
        arrays.update(framing=framing, framing_levels=json.dumps(framing_levels))
    skeleton = rows_log(kind, num_cols, seed=seed, **arrays)
    drawn = draw_rows(model, skeleton, parameters, seed=seed, inputs=inputs, **prepare_options)
    return rows_log(kind, num_cols, drawn.probs, other_mass=other_mass, seed=seed, truth=truth, **arrays)


def simulate_embedding(
    rows: int,
    cols: int,
    embed_dim: int,
    rank: int,
    *,
    concentration: float = 50.0,
    counts_per_row: int = 0,
    seed: int = 0,
) -> xr.Dataset:
    """Rows from the ``embedding`` model, ``Dirichlet(s * softmax(b + U V^T e_r))``, on Gaussian embeddings ``e_r``."""
    rows, cols = _count(rows, "rows", minimum=1), _count(cols, "cols", minimum=2)
    embed_dim, rank = _count(embed_dim, "embed_dim", minimum=1), _count(rank, "rank", minimum=1)
    counts_per_row = _count(counts_per_row, "counts_per_row", minimum=0)
    concentration = _positive_scalar(concentration, "concentration")
    rng = np.random.default_rng(seed)
    U = rng.normal(0.0, 1.0 / np.sqrt(rank), size=(cols, rank))
    V = rng.normal(0.0, 1.0 / np.sqrt(embed_dim), size=(embed_dim, rank))
    b = rng.normal(0.0, 1.0, size=cols)
    embedding = rng.normal(0.0, 1.0, size=(rows, embed_dim))
    observe = ("probs", "counts") if counts_per_row > 0 else ("probs",)
    placeholder_counts = np.zeros((rows, cols), dtype=np.int64)
    placeholder_counts[:, 0] = counts_per_row
    skeleton = rows_log(
        "embedding", cols, counts=placeholder_counts if counts_per_row > 0 else None, seed=seed, embedding=embedding
    )
    # the model's sites U and V are its standard-normal U_unit and V_unit scaled (non-centred)
    parameters = {"U_unit": U * np.sqrt(rank), "V_unit": V * np.sqrt(embed_dim), "b": b, "s": concentration}
    drawn = draw_rows(
        "embedding", skeleton, parameters, observe=observe, seed=seed, inputs={"embedding": embedding}, rank=rank
    )
    truth = {
        "kind": "embedding",
        "model": "embedding",
        "seed": seed,
        "rows": rows,
        "cols": cols,
        "embed_dim": embed_dim,
        "rank": rank,
        "counts_per_row": counts_per_row,
        "U": U.tolist(),
        "V": V.tolist(),
        "b": b.tolist(),
        "s": concentration,
    }
    return rows_log("embedding", cols, drawn.probs, counts=drawn.counts, seed=seed, truth=truth, embedding=embedding)


def truth_of(ds: xr.Dataset) -> dict[str, Any]:
    """The ``truth`` attribute of a simulated log, decoded from JSON."""
    if "truth" not in ds.attrs:
        raise InputError("this log has no 'truth' attribute (it was not simulated)", field="truth")
    return json.loads(ds.attrs["truth"])


# ---------------------------------------------------------------------------
# One entry point over the kinds, with the options of ``bayesmatrix simulate``
# ---------------------------------------------------------------------------


def simulate(kind: str, **options: Any) -> xr.Dataset:
    """Run simulator ``kind`` from typed option values; missing options take their defaults.

    The options are those of ``bayesmatrix simulate KIND`` under their Python
    names (``counts_per_row``, ``world_alpha``, ...), vectors and tables as
    sequences of numbers; an :class:`InputError` names the option at fault.

    - matrix: ``rows``, and either ``cols`` (a uniform mean), ``alpha_mean``
      (normalised) with ``concentration`` (default C), or ``alphas`` (K, C)
      with ``weights`` (default uniform; checked against ``components``);
      ``counts_per_row``, ``probs`` (False stores ``counts / N``).
    - icl: ``episodes``, ``length``, ``alpha``, ``world_alpha`` and the updater's options; or
      ``framing_alphas`` (F, C) in place of ``alpha``: one prior per framing level (``icl-framed``).
    - icl-mixture: ``episodes``, ``length``, ``alphas``, ``weights``, ``components``,
      ``world_weights``, ``world_alphas`` and the updater's options.
    - the updater's options: ``decay``, ``temperature``, ``tau``, ``other_mass``.
    - embedding: ``rows``, ``cols``, ``embed_dim``, ``rank``, ``concentration``, ``counts_per_row``.
    - every kind: ``seed``.
    """
    get = options.get
    seed = checked_seed(get("seed", 0))
    if kind == "matrix":
        alpha, weights = _matrix_prior(options)
        return simulate_matrix(
            get("rows"),
            alpha,
            weights=weights,
            counts_per_row=get("counts_per_row", 0) or 0,
            store_probs=get("probs", True),
            seed=seed,
        )
    updater = {
        name: _option_float(get(name), name, default)
        for name, default in (("decay", 1.0), ("temperature", 1.0), ("tau", 200.0), ("other_mass", 0.0))
    }
    if kind == "icl" and get("framing_alphas") is not None:
        if get("alpha") is not None:
            raise InputError("goes with one prior for every row; framing_alphas give one per framing level",
                             field="alpha")
        for name, default in (("decay", 1.0), ("temperature", 1.0)):
            if updater[name] != default:
                raise InputError(f"is {updater[name]}; the icl-framed model has no {name}, so framed logs are "
                                 f"drawn at {default:g}", field=name)
        return simulate_icl_framed(
            get("episodes"), get("length"), get("framing_alphas"), world_alpha=get("world_alpha"), seed=seed,
            tau=updater["tau"], other_mass=updater["other_mass"],
        )
    if kind == "icl":
        return simulate_icl(
            get("episodes"), get("length"), _required(get("alpha"), "alpha"), world_alpha=get("world_alpha"),
            seed=seed, **updater,
        )
    if kind == "icl-mixture":
        alphas = _positive_matrix(_required(get("alphas"), "alphas"), "alphas")
        _check_components(get("components"), len(alphas))
        weights = _uniform_default(get("weights"), "weights", len(alphas))
        world_alphas, world_weights = get("world_alphas"), get("world_weights")
        if world_alphas is not None:
            world_alphas = _positive_matrix(world_alphas, "world_alphas")
            world_weights = _uniform_default(world_weights, "world_weights", len(world_alphas))
        elif world_weights is not None:
            raise InputError("are given without the world's per-component alphas", field="world_weights")
        return simulate_icl_mixture(
            get("episodes"), get("length"), weights, alphas, world_weights=world_weights, world_alphas=world_alphas,
            seed=seed, **updater,
        )
    if kind == "embedding":
        return simulate_embedding(
            get("rows"),
            get("cols"),
            get("embed_dim"),
            get("rank"),
            concentration=_option_float(get("concentration"), "concentration", 50.0),
            counts_per_row=get("counts_per_row", 0) or 0,
            seed=seed,
        )
    raise InputError(f"unknown simulator {kind!r}; choose one of {', '.join(KINDS)}", field="kind")


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def _prior_truth(alpha: np.ndarray) -> dict[str, Any]:
    strength = alpha.sum(axis=-1)
    mean = alpha / strength[..., None] if alpha.ndim == 2 else alpha / strength
    return {"alpha": alpha.tolist(), "m": mean.tolist(), "s": strength.tolist()}


def _matrix_prior(options: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """``cols`` / ``alpha_mean`` / ``concentration`` or ``alphas`` / ``weights`` -> (alpha, weights)."""
    get = options.get
    cols = get("cols")
    if get("alphas") is not None:
        for option in ("alpha_mean", "concentration"):
            if get(option) is not None:
                raise InputError("does not go with a mixture, whose alphas are given per component", field=option)
        alphas = _positive_matrix(get("alphas"), "alphas")
        _check_components(get("components"), len(alphas))
        if cols is not None and cols != alphas.shape[1]:
            raise InputError(f"give {alphas.shape[1]} columns but cols is {cols}", field="alphas")
        return alphas, _uniform_default(get("weights"), "weights", len(alphas))
    for option in ("weights", "components"):
        if get(option) is not None:
            raise InputError("needs a mixture: per-component alphas, one row per component", field=option)
    if get("alpha_mean") is not None:
        mean = _positive_vector(get("alpha_mean"), "alpha_mean")
        if cols is not None and cols != len(mean):
            raise InputError(f"has {len(mean)} values but cols is {cols}", field="alpha_mean")
        mean = mean / mean.sum()
    elif cols is None:
        raise InputError("give the number of columns, a mean for alpha, or per-component alphas", field="cols")
    else:
        _count(cols, "cols", minimum=2)
        mean = np.full(cols, 1.0 / cols)
    concentration = _option_float(get("concentration"), "concentration", float(len(mean)))
    return _positive_scalar(concentration, "concentration") * mean, None


def _uniform_default(values: Any, field: str, components: int) -> np.ndarray:
    """Weights normalised to sum 1; uniform when not given."""
    if values is None:
        return np.full(components, 1.0 / components)
    return _weights(values, field, components)


def _check_components(components: int | None, found: int) -> None:
    if components is not None and components != found:
        raise InputError(f"is {components} but the alphas give {found} components", field="components")


def _check_updater(decay: float, temperature: float, tau: float, other_mass: float) -> None:
    if not (0.0 < decay <= 1.0):
        raise InputError(f"must be in (0, 1], got {decay}", field="decay")
    _positive_scalar(temperature, "temperature")
    _positive_scalar(tau, "tau")
    if not (0.0 <= other_mass < 1.0):
        raise InputError(f"must be in [0, 1), got {other_mass}", field="other_mass")


def _weights(values: Any, field: str, components: int) -> np.ndarray:
    weights = _positive_vector(values, field)
    if len(weights) != components:
        raise InputError(f"has {len(weights)} values for {components} components", field=field)
    return weights / weights.sum()


def _numbers(values: Any, field: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"must be numbers, got {values!r}", field=field) from None


def _positive_vector(values: Any, field: str) -> np.ndarray:
    array = _numbers(values, field)
    if array.ndim != 1 or array.size == 0:
        raise InputError(f"must be a non-empty list of numbers, got shape {array.shape}", field=field)
    _check_positive(array, field)
    return array


def _positive_matrix(values: Any, field: str) -> np.ndarray:
    array = _numbers(values, field)
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"must be a (components, columns) table of numbers, got shape {array.shape}", field=field)
    _check_positive(array, field)
    return array


def _check_positive(array: np.ndarray, field: str) -> None:
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        raise InputError(f"every value must be finite and > 0, got {array[bad].flat[0]}", field=field)


def _positive_scalar(value: Any, field: str) -> float:
    value = _option_float(value, field, None)
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"must be finite and > 0, got {value}", field=field)
    return value


def _count(value: Any, field: str, *, minimum: int) -> int:
    is_integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_integer or value < minimum:
        raise InputError(f"must be an integer >= {minimum}, got {value!r}", field=field)
    return int(value)


def _option_float(value: Any, field: str, default: float | None) -> float:
    if value is None:
        if default is None:
            raise InputError("is required", field=field)
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{value!r} is not a number", field=field) from None


def _required(value: Any, field: str) -> Any:
    if value is None:
        raise InputError("is required", field=field)
    return value
