"""Atomic file output: write beside the destination under a temporary name, then rename.

A reader (or a crash) never sees a half-written file: the destination holds
either its old content or the complete new one. The file gets the mode a plain
``open`` would give it under the user's umask (``tempfile`` creates 0600 files
and 0700 folders, and a rename keeps the mode).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def umask_mode(directory: bool = False) -> int:
    """The mode a new file (0666) or folder (0777) gets under the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output path that names anything but a regular file (or nothing yet); call before the work.

    Renaming over a device node, a FIFO or a folder would replace it (as root,
    ``/dev/null`` itself); an empty path is the working directory.
    """
    from bayesmatrix.data.errors import InputError

    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise InputError(f"is {kind}; give the path of a file to write", file=str(path))
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    On any error the temporary file is removed and ``path`` is left untouched.
    """
    path = check_output_file(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, umask_mode())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
