"""The LLM log: one netCDF file of next-token probabilities, written and read through xarray.

The contract (README.md, "The LLM log") in short:

- dims ``row`` and ``col`` (optional ``topk``, ``embed``);
- coord ``col``: string labels, the last one ``"<other>"`` (all remaining mass);
  coord ``col_token_id`` (``col``): token ids, ``-1`` for ``<other>``;
- ``probs`` (row, col): the LLM's next-token probabilities, each row sums to 1;
- optional ``prompt``, ``counts``, ``context_counts``, ``episode``, ``position``,
  ``framing`` (each row's framing level, an index into the ``framing_levels`` attribute),
  ``embedding``, ``topk_ids``, ``topk_logprobs``, ``reported_mass`` (row: the probability a
  server reported in the row's top-k, in [0, 1]; the rest is unaccounted for);
- attrs ``schema``, ``model``, ``task`` (JSON), ``created``, ``software_version``
  and whatever else makes the log reproducible.

Every read validates; a violation raises :class:`bayesmatrix.data.errors.InputError` naming
the file, the variable and the first offending row.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from bayesmatrix.data.atomic import atomic_path, check_input_file
from bayesmatrix.data.errors import InputError

SCHEMA = "bayesmatrix.llmlog/1"
OTHER = "<other>"
ROW_SUM_TOLERANCE = 1e-4

# variable name -> dims it must have
_DIMS = {
    "probs": ("row", "col"),
    "prompt": ("row",),
    "counts": ("row", "col"),
    "context_counts": ("row", "col"),
    "episode": ("row",),
    "position": ("row",),
    "framing": ("row",),
    "embedding": ("row", "embed"),
    "topk_ids": ("row", "topk"),
    "topk_logprobs": ("row", "topk"),
    "reported_mass": ("row",),
}
_INTEGER_VARIABLES = ("counts", "context_counts", "episode", "position", "framing", "topk_ids")


def software_version() -> str:
    """The installed bayesmatrix version (``bayesmatrix.__version__``), read from the package metadata.

    The data layer imports nothing of ours above it, not even the top-level package.
    """
    from importlib import metadata

    try:
        return metadata.version("bayesmatrix")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def make_log(
    probs: np.ndarray,
    columns: list[str],
    col_token_id: np.ndarray | list[int] | None = None,
    *,
    model: str,
    task: Mapping[str, Any] | None = None,
    prompt: list[str] | None = None,
    counts: np.ndarray | None = None,
    context_counts: np.ndarray | None = None,
    episode: np.ndarray | None = None,
    position: np.ndarray | None = None,
    framing: np.ndarray | None = None,
    embedding: np.ndarray | None = None,
    topk_ids: np.ndarray | None = None,
    topk_logprobs: np.ndarray | None = None,
    reported_mass: np.ndarray | None = None,
    **attrs: Any,
) -> xr.Dataset:
    """Build a validated LLM log from arrays.

    ``columns`` must end with ``"<other>"``. ``attrs`` are stored as netCDF
    attributes (dicts and lists become JSON strings, ``None`` is dropped).
    ``position`` defaults to the row totals of ``context_counts``.
    """
    # before NumPy's fixed-width strings, which drop a trailing NUL without a word
    _check_labels([str(column) for column in columns], "<in memory>")
    if prompt is not None:
        _check_texts([str(text) for text in prompt], "<in memory>", "prompt")
    probs = np.asarray(probs, dtype=np.float64)
    if col_token_id is None:
        col_token_id = [-1] * len(columns)
    data_vars: dict[str, Any] = {"probs": (_DIMS["probs"], probs)}
    optional = {
        "prompt": None if prompt is None else np.asarray(prompt, dtype=str),
        "counts": counts,
        "context_counts": context_counts,
        "episode": episode,
        "position": position,
        "framing": framing,
        "embedding": embedding,
        "topk_ids": topk_ids,
        "topk_logprobs": topk_logprobs,
        "reported_mass": reported_mass,
    }
    if context_counts is not None and position is None:
        optional["position"] = np.asarray(context_counts).sum(axis=1)
    for name, value in optional.items():
        if value is None:
            continue
        value = np.asarray(value)
        if name in _INTEGER_VARIABLES:
            value = value.astype(np.int64)
        elif name != "prompt":
            value = value.astype(np.float64)
        data_vars[name] = (_DIMS[name], value)
    ds = xr.Dataset(
        data_vars,
        coords={
            "col": np.asarray(columns, dtype=str),
            "col_token_id": ("col", np.asarray(col_token_id, dtype=np.int64)),
        },
    )
    ds.attrs = _clean_attrs(
        {
            "schema": SCHEMA,
            "model": model,
            "task": json.dumps(dict(task or {}), sort_keys=True),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "software_version": software_version(),
            **attrs,
        }
    )
    validate_log(ds, "<in memory>")
    return ds


def _clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    clean = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True)
        elif isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif isinstance(value, Path):
            value = str(value)
        clean[key] = value
    return clean


def task_of(ds: xr.Dataset, file: str | None = None) -> dict[str, Any]:
    """The ``task`` attribute, decoded from JSON (an :class:`InputError` when it is not a JSON object)."""
    return _decode_task(ds.attrs.get("task", "{}"), file)


def _decode_task(value: Any, file: str | None) -> dict[str, Any]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise InputError(f"is a {type(value).__name__}, expected a JSON object as text", file=file, field="task")
    try:
        task = json.loads(value or "{}")
    except (ValueError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise InputError(f"is not JSON ({reason})", file=file, field="task") from None
    if not isinstance(task, dict):
        raise InputError(f"is a JSON {type(task).__name__}, expected an object", file=file, field="task")
    return task


def write_log(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Validate and write a log atomically: a temporary file beside ``path``, then a rename."""
    path = Path(path)
    validate_log(ds, str(path))
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return path


def read_log(path: str | os.PathLike) -> xr.Dataset:
    """Read and validate a log; the data are loaded into memory and the file closed."""
    file = str(path)
    p = check_input_file(path)
    if p.stat().st_size == 0:
        raise InputError("empty file, not an LLM log", file=file)
    try:
        with xr.open_dataset(p, engine="netcdf4") as opened:
            ds = opened.load()
    except Exception as error:  # netCDF4/HDF5 raise OSError, ValueError, RuntimeError...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"not a readable netCDF file ({reason})", file=file) from None
    ds = _decode_text(ds, file)
    try:
        validate_log(ds, file)
    except InputError:
        raise
    except Exception as error:  # a shape of damage the checks above do not name
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"does not follow the LLM log contract ({type(error).__name__}: {reason})",
                         file=file) from None  # fmt: skip
    return ds


def _decode_text(ds: xr.Dataset, file: str) -> xr.Dataset:
    """Labels and prompts stored as bytes (a char array without an encoding) as str, read as UTF-8."""
    for name in ("col", "prompt"):
        if name not in ds.variables:
            continue
        values = np.asarray(ds[name].values)
        if values.dtype.kind == "S" or (values.dtype == object and any(isinstance(v, bytes) for v in values.ravel())):
            texts = []
            for row, value in enumerate(values.ravel()):
                try:
                    texts.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
                except UnicodeDecodeError:
                    raise InputError("holds bytes that are not UTF-8 text", file=file, field=name, row=row) from None
            decoded = np.asarray(texts, dtype=object).reshape(values.shape)
            ds = ds.assign_coords({name: (ds[name].dims, decoded)}) if name in ds.coords else ds.assign(
                {name: (ds[name].dims, decoded)})
    return ds


def _check_texts(texts: list[str], file: str, field: str) -> None:
    """Texts netCDF stores as given (no NUL, which ends a C string; no lone surrogate, which UTF-8 cannot hold)."""
    for row, text in enumerate(texts):
        if "\x00" in text or _unencodable(text):
            raise InputError("holds a NUL or a character UTF-8 cannot store (a lone surrogate); netCDF would cut or "
                             "refuse it", file=file, field=field, row=row)  # fmt: skip


def _check_labels(columns: list[str], file: str) -> None:
    """Column labels that netCDF stores as given: no NUL, no lone surrogate, each once (in one pass)."""
    first_index: dict[str, int] = {}
    for index, column in enumerate(columns):  # a count per label would be quadratic in the columns
        if "\x00" in column or _unencodable(column):
            raise InputError(f"column {index} ({column!r}) holds a NUL or a character UTF-8 cannot store; "
                             "netCDF would cut or refuse it", file=file, field="col")  # fmt: skip
        if column in first_index:
            raise InputError(f"column {column!r} appears twice (columns {first_index[column]} and {index})",
                             file=file, field="col")  # fmt: skip
        first_index[column] = index


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return True
    return False


def validate_log(ds: xr.Dataset, file: str) -> None:
    """Check a log against the contract; raise :class:`InputError` at the first violation."""
    schema = ds.attrs.get("schema")
    if not isinstance(schema, str) or schema != SCHEMA:
        raise InputError(f"attribute 'schema' is {schema!r}, expected {SCHEMA!r}", file=file, field="schema")
    if "probs" not in ds:
        raise InputError("missing variable (every LLM log has probs (row, col))", file=file, field="probs")
    for name, dims in _DIMS.items():
        if name in ds and tuple(ds[name].dims) != dims:
            raise InputError(f"has dims {tuple(ds[name].dims)}, expected {dims}", file=file, field=name)
    if "col" not in ds.coords:
        raise InputError("missing coordinate 'col' (string column labels)", file=file, field="col")
    columns = [str(c) for c in ds["col"].values]
    if not columns or columns[-1] != OTHER:
        raise InputError(f"the last column must be {OTHER!r}", file=file, field="col")
    _check_labels(columns, file)
    if "col_token_id" not in ds.coords or ds["col_token_id"].dims != ("col",):
        raise InputError("missing coordinate col_token_id (col)", file=file, field="col_token_id")
    token_ids = np.asarray(ds["col_token_id"].values)
    if not np.issubdtype(token_ids.dtype, np.integer):
        raise InputError(f"has dtype {token_ids.dtype}, expected integer token ids", file=file, field="col_token_id")
    if int(token_ids[-1]) != -1:
        raise InputError(f"the token id of {OTHER!r} must be -1", file=file, field="col_token_id")

    if "task" in ds.attrs:
        _decode_task(ds.attrs["task"], file)
    if "prompt" in ds:
        _check_texts([str(text) for text in np.asarray(ds["prompt"].values)], file, "prompt")

    probs = np.asarray(ds["probs"].values)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise InputError("holds no rows", file=file, field="probs")
    if not np.issubdtype(probs.dtype, np.floating):
        raise InputError(f"has dtype {probs.dtype}, expected float", file=file, field="probs")
    _first_bad(~np.isfinite(probs), file, "probs", "is not finite (NaN or infinite)")
    _first_bad(probs < 0, file, "probs", "has a negative probability")
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise InputError(
            f"sums to {sums[row]:.6g}, not 1 (tolerance {ROW_SUM_TOLERANCE:g})", file=file, field="probs", row=row
        )

    for name in _INTEGER_VARIABLES:
        if name not in ds:
            continue
        values = np.asarray(ds[name].values)
        if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
            raise InputError(f"has dtype {values.dtype}, expected integers", file=file, field=name)
        bad = ~np.isfinite(values.astype(np.float64)) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
        _first_bad(bad, file, name, "is not finite")
        _first_bad(values != np.round(values), file, name, "is not an integer")
        _first_bad(values < 0, file, name, "is negative")
    for name in ("embedding", "topk_logprobs"):
        if name in ds:
            if not np.issubdtype(np.asarray(ds[name].values).dtype, np.number):
                raise InputError(f"has dtype {ds[name].dtype}, expected numbers", file=file, field=name)
            _first_bad(~np.isfinite(np.asarray(ds[name].values, dtype=np.float64)), file, name, "is not finite")
    if "topk_logprobs" in ds:
        _first_bad(np.asarray(ds["topk_logprobs"].values) > 1e-6, file, "topk_logprobs", "is a log probability above 0")
    if "reported_mass" in ds:
        mass = np.asarray(ds["reported_mass"].values)
        if not np.issubdtype(mass.dtype, np.floating):
            raise InputError(f"has dtype {mass.dtype}, expected float", file=file, field="reported_mass")
        _first_bad(~np.isfinite(mass), file, "reported_mass", "is not finite")
        _first_bad((mass < 0) | (mass > 1.0 + ROW_SUM_TOLERANCE), file, "reported_mass",
                   f"is outside [0, 1] (tolerance {ROW_SUM_TOLERANCE:g})")  # fmt: skip
    if ("topk_ids" in ds) != ("topk_logprobs" in ds):
        raise InputError("topk_ids and topk_logprobs come together", file=file, field="topk_ids")
    if "position" in ds and "context_counts" in ds:
        totals = np.asarray(ds["context_counts"].values).sum(axis=1)
        position = np.asarray(ds["position"].values)
        mismatch = totals != position
        if mismatch.any():
            row = int(np.argmax(mismatch))
            raise InputError(
                f"is {position[row]}, but context_counts sums to {totals[row]}", file=file, field="position", row=row
            )


def _first_bad(mask: np.ndarray, file: str, field: str, what: str) -> None:
    if mask.any():
        row = int(np.argwhere(mask)[0][0])
        raise InputError(what, file=file, field=field, row=row)
