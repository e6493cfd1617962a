"""ArviZ dims and coords of a model's sites, read off one trace of the model: plates name batch axes.

A site sampled inside ``numpyro.plate("row", ...)`` carries the plate's frame
in its ``cond_indep_stack``; the frames, ordered by their ``dim``, name the
site's batch axes (the rightmost ones, just before its event axes). Event
axes, which no plate can name (a Dirichlet's simplex axis), are named by the
model's registry entry (``ModelSpec.event_dims``). So the dims come from the
model itself and nothing here knows any model.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

# The log's per-row variables: every model observes rows over the log's columns.
ROW_EVENT_DIMS = {"probs": ("col",), "counts": ("col",)}


def site_dims(
    model: Callable, model_kwargs: Mapping[str, Any], event_dims: Mapping[str, tuple[str, ...]] = {}
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Dims of every sample and deterministic site of ``model(**model_kwargs)`` with axes, and each dim's size.

    Axes named neither by a plate nor by ``event_dims`` get ArviZ's default names
    (``<site>_dim_<i>``). Returns ``(dims, sizes)``.
    """
    import jax
    from numpyro import handlers

    trace = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(**model_kwargs)
    events = {**ROW_EVENT_DIMS, **event_dims}
    dims: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for name, site in trace.items():
        if site["type"] not in ("sample", "deterministic"):
            continue
        shape = np.shape(site["value"])
        if not shape:
            continue
        event = list(events.get(name, ()))[: len(shape)]
        batch_ndim = len(shape) - len(event)
        named = dict(enumerate(event, start=batch_ndim))
        for frame in site["cond_indep_stack"]:
            axis = batch_ndim + frame.dim  # frame.dim counts from the right of the batch axes
            if 0 <= axis < batch_ndim:
                named[axis] = frame.name
        for axis, dim in named.items():
            sizes.setdefault(dim, int(shape[axis]))
        dims[name] = [named.get(axis, f"{name}_dim_{axis}") for axis in range(len(shape))]
    return dims, sizes


def coords_for(sizes: Mapping[str, int], labels: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Coordinates: ``labels`` where given (the log's ``row`` and ``col``), else ``arange`` of each dim's size.

    ``sizes`` holds the named dims only (:func:`site_dims`); ArviZ numbers the rest.
    """
    coords = {name: np.asarray(values) for name, values in labels.items()}
    for dim, size in sizes.items():
        coords.setdefault(dim, np.arange(size))
    return coords
