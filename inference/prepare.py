"""Turn an LLM log into the keyword arguments of a model, with ArviZ coordinates and dims.

``prepare(read_log(path), "icl")`` selects the columns, renormalises the rows,
builds the inputs the model's function takes (its keyword parameters: see
:data:`INPUTS`) and raises :class:`bayesmatrix.data.errors.InputError`
(naming the file, the variable and the first offending row) when the log
cannot feed the model. ``model_spec(name).function(**prepare(ds, name).kwargs)``
is the model conditioned on the log. Nothing here names a model: the inputs
come from the function's signature, the dims from its plates
(:mod:`bayesmatrix.inference.dims`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from typing import Any, NamedTuple, Sequence

import numpy as np
import xarray as xr

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER
from bayesmatrix.inference.dims import coords_for, site_dims
from bayesmatrix.models import MODELS, ModelSpec
from bayesmatrix.models.sufficient import count_statistics

# What prepare builds for each keyword parameter a model's function may take.
INPUTS = {
    "num_rows": "the number of rows",
    "num_cols": "the number of modelled columns",
    "probs": "the rows, renormalised over the modelled columns (when observed)",
    "counts": "the sampled tokens per row and column (when observed)",
    "total_count": "the sampled tokens per row (when counts are observed)",
    "context_counts": "the in-context examples of each column before each row",
    "last_example": "one-hot of the example added just before each row (needs episode)",
    "episode_start": "whether each row starts an episode (needs episode)",
    "framing": "the framing level of each row (the log's framing variable)",
    "num_framings": "the number of framing levels (the log's framing_levels attribute)",
    "embedding": "the prompt embeddings, prepared as features (models.embedding.fit_features)",
    "rank": "the rank option",
    "components": "the components option",
    "observe": "the observed sites",
    "count_statistics": "the counts' sufficient statistic, used to fit when counts alone are observed",
}


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name`` (a key of ``MODELS``), or ``"module:attribute"`` naming a
    :class:`ModelSpec` in an importable module, imported now (README, "Add your own model")."""
    if name in MODELS:
        return MODELS[name]
    module_name, colon, attribute = str(name).partition(":")
    if not colon:
        raise InputError(f"unknown model {name!r}; the models are {', '.join(MODELS)}, "
                         "or module:attribute naming a ModelSpec", field="model")  # fmt: skip
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(f"is {name!r}, but module {module_name!r} cannot be imported ({error})", field="model") from None
    spec = getattr(module, attribute, None)
    if not isinstance(spec, ModelSpec):
        raise InputError(f"is {name!r}, but {module_name}.{attribute} is not a ModelSpec", field="model")
    return spec


def model_parameters(spec: ModelSpec) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a model's function."""
    return dict(inspect.signature(spec.function).parameters)


class ModelInput(NamedTuple):
    """What :func:`prepare` returns."""

    kwargs: dict[str, Any]
    """Keyword arguments of the model's function: data arrays, options and the observed arrays.
    For a prior or posterior predictive, set the ``observed`` ones to ``None``."""
    coords: dict[str, Any]
    """ArviZ coordinates: ``row`` (the log's row indices), ``col`` (the column labels used), and
    ``arange`` for every other named axis (``component``, ``feature``, ``rank``, ...)."""
    dims: dict[str, list[str]]
    """ArviZ dims of every site with axes, e.g. ``{"alpha": ["col"], "probs": ["row", "col"]}``,
    from the model's plates and its registry entry's ``event_dims``."""
    columns: list[str]
    """The column labels the model sees, in order."""
    observed: tuple[str, ...]
    """The observed sites, each also a key of ``kwargs``."""
    fit_kwargs: dict[str, Any] | None = None
    """The keyword arguments to fit with: ``kwargs`` with per-row observations replaced by
    their sufficient statistic where the model takes one (a ``count_statistics`` parameter,
    with counts alone observed: each evaluation then costs the same at any number of
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
    """Model inputs from a validated LLM log (see ``bayesmatrix.data.llmlog.read_log``).

    ``model`` is a name for :func:`model_spec`. The inputs built are the keyword
    parameters of the model's function that :data:`INPUTS` lists; the others
    keep the function's defaults, and a required one prepare cannot build is an error.

    - ``keep_other=False`` drops the ``<other>`` column and renormalises each
      row over the rest. This is exact, not an approximation: by the
      Dirichlet's aggregation property the renormalised remaining columns of a
      Dirichlet(alpha) row follow Dirichlet(alpha without ``<other>``), and
      counts restricted to them are Dirichlet-multinomial given their total.
      An ICL log whose in-context examples include ``<other>`` then cannot be
      used (raise); ``keep_other=True`` keeps ``<other>`` as a category.
    - ``components``: K, for a model that takes ``components``.
    - ``observe``: ``("probs",)`` (default), ``("counts",)`` (tokens sampled
      from each row, logged with samples per row) or both, among the model's
      ``ModelSpec.observed``.
    - ``file``: the name used in errors; defaults to the file the log was read from.
    - ``rank``: R, for a model that takes ``rank``. An ``embedding`` input is the
      log's ``embedding`` (row, embed) prepared by
      :func:`bayesmatrix.models.embedding.fit_features` on all rows: centred,
      projected on at most 64 principal components, scaled to unit mean square.

    ICL logs with ``episode`` must hold each episode in consecutive rows, at
    positions 0, 1, 2, ... with ``context_counts`` growing by one example per
    row; ``last_example`` and ``episode_start`` need ``episode`` (the order of
    the examples).
    """
    file = file or ds.encoding.get("source") or "<in memory>"
    spec = model_spec(model)
    observed = _observed_sites(spec.observed, model, observe)
    log = _Log(ds, keep_other, file, model)
    if len(log.columns) < 2:
        raise InputError(f"has {len(log.columns)} column(s) to model; a row needs at least two", file=file, field="col")
    probs = log.probs  # checked whatever is observed: every row must put mass on the modelled columns
    options = {"rank": rank, "components": components, "observe": observed}
    parameters = model_parameters(spec)
    kwargs: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name in ("probs", "counts", "total_count"):
            site = "probs" if name == "probs" else "counts"
            if site in observed:
                kwargs[name] = probs if name == "probs" else log.counts if name == "counts" else log.counts.sum(axis=1)
        elif name in ("rank", "components"):
            if options[name] < 1:
                raise InputError(f"is {options[name]}; the model needs at least one", field=name)
            kwargs[name] = int(options[name])
        elif name == "observe":
            kwargs[name] = observed
        elif name == "count_statistics":
            continue  # built below, for fitting only
        elif name in INPUTS:
            kwargs[name] = getattr(log, name)
        elif parameter.default is inspect.Parameter.empty and parameter.kind not in (
            inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL
        ):
            raise InputError(f"is {model!r}, whose function takes {name!r}, which prepare cannot build from a log "
                             f"(it builds {', '.join(INPUTS)})", field="model")  # fmt: skip
    dims, sizes = site_dims(spec.function, kwargs, spec.event_dims)
    labels = {"row": np.arange(log.num_rows), "col": np.asarray(log.columns)}
    if "framing" in sizes and "framing" in kwargs:
        labels["framing"] = np.asarray(log.framing_labels)
    coords = coords_for(sizes, labels)
    fit_kwargs = kwargs
    if "count_statistics" in parameters and observed == ("counts",):
        # one pass over the counts now; every evaluation while fitting is then independent of the rows
        fit_kwargs = {name: value for name, value in kwargs.items() if name not in ("counts", "total_count")}
        fit_kwargs["count_statistics"] = count_statistics(kwargs["counts"])
    return ModelInput(
        kwargs=kwargs, coords=coords, dims=dims, columns=log.columns, observed=observed, fit_kwargs=fit_kwargs
    )


class _Log:
    """The inputs :func:`prepare` can build from one log, each built (and checked) on first use."""

    def __init__(self, ds: xr.Dataset, keep_other: bool, file: str, model: str):
        self.ds, self.keep_other, self.file, self.model = ds, keep_other, file, model
        all_columns = [str(c) for c in ds["col"].values]
        self.all_columns = all_columns
        self.keep = np.arange(len(all_columns)) if keep_other else np.arange(len(all_columns) - 1)  # <other> is last
        self.columns = [all_columns[j] for j in self.keep]
        self.num_rows = int(ds.sizes["row"])
        self.num_cols = len(self.columns)

    @functools.cached_property
    def probs(self) -> np.ndarray:
        return _renormalised(np.asarray(self.ds["probs"].values, dtype=np.float64)[:, self.keep], self.file)

    @functools.cached_property
    def counts(self) -> np.ndarray:
        if "counts" not in self.ds:
            raise InputError("missing; observing counts needs sampled tokens per row (a log with samples)",
                             file=self.file, field="counts")  # fmt: skip
        return np.asarray(self.ds["counts"].values, dtype=np.int64)[:, self.keep]

    @functools.cached_property
    def _context(self) -> tuple[np.ndarray, np.ndarray | None]:
        """All columns' context counts and the episodes, checked together."""
        context = _context_counts(self.ds, self.keep_other, self.file)
        episode = _checked_episodes(self.ds, context, self.all_columns, self.file) if "episode" in self.ds else None
        return context, episode

    @property
    def context_counts(self) -> np.ndarray:
        return self._context[0][:, self.keep].astype(np.float64)

    @functools.cached_property
    def _last_examples(self) -> tuple[np.ndarray, np.ndarray]:
        context, episode = self._context
        if episode is None:
            raise InputError(f"missing; the {self.model} model needs episodes, the order of the in-context examples",
                             file=self.file, field="episode")  # fmt: skip
        return _last_examples(context[:, self.keep], episode)

    @property
    def last_example(self) -> np.ndarray:
        return self._last_examples[0]

    @property
    def episode_start(self) -> np.ndarray:
        return self._last_examples[1]

    @functools.cached_property
    def embedding(self) -> np.ndarray:
        return _embedding_features(self.ds, self.file, self.model)

    @functools.cached_property
    def framing_labels(self) -> list[str]:
        return framing_labels(self.ds, self.file)

    @property
    def num_framings(self) -> int:
        return len(self.framing_labels)

    @functools.cached_property
    def framing(self) -> np.ndarray:
        if "framing" not in self.ds:
            raise InputError(f"missing; the {self.model} model needs each row's framing level (a log written "
                             "with framings)", file=self.file, field="framing")  # fmt: skip
        framing = np.asarray(self.ds["framing"].values, dtype=np.int64)
        outside = framing >= self.num_framings
        if outside.any():
            row = int(np.argmax(outside))
            raise InputError(f"is level {framing[row]}, but framing_levels lists {self.num_framings} level(s)",
                             file=self.file, field="framing", row=row)  # fmt: skip
        return framing


def framing_levels(ds: xr.Dataset, file: str | None = None) -> list[dict[str, str]]:
    """The values of each framing level of a log (its ``framing_levels`` attribute, JSON); level ``i`` is the
    ``framing`` value ``i``. A log with a ``framing`` variable but no attribute gets levels named by number."""
    file = file or ds.encoding.get("source") or "<in memory>"
    text = ds.attrs.get("framing_levels")
    if text is None:
        if "framing" not in ds:
            raise InputError("missing; the log has no framing levels", file=file, field="framing_levels")
        return [{"level": str(level)} for level in range(int(np.asarray(ds["framing"].values).max()) + 1)]
    try:
        levels = json.loads(text)
    except (TypeError, ValueError):
        raise InputError("is not JSON", file=file, field="framing_levels") from None
    if not isinstance(levels, list) or not levels or not all(isinstance(level, dict) for level in levels):
        raise InputError("must be a non-empty JSON list of objects (placeholder -> value)", file=file,
                         field="framing_levels")
    return [{str(key): str(value) for key, value in level.items()} for level in levels]


def framing_labels(ds: xr.Dataset, file: str | None = None) -> list[str]:
    """One label per framing level, ``"bias=30"`` (several placeholders joined by ``", "``): the
    ``framing`` coordinate of a fit."""
    return [", ".join(f"{key}={value}" for key, value in level.items()) for level in framing_levels(ds, file)]


def _embedding_features(ds: xr.Dataset, file: str, model: str) -> np.ndarray:
    from bayesmatrix.models.embedding import apply_features, fit_features

    if "embedding" not in ds:
        raise InputError(f"missing; the {model} model needs the prompt embeddings (a log with embeddings)",
                         file=file, field="embedding")  # fmt: skip
    raw = np.asarray(ds["embedding"].values, dtype=np.float64)
    if np.ptp(raw, axis=0).max() == 0:
        raise InputError("is the same for every row; there is nothing to map", file=file, field="embedding")
    return apply_features(fit_features(raw), raw)


def _observed_sites(observable: tuple[str, ...], model: str, observe: Sequence[str] | None) -> tuple[str, ...]:
    if observe is None:
        return ("probs",)
    if isinstance(observe, str):
        observe = (observe,)
    chosen = tuple(dict.fromkeys(observe))  # unique, in the order given
    unknown = [name for name in chosen if name not in observable]
    if not chosen or unknown:
        raise InputError(
            f"is {tuple(observe)}; the {model} model observes one or more of {observable}", field="observe"
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
        raise InputError("missing; the model needs an ICL log (context_counts per row)", file=file, field="context_counts")
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
