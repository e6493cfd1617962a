"""Turn an LLM log into the keyword arguments of a model, with ArviZ coordinates and dims.

``prepare(read_log(path), "icl")`` selects the columns, renormalises the rows,
rebuilds what the ICL models need from ``episode``, ``position`` and
``context_counts``, and raises :class:`data.errors.InputError` (naming the
file, the variable and the first offending row) when the log cannot feed the
model. ``MODELS[name].function(**prepare(ds, name).kwargs)`` is the model
conditioned on the log.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import xarray as xr

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER
from bayesmatrix.models import MODELS
from bayesmatrix.models.sufficient import count_statistics


class ModelInput(NamedTuple):
    """What :func:`prepare` returns."""

    kwargs: dict[str, Any]
    """Keyword arguments of ``MODELS[model].function``: data arrays, options and the observed arrays.
    For a prior or posterior predictive, set the ``observed`` ones to ``None``."""
    coords: dict[str, Any]
    """ArviZ coordinates: ``row`` (the log's row indices), ``col`` (the column labels used), ``component``."""
    dims: dict[str, list[str]]
    """ArviZ dims of every site with axes, e.g. ``{"alpha": ["col"], "probs": ["row", "col"]}``."""
    columns: list[str]
    """The column labels the model sees, in order."""
    observed: tuple[str, ...]
    """The observed sites, each also a key of ``kwargs``."""
    fit_kwargs: dict[str, Any] | None = None
    """The keyword arguments to fit with: ``kwargs`` with per-row observations replaced by
    their sufficient statistic where the model takes one (``matrix`` observing ``counts``
    alone gets ``count_statistics``, so each evaluation costs the same at any number of
    rows), else ``kwargs`` itself. The pointwise log-likelihood (LOO) and predictive
    checks use ``kwargs``: the same latent sites, one observation per row."""


def prepare(
    ds: xr.Dataset,
    model: str,
    *,
    keep_other: bool = False,
    components: int = 2,
    observe: Sequence[str] | None = None,
    file: str | None = None,
    rank: int = 4,
) -> ModelInput:
    """Model inputs from a validated LLM log (see ``data.llmlog.read_log``).

    - ``keep_other=False`` drops the ``<other>`` column and renormalises each
      row over the rest. This is exact, not an approximation: by the
      Dirichlet's aggregation property the renormalised remaining columns of a
      Dirichlet(alpha) row follow Dirichlet(alpha without ``<other>``), and
      counts restricted to them are Dirichlet-multinomial given their total.
      An ICL log whose in-context examples include ``<other>`` then cannot be
      used (raise); ``keep_other=True`` keeps ``<other>`` as a category.
    - ``components``: K for ``mixture`` and ``icl-mixture``.
    - ``observe``: ``("probs",)`` (default), ``("counts",)`` (tokens sampled
      from each row, ``log --samples M``) or both.
    - ``file``: the name used in errors; defaults to the file the log was read from.
    - ``rank``: R for ``embedding``, whose input is the log's ``embedding``
      (row, embed) prepared by :func:`models.embedding.fit_features` on all
      rows: centred, projected on at most 64 principal components, scaled to
      unit mean square (coords ``feature`` and ``rank``).

    ICL logs with ``episode`` must hold each episode in consecutive rows, at
    positions 0, 1, 2, ... with ``context_counts`` growing by one example per
    row; ``icl-general`` needs ``episode`` (the order of the examples).
    """
    file = file or ds.encoding.get("source") or "<in memory>"
    if model not in MODELS:
        raise InputError(f"unknown model {model!r}; the models are {', '.join(MODELS)}", field="model")
    spec = MODELS[model]
    all_columns = [str(c) for c in ds["col"].values]
    keep = np.arange(len(all_columns)) if keep_other else np.arange(len(all_columns) - 1)  # <other> is last
    columns = [all_columns[j] for j in keep]
    if len(columns) < 2:
        raise InputError(f"has {len(columns)} column(s) to model; a row needs at least two", file=file, field="col")
    observed = _observed_sites(spec.observed, spec.family, observe)

    probs = _renormalised(np.asarray(ds["probs"].values, dtype=np.float64)[:, keep], file)
    num_rows = probs.shape[0]
    kwargs: dict[str, Any] = {}
    if spec.family in ("rows", "embedding"):
        if spec.family == "rows":
            kwargs.update(num_rows=num_rows, num_cols=len(columns), observe=observed)
        else:
            kwargs.update(embedding=_embedding_features(ds, file), num_cols=len(columns), observe=observed)
            if rank < 1:
                raise InputError(f"is {rank}; the rank must be at least 1", field="rank")
            kwargs["rank"] = int(rank)
    elif spec.family == "icl":
        context = _context_counts(ds, keep_other, file)
        episode = _checked_episodes(ds, context, all_columns, file) if "episode" in ds else None
        if model == "icl-general":
            if episode is None:
                raise InputError(
                    "missing; icl-general needs episodes, the order of the in-context examples",
                    file=file,
                    field="episode",
                )
            last_example, episode_start = _last_examples(context[:, keep], episode)
            kwargs.update(last_example=last_example, episode_start=episode_start)
        else:
            kwargs["context_counts"] = context[:, keep].astype(np.float64)
        kwargs["observe"] = observed
    else:
        raise ValueError(f"prepare() builds no inputs for models of the {spec.family!r} family")
    if "probs" in observed:
        kwargs["probs"] = probs
    if "counts" in observed:
        if "counts" not in ds:
            raise InputError("missing; observing counts needs sampled tokens per row (log --samples M)",
                             file=file, field="counts")
        counts = np.asarray(ds["counts"].values, dtype=np.int64)[:, keep]
        kwargs.update(counts=counts, total_count=counts.sum(axis=1))

    if "components" in spec.defaults:
        if components < 1:
            raise InputError(f"is {components}; a mixture needs at least one component", field="components")
        kwargs["components"] = int(components)
    coords: dict[str, Any] = {"row": np.arange(num_rows), "col": np.asarray(columns)}
    if "components" in kwargs:
        coords["component"] = np.arange(components)
        parameter_dims = {"w": ["component"], "m": ["component", "col"], "s": ["component"]}
        parameter_dims.update({f"{name}_unlabelled": axes for name, axes in parameter_dims.items()})
        parameter_dims["alpha"] = ["component", "col"]
    elif spec.family == "embedding":
        coords.update(feature=np.arange(kwargs["embedding"].shape[1]), rank=np.arange(kwargs["rank"]))
        parameter_dims = {"U": ["col", "rank"], "U_unit": ["col", "rank"], "V": ["feature", "rank"],
                          "V_unit": ["feature", "rank"], "b": ["col"]}
    else:
        parameter_dims = {"m": ["col"], "alpha": ["col"]}
    dims = {**parameter_dims, "probs": ["row", "col"], "counts": ["row", "col"]}
    fit_kwargs = kwargs
    if model == "matrix" and observed == ("counts",):
        # one pass over the counts now; every evaluation while fitting is then independent of the rows
        fit_kwargs = {name: value for name, value in kwargs.items() if name not in ("counts", "total_count")}
        fit_kwargs["count_statistics"] = count_statistics(kwargs["counts"])
    return ModelInput(
        kwargs=kwargs, coords=coords, dims=dims, columns=columns, observed=observed, fit_kwargs=fit_kwargs
    )


def _embedding_features(ds: xr.Dataset, file: str) -> np.ndarray:
    from bayesmatrix.models.embedding import apply_features, fit_features

    if "embedding" not in ds:
        raise InputError("missing; the embedding model needs a log made with --embeddings", file=file, field="embedding")
    raw = np.asarray(ds["embedding"].values, dtype=np.float64)
    if np.ptp(raw, axis=0).max() == 0:
        raise InputError("is the same for every row; there is nothing to map", file=file, field="embedding")
    return apply_features(fit_features(raw), raw)


def _observed_sites(observable: tuple[str, ...], family: str, observe: Sequence[str] | None) -> tuple[str, ...]:
    if observe is None:
        return ("probs",)
    if isinstance(observe, str):
        observe = (observe,)
    chosen = tuple(dict.fromkeys(observe))  # unique, in the order given
    unknown = [name for name in chosen if name not in observable]
    if not chosen or unknown:
        raise InputError(
            f"is {tuple(observe)}; the {family} models observe one or more of {observable}", field="observe"
        )
    return chosen


def _renormalised(probs: np.ndarray, file: str) -> np.ndarray:
    totals = probs.sum(axis=1)
    empty = totals <= 0
    if empty.any():
        row = int(np.argmax(empty))
        raise InputError(f"puts no probability on the modelled columns (all on {OTHER!r})", file=file, field="probs", row=row)
    return probs / totals[:, None]


def _context_counts(ds: xr.Dataset, keep_other: bool, file: str) -> np.ndarray:
    if "context_counts" not in ds:
        raise InputError("missing; the icl models need an ICL log (context_counts per row)", file=file, field="context_counts")
    context = np.asarray(ds["context_counts"].values, dtype=np.int64)
    if not keep_other:
        other = context[:, -1] > 0
        if other.any():
            row = int(np.argmax(other))
            raise InputError(
                f"has {context[row, -1]} in-context example(s) of {OTHER!r}, which is dropped; use keep_other",
                file=file,
                field="context_counts",
                row=row,
            )
    return context


def _checked_episodes(ds: xr.Dataset, context: np.ndarray, columns: list[str], file: str) -> np.ndarray:
    """The episode of each row, after checking that each episode is one growing context."""
    episode = np.asarray(ds["episode"].values, dtype=np.int64)
    position = context.sum(axis=1)  # read_log checked that ``position`` equals this where present
    start = np.r_[True, episode[1:] != episode[:-1]]
    seen: set[int] = set()
    for row in np.flatnonzero(start):
        if episode[row] in seen:
            raise InputError(
                f"episode {episode[row]} starts again after other episodes; an episode's rows must be consecutive",
                file=file,
                field="episode",
                row=int(row),
            )
        seen.add(int(episode[row]))
    late = start & (position != 0)
    if late.any():
        row = int(np.argmax(late))
        raise InputError(f"episode {episode[row]} starts at position {position[row]}, not 0", file=file, field="position", row=row)
    step = np.diff(context, axis=0, prepend=context[:1])
    decrease = ~start[:, None] & (step < 0)
    if decrease.any():
        row, col = (int(i) for i in np.argwhere(decrease)[0])
        raise InputError(
            f"the count of {columns[col]!r} falls from {context[row - 1, col]} to {context[row, col]} "
            f"within episode {episode[row]}",
            file=file,
            field="context_counts",
            row=row,
        )
    jump = ~start & (np.diff(position, prepend=0) != 1)
    if jump.any():
        row = int(np.argmax(jump))
        raise InputError(
            f"jumps from {position[row - 1]} to {position[row]} within episode {episode[row]}; "
            "positions go up by one example per row",
            file=file,
            field="position",
            row=row,
        )
    return episode


def _last_examples(context: np.ndarray, episode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot of the example added just before each row (zeros at an episode start), and the start flags."""
    episode_start = np.r_[True, episode[1:] != episode[:-1]]
    last_example = np.diff(context, axis=0, prepend=np.zeros_like(context[:1])).astype(np.float64)
    last_example[episode_start] = 0.0  # position 0: no example yet
    return last_example, episode_start
