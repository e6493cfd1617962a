"""Checkpoints of a logging run: finished chunks in a sidecar folder, so that a killed run resumes.

All randomness of a log depends only on ``(seed, episode)`` or ``(seed, row)``,
so a resumed run writes the same log as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from bayesmatrix.data.atomic import atomic_path
from bayesmatrix.data.errors import InputError

DEFAULT_CHECKPOINT_EVERY = 64
PARTIAL_SUFFIX = ".partial"
_MANIFEST_FORMAT = "bayesmatrix.log-partial/1"
MISSING_MANIFEST = "manifest.json"
"""What :class:`UnfinishedRunError` names as changed when chunks lie in the folder without a manifest."""


class UnfinishedRunError(InputError):
    """A checkpoint folder holds an unfinished run with other arguments.

    ``way_out`` ends the message; the command line names its own option there.
    """

    def __init__(self, folder: str, changed: Sequence[str], way_out: str = "delete it or rerun with restart=True"):
        self.changed = tuple(changed)
        if self.changed == (MISSING_MANIFEST,):
            what = "holds finished chunks but no manifest.json, so nothing says which run they belong to"
        else:
            what = f"holds an unfinished run with different arguments ({', '.join(self.changed)})"
        super().__init__(f"{what}; {way_out}", file=folder)


class Checkpoint:
    """A sidecar folder of finished chunks, so that a killed run resumes where it stopped.

    ``OUT.partial/`` holds ``manifest.json`` (the arguments that determine the
    log) and one ``<phase>-<index>.npz`` per finished chunk, each written
    atomically. A chunk is ``chunk_units`` episodes or prompts, rounded up to
    whole batches so that chunking never changes the batches.
    """

    def __init__(
        self, folder: os.PathLike | str, manifest: dict[str, Any], chunk_units: int = DEFAULT_CHECKPOINT_EVERY
    ):
        self.folder = Path(folder)
        self.manifest = {"format": _MANIFEST_FORMAT, **manifest}
        self.chunk_units = chunk_units

    def check(self, complete: bool = False) -> None:
        """Raise :class:`InputError` if the folder holds a run with different arguments.

        Only the keys of this manifest are compared unless ``complete`` (which
        lets the arguments be checked before the model's hash is known).
        """
        path = self.folder / "manifest.json"
        if not path.exists():
            # Chunks without their manifest (deleted by hand, or saved by a straggling second run
            # after the first removed the folder) could be any run's: never resume from them.
            if any(self.folder.glob("*.npz")):
                raise UnfinishedRunError(str(self.folder), (MISSING_MANIFEST,))
            return
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = {}
        expected = _json_roundtrip(self.manifest)
        keys = set(expected) | (set(existing) if complete else set())
        changed = sorted(k for k in keys if existing.get(k) != expected.get(k))
        if changed:
            raise UnfinishedRunError(str(self.folder), changed)

    def open(self) -> None:
        """Check the manifest, or create the folder and write it."""
        self.check(complete=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "manifest.json"
        if not path.exists():
            _atomic_write(path, lambda handle: handle.write(json.dumps(self.manifest, sort_keys=True).encode()))

    def load(self, phase: str, index: int) -> dict[str, np.ndarray] | None:
        path = self._chunk(phase, index)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}

    def save(self, phase: str, index: int, arrays: dict[str, np.ndarray]) -> None:
        if not (self.folder / "manifest.json").is_file():
            # The folder went away under this run (another run of the same OUT finished and removed
            # it): recreating it would leave a chunk with no manifest for a later run to trust.
            raise InputError("was removed while this run was writing to it (did another run of the same "
                             "output finish?); run the command again", file=str(self.folder))  # fmt: skip
        _atomic_write(self._chunk(phase, index), lambda handle: np.savez(handle, **arrays))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _chunk(self, phase: str, index: int) -> Path:
        return self.folder / f"{phase}-{index:06d}.npz"


def _json_roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def _run_chunks(
    compute: Callable[[int, int, Callable[[int], None]], dict[str, np.ndarray]],
    n_units: int,
    batch_size: int,
    checkpoint: Checkpoint | None,
    phase: str,
    progress: bool,
    unit: str,
) -> dict[str, np.ndarray]:
    """Run ``compute(start, stop, advance)`` over all units, chunk by chunk, reusing saved chunks."""
    if checkpoint is None:
        chunk_units = n_units
    else:
        chunk_units = max(1, math.ceil(checkpoint.chunk_units / batch_size)) * batch_size
    starts = list(range(0, n_units, chunk_units))
    parts: list[dict[str, np.ndarray] | None] = [
        None if checkpoint is None else checkpoint.load(phase, index) for index in range(len(starts))
    ]
    done = sum(min(chunk_units, n_units - start) for start, part in zip(starts, parts) if part is not None)
    with tqdm(total=n_units, initial=done, unit=unit, desc=phase, file=sys.stderr, disable=not progress) as bar:
        for index, start in enumerate(starts):
            if parts[index] is not None:
                continue
            part = compute(start, min(start + chunk_units, n_units), bar.update)
            if checkpoint is not None:
                checkpoint.save(phase, index, part)
            parts[index] = part
    return _stack(parts)


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
