"""Atomic outputs: the old content or the complete new one, with the mode the user's umask gives."""

import os
import stat
from contextlib import contextmanager

import pytest

from bayesmatrix.data.atomic import atomic_path, umask_mode, write_text_atomic


@contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, mask, expected):
    with umask(mask):
        assert umask_mode() == expected
        written = write_text_atomic(tmp_path / "out.txt", "hello\n")
    assert mode(written) == expected
    assert written.read_text() == "hello\n"


def test_folders_follow_the_umask():
    with umask(0o022):
        assert umask_mode(directory=True) == 0o755


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "out.txt", "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_an_output_that_is_not_a_regular_file_is_refused_untouched(tmp_path, kind):
    from bayesmatrix.data.errors import InputError

    if kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    elif kind == "folder":
        target = tmp_path
    else:
        target = "/dev/null"
    before = os.stat(target)
    with pytest.raises(InputError, match="not a regular file|a folder"):
        write_text_atomic(target, "x")
    after = os.stat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
