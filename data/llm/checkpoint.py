"""Checkpoints of a logging run: finished chunks in a sidecar folder, so that a killed run resumes.

All randomness of a log depends only on ``(seed, episode)`` or ``(seed, row)``,
so a resumed run writes the same log as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import fcntl
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
LOCK_FILE = "lock"
"""The file in ``OUT.partial/`` that the writing process holds an OS lock on (``flock``), holding its pid."""


_HELD: dict[tuple[int, int], list[int]] = {}
"""The lock files this process holds: (device, inode) -> [file descriptor, checkpoints sharing it]."""


class UnfinishedRunError(InputError):
    """A checkpoint folder holds an unfinished run with other arguments.

    ``way_out`` ends the message; the command line names its own option there.
    """

    def __init__(self, folder: str, changed: Sequence[str], way_out: str = "delete it or rerun with restart=True"):
        self.changed = tuple(changed)
        if self.changed == (MISSING_MANIFEST,):
            what = "holds finished chunks but no manifest.json, so nothing says which run they belong to"
        elif len(self.changed) == 1 and self.changed[0].endswith(".npz"):
            what = f"holds a damaged chunk, {self.changed[0]}, that cannot be read"
        else:
            what = f"holds an unfinished run with different arguments ({', '.join(self.changed)})"
        super().__init__(f"{what}; {way_out}", file=folder)


class Checkpoint:
    """A sidecar folder of finished chunks, so that a killed run resumes where it stopped.

    ``OUT.partial/`` holds ``manifest.json`` (the arguments that determine the
    log) and one ``<phase>-<index>.npz`` per finished chunk, each written
    atomically. A chunk is ``chunk_units`` episodes or prompts, rounded up to
    whole batches so that chunking never changes the batches.

    Only the process holding the folder's lock (``flock`` on ``OUT.partial/lock``,
    taken by :meth:`check` when the folder exists and by :meth:`open`) reads or
    writes it; a second process is refused in one line. The OS releases the
    lock when the process ends, however it ends.
    """

    def __init__(
        self, folder: os.PathLike | str, manifest: dict[str, Any], chunk_units: int = DEFAULT_CHECKPOINT_EVERY
    ):
        self.folder = Path(folder)
        self.manifest = {"format": _MANIFEST_FORMAT, **manifest}
        self.chunk_units = chunk_units
        self._lock: tuple[int, int] | None = None  # the lock file's (device, inode), a key of _HELD

    def _hold_lock(self, create: bool) -> bool:
        """Hold the folder's lock (making the folder if ``create``); False if there is no folder to lock.

        An :class:`InputError` naming the folder when another process holds it. The lock
        belongs to the process: two checkpoints of one folder in one process share it.
        """
        path = self.folder / LOCK_FILE
        while True:
            if self._lock is not None:
                if _same_file(_HELD[self._lock][0], path):
                    return True
                self.release()  # the folder was removed and made again under us: lock the new one
            if create:
                self.folder.mkdir(parents=True, exist_ok=True)
            elif not self.folder.is_dir():
                return False
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # removed between the two calls; look again
                continue
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino)
            if key in _HELD:
                os.close(fd)
                _HELD[key][1] += 1
                self._lock = key
                continue  # checks that it is still the folder's lock file
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise InputError(f"is in use by another run writing the same output (pid {owner}); wait for it "
                                 "to finish or choose another output", file=str(self.folder)) from None  # fmt: skip
            if not _same_file(fd, path):  # the holder removed the folder while we took the lock
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _HELD[key] = [fd, 1]
            self._lock = key
            return True

    def release(self) -> None:
        """Let go of the folder's lock (the end of the process does too)."""
        if self._lock is not None:
            held = _HELD[self._lock]
            held[1] -= 1
            if held[1] == 0:
                os.close(held[0])
                del _HELD[self._lock]
            self._lock = None

    def __del__(self):
        with contextlib.suppress(Exception):  # at interpreter exit the module may be gone; the OS unlocks
            self.release()

    def check(self, complete: bool = False) -> None:
        """Raise :class:`InputError` if the folder holds a run with different arguments.

        Only the keys of this manifest are compared unless ``complete`` (which
        lets the arguments be checked before the model's hash is known).
        """
        self._hold_lock(create=False)
        path = self.folder / "manifest.json"
        if not path.exists():
            # Chunks without their manifest (deleted by hand, or saved by a straggling second run
            # after the first removed the folder) could be any run's: never resume from them.
            if any(self.folder.glob("*.npz")):
                raise UnfinishedRunError(str(self.folder), (MISSING_MANIFEST,))
            return
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # unreadable: it matches no run's arguments
            existing = {}
        if not isinstance(existing, dict):
            existing = {}
        expected = _json_roundtrip(self.manifest)
        keys = set(expected) | (set(existing) if complete else set())
        changed = sorted(k for k in keys if existing.get(k) != expected.get(k))
        if changed:
            raise UnfinishedRunError(str(self.folder), changed)
        if not complete:  # the first check, before the slow model load: a damaged chunk is found now
            for chunk in sorted(self.folder.glob("*.npz")):
                _read_chunk(chunk, self.folder)

    def open(self) -> None:
        """Take the folder's lock (creating the folder), then check the manifest or write it."""
        self._hold_lock(create=True)
        self.check(complete=True)
        path = self.folder / "manifest.json"
        if not path.exists():
            _atomic_write(path, lambda handle: handle.write(json.dumps(self.manifest, sort_keys=True).encode()))

    def load(self, phase: str, index: int) -> dict[str, np.ndarray] | None:
        path = self._chunk(phase, index)
        if not path.exists():
            return None
        return _read_chunk(path, self.folder)

    def save(self, phase: str, index: int, arrays: dict[str, np.ndarray]) -> None:
        if not (self.folder / "manifest.json").is_file():
            # The folder went away under this run (another run of the same OUT finished and removed
            # it): recreating it would leave a chunk with no manifest for a later run to trust.
            raise InputError("was removed while this run was writing to it (did another run of the same "
                             "output finish?); run the command again", file=str(self.folder))  # fmt: skip
        _atomic_write(self._chunk(phase, index), lambda handle: np.savez(handle, **arrays))

    def discard_if_empty(self) -> None:
        """Remove the folder if it holds no finished chunk yet (only a manifest that nothing resumes)."""
        if self._lock is not None and not any(self.folder.glob("*.npz")):
            self.remove()

    def remove(self) -> None:
        """Remove the folder, unless another process holds its lock (an :class:`InputError` then)."""
        if self._hold_lock(create=False):
            shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def _chunk(self, phase: str, index: int) -> Path:
        return self.folder / f"{phase}-{index:06d}.npz"


def _read_chunk(path: Path, folder: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except Exception:  # zipfile, NumPy and OSError all report damage; it is one fault to the user
        raise UnfinishedRunError(str(folder), (path.name,)) from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


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
            try:
                part = compute(start, min(start + chunk_units, n_units), bar.update)
            except InputError:
                if checkpoint is not None:
                    checkpoint.discard_if_empty()  # a run refused at once leaves nothing to refuse its fix
                raise
            if checkpoint is not None:
                checkpoint.save(phase, index, part)
            parts[index] = part
    return _stack(parts)


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
