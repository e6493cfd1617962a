"""Run directories: what ``fit`` writes and ``diagnose``, ``compare`` and ``report`` read.

Layout (README, "Run directory")::

    RUN_DIR/
      posterior.nc   ArviZ DataTree: posterior, sample_stats, log_likelihood, observed_data
                     (posterior_predictive where made; elbo for SVI runs)
      run.json       model, method, options, seed, data file hash, package versions, timings
      summary.csv    ArviZ summary of the global (not per-row) sites
      plots/         PNG figures

A run directory is built under a temporary name beside its destination and
renamed into place, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from bayesmatrix.data.atomic import check_writable_folder, remove_stale_temporaries, temporary_prefix, umask_mode
from bayesmatrix.data.errors import InputError

POSTERIOR_FILE = "posterior.nc"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.csv"
PLOTS_DIR = "plots"

PACKAGES = ("bayesmatrix", "numpyro", "jax", "jaxlib", "arviz-base", "arviz-stats", "xarray", "numpy", "torch", "transformers")


class Run(NamedTuple):
    """A run directory read back."""

    path: Path
    """The run directory."""
    datatree: Any
    """The ArviZ DataTree of posterior.nc, loaded into memory."""
    info: dict
    """run.json."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder that ``fit`` wrote (it holds run.json and posterior.nc)."""
    path = Path(path)
    return (path / RUN_FILE).is_file() and (path / POSTERIOR_FILE).is_file()


def check_destination(out: str | os.PathLike, force: bool, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Refuse an ``out`` that exists unless ``force``; call before any work.

    ``force`` replaces only a run directory (:func:`is_run_dir`), and never the
    working directory or a folder holding one of ``inputs`` (the log being
    fitted): replacing is deleting, and anything else there is the user's.
    """
    if str(out) == "":
        raise InputError("is empty; give the path of a run directory", file="''")
    out = Path(out)
    if not out.exists():
        if os.path.islink(out):
            raise InputError("is a symlink that leads nowhere (or back to itself)", file=str(out))
        check_writable_folder(out.parent, str(out))  # /proc, a read-only disk: refused now, not after sampling
        return out
    if not out.is_dir():
        raise InputError("exists and is not a directory", file=str(out))
    if not force:
        raise InputError("already exists; choose another run directory or pass force=True to replace it", file=str(out))
    where = out.resolve()
    if Path.cwd().resolve().is_relative_to(where):
        raise InputError("holds the working directory; a run directory is replaced whole, so choose a folder of its own",
                         file=str(out))  # fmt: skip
    for item in inputs:
        if Path(item).resolve().is_relative_to(where):
            raise InputError(f"holds the input {item}; replacing it would delete the input", file=str(out))
    if not is_run_dir(out):
        raise InputError(f"is not a run directory (no {RUN_FILE} and {POSTERIOR_FILE}), so it is not replaced",
                         file=str(out))  # fmt: skip
    check_writable_folder(out.parent, str(out))
    return out


def write_run_dir(
    out: str | os.PathLike,
    datatree,
    info: Mapping[str, Any],
    summary=None,
    figures: Callable[[Any, Path], None] | None = None,
    force: bool = False,
) -> Path:
    """Write a run directory atomically: build it under a temporary name, then rename.

    ``figures(datatree, plots_dir)`` may draw PNG files into ``plots/``.
    """
    out = check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)  # what a killed fit left beside it
    staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(out.name), suffix=".tmp", dir=out.parent))
    try:
        datatree.to_netcdf(staging / POSTERIOR_FILE, engine="netcdf4")
        with open(staging / RUN_FILE, "w") as handle:
            json.dump(dict(info), handle, indent=2, sort_keys=True, default=_json_default)
            handle.write("\n")
        if summary is not None:
            summary.to_csv(staging / SUMMARY_FILE)
        (staging / PLOTS_DIR).mkdir()
        if figures is not None:
            figures(datatree, staging / PLOTS_DIR)
        os.chmod(staging, umask_mode(directory=True))  # mkdtemp made it 0700; files inside follow the umask
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _replace_dir(new: Path, out: Path) -> None:
    if not out.exists():
        os.replace(new, out)
        return
    # A directory cannot be renamed over a non-empty one: move the old one aside first.
    old = out.with_name(f"{temporary_prefix(out.name)}old")
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


def read_run(path: str | os.PathLike) -> Run:
    """Read a run directory written by ``fit``; a missing or broken one is an InputError."""
    import xarray as xr

    from bayesmatrix.data.atomic import check_input_file

    path = Path(path)
    try:
        os.stat(path)
    except OSError as error:
        reason = "a symlink loop" if error.errno == errno.ELOOP else "no such directory"
        raise InputError(f"not a run directory ({reason})", file=str(path)) from None
    if not path.is_dir():
        raise InputError("not a run directory (not a folder)", file=str(path))
    for name in (POSTERIOR_FILE, RUN_FILE):
        if not os.path.lexists(path / name):
            raise InputError(f"not a run directory: {name} is missing", file=str(path))
        check_input_file(path / name)  # a FIFO or a link loop in its place is refused, not read
    run_file = str(path / RUN_FILE)
    try:
        info = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"is not valid JSON ({error.msg}, line {error.lineno})", file=run_file) from None
    except UnicodeDecodeError as error:
        raise InputError(f"is not UTF-8 text (byte {error.start})", file=run_file) from None
    except (RecursionError, ValueError):
        raise InputError("is not valid JSON (nested too deeply, or a number too long)", file=run_file) from None
    _check_info(info, run_file)
    try:
        with xr.open_datatree(path / POSTERIOR_FILE, engine="netcdf4") as opened:
            datatree = opened.load()
    except Exception as error:  # netCDF4/HDF5 raise several types
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"not a readable DataTree netCDF file ({reason})", file=str(path / POSTERIOR_FILE)) from None
    if "posterior" not in datatree.children:
        found = ", ".join(sorted(datatree.children)) or "none"
        what = " (an LLM log?)" if "probs" in datatree.data_vars else ""
        raise InputError(f"has no posterior group{what}; groups: {found}", file=str(path / POSTERIOR_FILE))
    return Run(path=path, datatree=datatree, info=info)


# run.json keys that readers use, and the JSON type each must have
_INFO_TYPES = {"model": str, "method": str, "data_file": str, "data_sha256": str, "options": dict, "columns": list}


def _check_info(info: Any, file: str) -> None:
    if not isinstance(info, dict):
        raise InputError(f"is a JSON {type(info).__name__}, expected an object (what fit writes)", file=file)
    for key, kind in _INFO_TYPES.items():
        if key in info and not isinstance(info[key], kind):
            raise InputError(f"is a JSON {type(info[key]).__name__}, expected {kind.__name__}", file=file, field=key)
    if "observe" in info.get("options", {}) and not isinstance(info["options"]["observe"], (list, str)):
        raise InputError("is not a list of site names", file=file, field="options.observe")


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in run.json")
