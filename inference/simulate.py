"""Synthetic LLM logs drawn from known parameters: the fixtures that the model tests fit.

Every simulator returns a log built with :func:`data.llmlog.make_log` whose
columns are ``c0 .. c{C-1}`` and ``"<other>"``, and stores every parameter
value it used as JSON in the attribute ``truth`` (layout below). All
randomness comes from one ``numpy.random.Generator(seed)``, so the same seed
gives the same log, except the ``created`` attribute.

Generative stories (C categories, rows r, episodes e, positions k)
-------------------------------------------------------------------

``matrix`` (one Dirichlet; ``alpha = s * m``)::

    pi_r     ~ Dirichlet(alpha)                       r = 1..R
    probs_r  = (pi_r, 0)                              <other> column 0
    counts_r ~ Multinomial(N, pi_r)                   only when N > 0

``matrix`` with a K-component mixture (weights w, rows of alpha)::

    z_r  ~ Categorical(w)
    pi_r ~ Dirichlet(alpha_{z_r})                     then probs, counts as above

With ``store_probs=False`` the log's ``probs`` are the empirical frequencies
``counts_r / N`` (what sampling an LLM without log-probabilities gives), and
the ``pi_r`` are kept in ``truth["pi"]``.

``icl`` (a generalised Bayesian updater reading K in-context observations)::

    pi_e ~ Dirichlet(world_alpha)                     world_alpha defaults to alpha
    y_{e,1..K} ~ Categorical(pi_e)
    w_0 = 0,   w_k = decay * w_{k-1} + onehot(y_k)    k = 1..K
    p_k = (alpha + w_k) / (sum(alpha) + sum(w_k))     the updater's predictive
    q_k ∝ p_k ** (1 / temperature)                    normalised
    o_k ~ Dirichlet(tau * q_k)                        the reported distribution
    probs_k = ((1 - other_mass) * o_k, other_mass)

Each episode gives K + 1 consecutive rows (k = 0..K) with ``episode = e``,
``position = k`` and ``context_counts`` = the raw, undecayed counts of
``y_1..y_k`` (``<other>`` column 0), so ``y_{k+1}`` is the column where
``context_counts[k+1] - context_counts[k]`` is 1.

``icl-mixture``: as ``icl``, but the updater's prior is the mixture
``sum_j w_j Dirichlet(alpha_j)``, whose exact conjugate predictive is::

    w'_j ∝ w_j * DirMult(w_k | alpha_j)
         = w_j * Γ(A_j) / Γ(A_j + W_k) * prod_c Γ(alpha_jc + w_kc) / Γ(alpha_jc)
    p_k  = sum_j w'_j (alpha_j + w_k) / (A_j + W_k)   A_j = sum(alpha_j), W_k = sum(w_k)

The multinomial coefficient is the same for every component and cancels, so
the formula holds for non-integer (decayed) counts as well. The world draws
``z_e ~ Categorical(world_w)``, ``pi_e ~ Dirichlet(world_alpha_{z_e})``, by
default the updater's own mixture.

``embedding`` (a low-rank continuous map from embeddings to rows)::

    U_ci ~ Normal(0, 1/sqrt(rank))      (C, rank)
    V_di ~ Normal(0, 1/sqrt(D))         (D, rank)
    b_c  ~ Normal(0, 1)
    e_r  ~ Normal(0, I_D)
    m_r  = softmax(b + U V^T e_r)
    probs_r ~ Dirichlet(s * m_r),  counts_r ~ Multinomial(N, probs_r) when N > 0

The scales make ``V^T e_r`` and ``U V^T e_r`` have unit variance per entry, so
the logits vary about as much as the bias does.

Numerical guard: every Dirichlet draw is a normalised vector of
``Gamma(alpha_c, 1)`` draws in float64, each floored at 1e-300 before
normalising. A Gamma with a tiny shape can underflow to exactly 0 (and a
tempered ``q`` can underflow too), which would give zero probabilities, and
0/0 = NaN when all of them underflow; the floor keeps every probability
strictly positive and no value is ever NaN.

``truth`` layout (JSON; arrays as nested lists; ``kind`` names the simulator)
-------------------------------------------------------------------------------

- matrix: ``kind, seed, rows, cols, counts_per_row, probs_from ("pi" or
  "counts"), alpha (C,), m (C,), s``; a mixture has ``alpha (K, C), m (K, C),
  s (K,), w (K,), components (R,)``; ``pi (R, C)`` only when ``probs_from`` is
  ``"counts"``.
- icl: ``kind, seed, episodes, length, alpha, m, s, world_alpha, decay,
  temperature, tau, other_mass``.
- icl-mixture: ``kind, seed, episodes, length, w, alpha (K, C), m (K, C),
  s (K,), world_w, world_alpha (K', C), world_components (E,), decay,
  temperature, tau, other_mass``.
- embedding: ``kind, seed, rows, cols, embed_dim, rank, counts_per_row, U (C,
  rank), V (D, rank), b (C,), s``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np
import xarray as xr
from scipy.special import gammaln, logsumexp

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log

# Gamma draws are floored here before normalising (see the module docstring).
GAMMA_FLOOR = 1e-300
KINDS = ("matrix", "icl", "icl-mixture", "embedding")


# ---------------------------------------------------------------------------
# Closed forms shared with the model code: small, exact, float64.
# ---------------------------------------------------------------------------


def weighted_counts(observations: np.ndarray, C: int, decay: float = 1.0) -> np.ndarray:
    """Recency-weighted counts ``w_0 = 0, w_k = decay * w_{k-1} + onehot(y_k)``.

    ``observations`` (..., K) holds category indices in ``0..C-1``; the result
    (..., K + 1, C) holds ``w_0 .. w_K``. With ``decay = 1`` these are the raw
    counts.
    """
    observations = np.asarray(observations)
    if observations.size and (observations.min() < 0 or observations.max() >= C):
        raise ValueError(f"observations must lie in 0..{C - 1}")
    onehot = np.eye(C, dtype=np.float64)[observations]  # (..., K, C)
    counts = np.zeros(observations.shape[:-1] + (observations.shape[-1] + 1, C))
    for k in range(observations.shape[-1]):
        counts[..., k + 1, :] = decay * counts[..., k, :] + onehot[..., k, :]
    return counts


def temper(predictive: np.ndarray, temperature: float) -> np.ndarray:
    """``q ∝ predictive ** (1 / temperature)`` over the last axis, computed in log space."""
    with np.errstate(divide="ignore"):
        log_q = np.log(np.asarray(predictive, dtype=np.float64)) / temperature
    return np.exp(log_q - logsumexp(log_q, axis=-1, keepdims=True))


def updater_predictive(alpha: np.ndarray, weighted_counts: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The generalised Bayesian updater: ``(alpha + w) / (sum(alpha) + sum(w))``, tempered.

    ``alpha`` (C,), ``weighted_counts`` (..., C); returns (..., C).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    posterior = alpha + np.asarray(weighted_counts, dtype=np.float64)
    return temper(posterior / posterior.sum(axis=-1, keepdims=True), temperature)


def mixture_posterior_weights(weights: np.ndarray, alphas: np.ndarray, weighted_counts: np.ndarray) -> np.ndarray:
    """``w'_j ∝ w_j * DirMult(counts | alpha_j)`` without the multinomial coefficient (it cancels).

    ``weights`` (K,), ``alphas`` (K, C), ``weighted_counts`` (..., C); returns (..., K).
    """
    weights = np.asarray(weights, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    counts = np.asarray(weighted_counts, dtype=np.float64)[..., None, :]  # (..., 1, C)
    prior_total = alphas.sum(axis=-1)  # (K,)
    log_evidence = (
        gammaln(prior_total)
        - gammaln(prior_total + counts.sum(axis=-1))
        + (gammaln(alphas + counts) - gammaln(alphas)).sum(axis=-1)
    )  # (..., K)
    log_posterior = np.log(weights) + log_evidence
    return np.exp(log_posterior - logsumexp(log_posterior, axis=-1, keepdims=True))


def mixture_predictive(weights: np.ndarray, alphas: np.ndarray, weighted_counts: np.ndarray) -> np.ndarray:
    """Exact predictive of a Dirichlet-mixture prior: ``sum_j w'_j (alpha_j + w) / (A_j + W)``.

    ``weights`` (K,), ``alphas`` (K, C), ``weighted_counts`` (..., C); returns (..., C).
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    counts = np.asarray(weighted_counts, dtype=np.float64)[..., None, :]  # (..., 1, C)
    posterior = alphas + counts  # (..., K, C)
    component_predictive = posterior / posterior.sum(axis=-1, keepdims=True)
    posterior_weights = mixture_posterior_weights(weights, alphas, weighted_counts)  # (..., K)
    return (posterior_weights[..., None] * component_predictive).sum(axis=-2)


# ---------------------------------------------------------------------------
# Simulators
# ---------------------------------------------------------------------------


def simulate_matrix(
    rows: int,
    alpha: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    counts_per_row: int = 0,
    store_probs: bool = True,
    seed: int = 0,
) -> xr.Dataset:
    """Rows ``pi_r ~ Dirichlet(alpha)``, or a Dirichlet mixture when ``weights`` is given.

    ``alpha`` is (C,) for one Dirichlet, (K, C) with ``weights`` (K,) for a
    mixture. ``counts_per_row = N > 0`` adds ``counts ~ Multinomial(N, pi_r)``.
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
    rng = np.random.default_rng(seed)

    truth: dict[str, Any] = {"kind": "matrix", "seed": seed, "rows": rows, "cols": C, "counts_per_row": counts_per_row}
    truth.update(_prior_truth(alpha))
    if mixture:
        components = _categorical(rng, np.broadcast_to(weights, (rows, len(weights))))
        pi = _dirichlet(rng, alpha[components])
        truth.update(w=weights.tolist(), components=components.tolist())
    else:
        pi = _dirichlet(rng, np.broadcast_to(alpha, (rows, C)))
    counts = rng.multinomial(counts_per_row, pi) if counts_per_row > 0 else None
    if store_probs:
        probs = pi
        truth["probs_from"] = "pi"
    else:
        probs = counts / counts_per_row
        truth["probs_from"] = "counts"
        truth["pi"] = pi.tolist()
    return make_log(
        _with_other(probs),
        _columns(C),
        model="simulate:matrix",
        task={"kind": "simulate", "simulator": "matrix"},
        counts=None if counts is None else _with_other(counts),
        seed=seed,
        truth=json.dumps(truth),
    )


def simulate_icl(
    episodes: int,
    length: int,
    alpha: np.ndarray,
    *,
    world_alpha: np.ndarray | None = None,
    decay: float = 1.0,
    temperature: float = 1.0,
    tau: float = 200.0,
    other_mass: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """ICL episodes read by a generalised Bayesian updater with a Dirichlet(alpha) prior.

    Returns ``episodes * (length + 1)`` rows (see the module docstring).
    """
    alpha = _positive_vector(alpha, "alpha")
    world_alpha = alpha if world_alpha is None else _positive_vector(world_alpha, "world_alpha")
    if len(world_alpha) != len(alpha):
        raise InputError(f"has {len(world_alpha)} values but alpha has {len(alpha)}", field="world_alpha")
    episodes, length = _count(episodes, "episodes", minimum=1), _count(length, "length", minimum=1)
    _check_updater(decay, temperature, tau, other_mass)
    rng = np.random.default_rng(seed)
    world_pi = _dirichlet(rng, np.broadcast_to(world_alpha, (episodes, len(alpha))))
    truth = {
        "kind": "icl",
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
    return _icl_log(
        rng,
        world_pi,
        length,
        lambda counts: updater_predictive(alpha, counts, temperature),
        decay=decay,
        tau=tau,
        other_mass=other_mass,
        simulator="icl",
        seed=seed,
        truth=truth,
    )


def simulate_icl_mixture(
    episodes: int,
    length: int,
    weights: np.ndarray,
    alphas: np.ndarray,
    *,
    world_weights: np.ndarray | None = None,
    world_alphas: np.ndarray | None = None,
    decay: float = 1.0,
    temperature: float = 1.0,
    tau: float = 200.0,
    other_mass: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """ICL episodes read by an updater whose prior is a Dirichlet mixture (exact conjugate predictive).

    ``weights`` (K,), ``alphas`` (K, C). The world is the same mixture unless
    ``world_weights`` / ``world_alphas`` are given (both, or neither).
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
    rng = np.random.default_rng(seed)
    world_components = _categorical(rng, np.broadcast_to(world_weights, (episodes, len(world_weights))))
    world_pi = _dirichlet(rng, world_alphas[world_components])
    truth = {
        "kind": "icl-mixture",
        "seed": seed,
        "episodes": episodes,
        "length": length,
        "w": weights.tolist(),
        **_prior_truth(alphas),
        "world_w": world_weights.tolist(),
        "world_alpha": world_alphas.tolist(),
        "world_components": world_components.tolist(),
        "decay": decay,
        "temperature": temperature,
        "tau": tau,
        "other_mass": other_mass,
    }
    return _icl_log(
        rng,
        world_pi,
        length,
        lambda counts: temper(mixture_predictive(weights, alphas, counts), temperature),
        decay=decay,
        tau=tau,
        other_mass=other_mass,
        simulator="icl-mixture",
        seed=seed,
        truth=truth,
    )


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
    """Rows ``probs_r ~ Dirichlet(s * softmax(b + U V^T e_r))`` from Gaussian embeddings ``e_r``."""
    rows, cols = _count(rows, "rows", minimum=1), _count(cols, "cols", minimum=2)
    embed_dim, rank = _count(embed_dim, "embed_dim", minimum=1), _count(rank, "rank", minimum=1)
    counts_per_row = _count(counts_per_row, "counts_per_row", minimum=0)
    concentration = _positive_scalar(concentration, "concentration")
    rng = np.random.default_rng(seed)
    U = rng.normal(0.0, 1.0 / np.sqrt(rank), size=(cols, rank))
    V = rng.normal(0.0, 1.0 / np.sqrt(embed_dim), size=(embed_dim, rank))
    b = rng.normal(0.0, 1.0, size=cols)
    embedding = rng.normal(0.0, 1.0, size=(rows, embed_dim))
    logits = b + embedding @ V @ U.T  # (rows, cols)
    mean = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
    probs = _dirichlet(rng, concentration * mean)
    counts = rng.multinomial(counts_per_row, probs) if counts_per_row > 0 else None
    truth = {
        "kind": "embedding",
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
    return make_log(
        _with_other(probs),
        _columns(cols),
        model="simulate:embedding",
        task={"kind": "simulate", "simulator": "embedding"},
        counts=None if counts is None else _with_other(counts),
        embedding=embedding,
        seed=seed,
        truth=json.dumps(truth),
    )


def truth_of(ds: xr.Dataset) -> dict[str, Any]:
    """The ``truth`` attribute of a simulated log, decoded from JSON."""
    if "truth" not in ds.attrs:
        raise InputError("this log has no 'truth' attribute (it was not simulated)", field="truth")
    return json.loads(ds.attrs["truth"])


# ---------------------------------------------------------------------------
# The command line: option strings -> one simulator call
# ---------------------------------------------------------------------------


def simulate(kind: str, **options: Any) -> xr.Dataset:
    """Run simulator ``kind`` from command-line option values (vectors as ``"a,b,c"``, matrices ``"a,b;c,d"``).

    Option names are those of ``bayesmatrix simulate KIND --help`` with dashes
    turned into underscores; missing options take their documented defaults.
    """
    try:
        return _simulate(kind, options)
    except InputError as error:
        # The simulators name their parameters; on the command line, name the option.
        if error.field is None or error.field.startswith("-") or error.field == "KIND":
            raise
        option = "--" + error.field.replace("_", "-")
        raise InputError(error.reason, field=option, row=error.row) from None


def _simulate(kind: str, options: dict[str, Any]) -> xr.Dataset:
    get = options.get
    seed = get("seed", 0)
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
        "decay": _option_float(get("decay"), "--decay", 1.0),
        "temperature": _option_float(get("temperature"), "--temperature", 1.0),
        "tau": _option_float(get("tau"), "--tau", 200.0),
        "other_mass": _option_float(get("other_mass"), "--other-mass", 0.0),
        "seed": seed,
    }
    if kind == "icl":
        alpha = parse_vector(_required(get("alpha"), "--alpha"), "--alpha")
        world_alpha = None if get("world_alpha") is None else parse_vector(get("world_alpha"), "--world-alpha")
        return simulate_icl(get("episodes"), get("length"), alpha, world_alpha=world_alpha, **updater)
    if kind == "icl-mixture":
        alphas = parse_matrix(_required(get("alphas"), "--alphas"), "--alphas")
        weights = _mixture_weights(get("weights"), "--weights", len(alphas))
        _check_components(get("components"), len(alphas))
        world_alphas = None if get("world_alphas") is None else parse_matrix(get("world_alphas"), "--world-alphas")
        world_weights = None
        if world_alphas is not None:
            world_weights = _mixture_weights(get("world_weights"), "--world-weights", len(world_alphas))
        elif get("world_weights") is not None:
            raise InputError("needs --world-alphas", field="--world-weights")
        return simulate_icl_mixture(
            get("episodes"),
            get("length"),
            weights,
            alphas,
            world_weights=world_weights,
            world_alphas=world_alphas,
            **updater,
        )
    if kind == "embedding":
        return simulate_embedding(
            get("rows"),
            get("cols"),
            get("embed_dim"),
            get("rank"),
            concentration=_option_float(get("concentration"), "--concentration", 50.0),
            counts_per_row=get("counts_per_row", 0) or 0,
            seed=seed,
        )
    raise InputError(f"unknown simulator {kind!r}; choose one of {', '.join(KINDS)}", field="KIND")


def parse_vector(text: str, option: str) -> np.ndarray:
    """``"1,2.5,3"`` -> float64 array; a bad number is an :class:`InputError` naming ``option``."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = np.array([float(part) for part in parts], dtype=np.float64)
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of numbers", field=option) from None
    if not np.all(np.isfinite(values)):
        raise InputError(f"{text!r} holds a value that is not finite", field=option)
    return values


def parse_matrix(text: str, option: str) -> np.ndarray:
    """``"a,b,c;d,e,f"`` -> float64 array (rows separated by ';'), all rows the same length."""
    rows = [parse_vector(part, option) for part in str(text).split(";")]
    if len({len(row) for row in rows}) != 1:
        lengths = ", ".join(str(len(row)) for row in rows)
        raise InputError(f"rows have different lengths ({lengths}); each component needs one value per column", field=option)
    return np.stack(rows)


# ---------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------


def _icl_log(
    rng: np.random.Generator,
    world_pi: np.ndarray,
    length: int,
    predictive: Callable[[np.ndarray], np.ndarray],
    *,
    decay: float,
    tau: float,
    other_mass: float,
    simulator: str,
    seed: int,
    truth: dict[str, Any],
) -> xr.Dataset:
    episodes, C = world_pi.shape
    observations = _categorical(rng, np.repeat(world_pi, length, axis=0)).reshape(episodes, length)
    raw_counts = weighted_counts(observations, C, 1.0)  # (episodes, length + 1, C)
    updater = predictive(weighted_counts(observations, C, decay))  # (episodes, length + 1, C)
    reported = _dirichlet(rng, tau * updater)
    rows = episodes * (length + 1)
    probs = np.concatenate([(1.0 - other_mass) * reported, np.full(reported.shape[:-1] + (1,), other_mass)], axis=-1)
    context_counts = _with_other(np.rint(raw_counts).astype(np.int64))
    return make_log(
        probs.reshape(rows, C + 1),
        _columns(C),
        model=f"simulate:{simulator}",
        task={"kind": "simulate", "simulator": simulator},
        context_counts=context_counts.reshape(rows, C + 1),
        episode=np.repeat(np.arange(episodes), length + 1),
        position=np.tile(np.arange(length + 1), episodes),
        seed=seed,
        truth=json.dumps(truth),
    )


def _dirichlet(rng: np.random.Generator, concentration: np.ndarray) -> np.ndarray:
    """Dirichlet draws over the last axis via floored float64 Gamma draws (see the module docstring)."""
    gammas = np.maximum(rng.standard_gamma(np.asarray(concentration, dtype=np.float64)), GAMMA_FLOOR)
    return gammas / gammas.sum(axis=-1, keepdims=True)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category index per row of ``probs`` (rows, C), by inverting the CDF."""
    cdf = np.cumsum(probs, axis=-1)
    uniform = rng.random(probs.shape[0]) * cdf[:, -1]
    return np.minimum((uniform[:, None] >= cdf).sum(axis=-1), probs.shape[-1] - 1)


def _with_other(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values, np.zeros(values.shape[:-1] + (1,), dtype=values.dtype)], axis=-1)


def _columns(C: int) -> list[str]:
    return [f"c{c}" for c in range(C)] + [OTHER]


def _prior_truth(alpha: np.ndarray) -> dict[str, Any]:
    strength = alpha.sum(axis=-1)
    mean = alpha / strength[..., None] if alpha.ndim == 2 else alpha / strength
    return {"alpha": alpha.tolist(), "m": mean.tolist(), "s": strength.tolist()}


def _matrix_prior(options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """``--alpha-mean``/``--concentration``/``--cols`` or ``--alphas``/``--weights`` -> (alpha, weights)."""
    get = options.get
    cols = get("cols")
    if get("alphas") is not None:
        for option in ("alpha_mean", "concentration"):
            if get(option) is not None:
                flag = "--" + option.replace("_", "-")
                raise InputError("a mixture takes --alphas (one row per component), not " + flag, field=flag)
        alphas = _positive_matrix(parse_matrix(get("alphas"), "--alphas"), "--alphas")
        _check_components(get("components"), len(alphas))
        if cols is not None and cols != alphas.shape[1]:
            raise InputError(f"gives {alphas.shape[1]} columns but --cols is {cols}", field="--alphas")
        return alphas, _mixture_weights(get("weights"), "--weights", len(alphas))
    for option in ("weights", "components"):
        if get(option) is not None:
            raise InputError("needs --alphas (one row of alphas per component)", field="--" + option)
    if get("alpha_mean") is not None:
        mean = _positive_vector(parse_vector(get("alpha_mean"), "--alpha-mean"), "--alpha-mean")
        if cols is not None and cols != len(mean):
            raise InputError(f"has {len(mean)} values but --cols is {cols}", field="--alpha-mean")
        mean = mean / mean.sum()
    elif cols is None:
        raise InputError("give --cols (uniform mean), --alpha-mean or --alphas", field="--cols")
    else:
        _count(cols, "--cols", minimum=2)
        mean = np.full(cols, 1.0 / cols)
    concentration = _option_float(get("concentration"), "--concentration", float(len(mean)))
    return _positive_scalar(concentration, "--concentration") * mean, None


def _mixture_weights(text: str | None, option: str, components: int) -> np.ndarray:
    """Weights from an option string (normalised to sum 1); uniform when not given."""
    if text is None:
        return np.full(components, 1.0 / components)
    return _weights(parse_vector(text, option), option, components)


def _check_components(components: int | None, found: int) -> None:
    if components is not None and components != found:
        raise InputError(f"is {components} but --alphas gives {found} components", field="--components")


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


def _positive_vector(values: Any, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InputError(f"must be a non-empty list of numbers, got shape {array.shape}", field=field)
    _check_positive(array, field)
    return array


def _positive_matrix(values: Any, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"must be a (components, columns) table of numbers, got shape {array.shape}", field=field)
    _check_positive(array, field)
    return array


def _check_positive(array: np.ndarray, field: str) -> None:
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        raise InputError(f"every value must be finite and > 0, got {array[bad].flat[0]}", field=field)


def _positive_scalar(value: Any, field: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"must be finite and > 0, got {value}", field=field)
    return value


def _count(value: Any, field: str, *, minimum: int) -> int:
    is_integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_integer or value < minimum:
        raise InputError(f"must be an integer >= {minimum}, got {value!r}", field=field)
    return int(value)


def _option_float(text: Any, option: str, default: float) -> float:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{text!r} is not a number", field=option) from None


def _required(value: Any, option: str) -> Any:
    if value is None:
        raise InputError("is required", field=option)
    return value
