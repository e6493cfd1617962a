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


def dead_pid():
    """The pid of a process that has ended (and been reaped), as a SIGKILLed writer's is."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporaries_carry_one_mark_and_a_dead_process_s_are_removed_by_the_next_write(tmp_path):
    from bayesmatrix.data.atomic import TEMPORARY_MARK, temporary_prefix

    host = temporary_prefix("x").removeprefix(TEMPORARY_MARK).split("-")[0]
    stale_file = tmp_path / f"{TEMPORARY_MARK}{host}-{dead_pid()}.out.txt.abc123.tmp"
    stale_folder = tmp_path / f"{TEMPORARY_MARK}{host}-{dead_pid()}.run.def456.tmp"
    live = tmp_path / f"{temporary_prefix('other.txt')}ghi789.tmp"  # this process's: still being written
    elsewhere = tmp_path / f"{TEMPORARY_MARK}00000000-{dead_pid()}.out.txt.jkl.tmp"  # another machine's
    mine = tmp_path / ".out.txt.swp"  # the user's own hidden file
    for path in (stale_file, live, elsewhere, mine):
        path.write_text("half")
    stale_folder.mkdir()
    (stale_folder / "posterior.nc").write_text("half")

    seen = {}
    with atomic_path(tmp_path / "out.txt") as tmp:
        seen["name"] = tmp.name
        tmp.write_text("done")
    assert seen["name"].startswith(temporary_prefix("out.txt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([elsewhere.name, live.name, mine.name, "out.txt"])


def test_an_output_in_a_folder_that_takes_no_file_or_an_empty_path_is_refused(tmp_path):
    from bayesmatrix.data.atomic import check_output_file
    from bayesmatrix.data.errors import InputError

    with pytest.raises(InputError, match=r"^/proc/x\.nc: cannot be written into /proc"):
        check_output_file("/proc/x.nc")
    with pytest.raises(InputError, match="is empty"):
        check_output_file("")
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    with pytest.raises(InputError, match="a part of it is a file"):
        check_output_file(blocker / "out.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_symlink_loop_is_named_as_one_in_and_out(tmp_path):
    from bayesmatrix.data.atomic import check_input_file, check_output_file
    from bayesmatrix.data.errors import InputError

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for check in (check_input_file, check_output_file):
        with pytest.raises(InputError, match="symlink loop"):
            check(loop)
    with pytest.raises(InputError, match="no such file"):
        check_input_file(tmp_path / "missing")


@pytest.mark.timeout(60)
def test_an_input_that_is_a_fifo_is_refused_without_reading_it(tmp_path):
    from bayesmatrix.data.atomic import check_input_file
    from bayesmatrix.data.errors import InputError

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        check_input_file(fifo)
    with pytest.raises(InputError, match="is a directory"):
        check_input_file(tmp_path)
