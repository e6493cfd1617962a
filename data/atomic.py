"""Files in and out: atomic output (a temporary beside the destination, then a rename) and path checks.

A reader (or a crash) never sees a half-written file: the destination holds
either its old content or the complete new one. The file gets the mode a plain
``open`` would give it under the user's umask (``tempfile`` creates 0600 files
and 0700 folders, and a rename keeps the mode).

Every temporary file or folder is named by :func:`temporary_prefix`
(``.bayesmatrix-tmp-HOST-PID.NAME.``): a run killed by SIGKILL cannot remove its
own, so the next write into the same folder removes those whose process is gone
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from bayesmatrix.data.errors import InputError

TEMPORARY_MARK = ".bayesmatrix-tmp-"
"""How every temporary file and folder of ours starts; ``ls -a`` shows it, a user's file never has it."""
_TEMPORARY = re.compile(re.escape(TEMPORARY_MARK) + r"(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.")


def _host_tag() -> str:
    # The pid of a temporary only says something on the machine that made it (a shared folder
    # on a network filesystem sees other machines' temporaries, whose pids mean nothing here).
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_prefix(name: str) -> str:
    """The prefix of a temporary that becomes ``name``: the mark, this machine, this process, the name."""
    return f"{TEMPORARY_MARK}{_host_tag()}-{os.getpid()}.{name}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in ``folder`` left by a process of this machine that no longer runs.

    A killed write (SIGKILL, a power cut) leaves its temporary behind; a live
    process's temporary and another machine's are kept. Returns what was removed.
    """
    folder = Path(folder) if str(folder) else Path(".")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    host = _host_tag()
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


def umask_mode(directory: bool = False) -> int:
    """The mode a new file (0666) or folder (0777) gets under the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def check_input_file(path: str | os.PathLike, field: str | None = None) -> Path:
    """``path`` as a readable regular file, or an :class:`InputError` saying what it is instead.

    A FIFO or a device would block a read or never end, and a symlink loop is
    not a missing file; each gets its own message.
    """
    file = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError("no such file", file=file, field=field) from None
    except OSError as error:
        raise InputError(_os_reason(error), file=file, field=field) from None
    except ValueError:  # an embedded NUL
        raise InputError("is not a valid path", file=file, field=field) from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError("is a directory, not a file", file=file, field=field)
    if not stat.S_ISREG(info.st_mode):
        raise InputError("is not a regular file (a FIFO, a socket or a device); give a file", file=file, field=field)
    if not os.access(path, os.R_OK):
        raise InputError("cannot be read (permission denied)", file=file, field=field)
    return Path(path)


def _os_reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink loop (a link that leads back to itself)"
    if error.errno == errno.EACCES:
        return "cannot be read (permission denied)"
    if error.errno == errno.ENAMETOOLONG:
        return "is a path too long for the filesystem"
    if error.errno == errno.ENOTDIR:
        return "is not a path: a part of it is a file, not a folder"
    return error.strerror or type(error).__name__


def check_writable_folder(folder: str | os.PathLike, file: str) -> None:
    """Refuse a destination whose folder (or the nearest one that exists) cannot take a new file.

    A file is created there and removed again: permission bits do not tell (root
    may write anywhere, yet not into /proc), so only trying does.
    """
    folder = Path(folder) if str(folder) else Path(".")
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot be written: {existing} is not a folder", file=file)
    try:
        fd, probe = tempfile.mkstemp(prefix=temporary_prefix("probe"), dir=existing)
    except OSError as error:
        raise InputError(f"cannot be written into {existing} ({error.strerror or type(error).__name__})",
                         file=file) from None  # fmt: skip
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output path that names anything but a regular file (or nothing yet); call before the work.

    Renaming over a device node, a FIFO or a folder would replace it (as root,
    ``/dev/null`` itself); an empty path is the working directory; a folder
    that cannot take a file (``/proc``, read-only) is refused now, not after the work.
    """
    if str(path) == "":
        raise InputError("is empty; give the path of a file to write", file="''")
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:  # nothing there yet (or a link to nothing, which the rename replaces)
        info = None
    except OSError as error:
        raise InputError(_os_reason(error), file=str(path)) from None
    except ValueError:  # an embedded NUL
        raise InputError("is not a valid path", file=str(path)) from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise InputError(f"is {kind}; give the path of a file to write", file=str(path))
    check_writable_folder(path.parent, str(path))
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    On any error the temporary file is removed and ``path`` is left untouched.
    Temporaries that killed processes left beside ``path`` are removed first.
    """
    path = check_output_file(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(parent)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=".tmp", dir=parent)
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


def write_rows_atomic(path: str | os.PathLike, rows: list[dict], record: dict | None = None, key: str = "rows") -> Path:
    """Rows of a table written atomically by ``path``'s suffix: ``.json`` (``record``'s entries, then the rows
    under ``key``) or ``.csv`` (the rows, the first row's keys as the header)."""
    import csv
    import io
    import json

    path = Path(path)
    if path.suffix == ".json":
        text = json.dumps({**(record or {}), key: list(rows)}, indent=2) + "\n"
    elif path.suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        raise InputError("the output must end in .json or .csv", file=str(path), field="out")
    return write_text_atomic(path, text)
