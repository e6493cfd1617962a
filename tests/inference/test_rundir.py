"""Run directories: written whole or not at all, read back as they were, refused when broken."""

import json

import numpy as np
import pytest

from bayesmatrix.data.errors import InputError
from bayesmatrix.inference.rundir import POSTERIOR_FILE, RUN_FILE, check_destination, read_run, write_run_dir


@pytest.fixture
def datatree():
    import arviz_base as azb

    rng = np.random.default_rng(0)
    return azb.from_dict(
        {"posterior": {"s": rng.gamma(2.0, size=(2, 5)), "m": rng.dirichlet([1.0, 1.0], size=(2, 5))}},
        dims={"m": ["col"]},
        coords={"col": ["a", "b"]},
    )


def test_write_then_read_gives_back_the_posterior_and_info(tmp_path, datatree):
    info = {"model": "matrix", "seed": np.int64(3), "options": {"observe": ("probs",)}}
    out = write_run_dir(tmp_path / "run", datatree, info)
    run = read_run(out)
    np.testing.assert_array_equal(run.datatree["posterior"]["s"].values, datatree["posterior"]["s"].values)
    assert list(run.datatree["posterior"]["m"].coords["col"].values) == ["a", "b"]
    assert run.info == {"model": "matrix", "seed": 3, "options": {"observe": ["probs"]}}
    assert (out / "plots").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left


def test_an_existing_run_is_kept_unless_forced(tmp_path, datatree):
    out = write_run_dir(tmp_path / "run", datatree, {"n": 1})
    with pytest.raises(InputError, match="already exists"):
        write_run_dir(out, datatree, {"n": 2})
    assert read_run(out).info == {"n": 1}
    write_run_dir(out, datatree, {"n": 2}, force=True)
    assert read_run(out).info == {"n": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failure_while_writing_leaves_nothing(tmp_path, datatree):
    def broken_figures(tree, folder):
        (folder / "half.png").write_bytes(b"\x89PNG")
        raise RuntimeError("the figure failed")

    with pytest.raises(RuntimeError):
        write_run_dir(tmp_path / "run", datatree, {}, figures=broken_figures)
    assert list(tmp_path.iterdir()) == []


def test_check_destination_refuses_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        check_destination(target, force=True)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no-folder", "no such directory"),
        ("no-run-json", f"{RUN_FILE} is missing"),
        ("bad-json", "not valid JSON"),
        ("bad-posterior", "not a readable DataTree"),
    ],
)
def test_broken_run_directories_are_one_input_error(tmp_path, datatree, breakage, message):
    out = tmp_path / "run"
    if breakage != "no-folder":
        write_run_dir(out, datatree, {"model": "matrix"})
    if breakage == "no-run-json":
        (out / RUN_FILE).unlink()
    elif breakage == "bad-json":
        (out / RUN_FILE).write_text("{not json")
    elif breakage == "bad-posterior":
        (out / POSTERIOR_FILE).write_text("not netcdf")
    with pytest.raises(InputError, match=message):
        read_run(out)


def test_run_directories_follow_the_umask(tmp_path, datatree):
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = write_run_dir(tmp_path / "run", datatree, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for name in (POSTERIOR_FILE, RUN_FILE):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644


def test_run_json_is_plain_json(tmp_path, datatree):
    out = write_run_dir(tmp_path / "run", datatree, {"path": tmp_path, "values": np.arange(3)})
    assert json.loads((out / RUN_FILE).read_text()) == {"path": str(tmp_path), "values": [0, 1, 2]}


def test_force_replaces_only_a_run_directory(tmp_path, datatree):
    """Replacing is deleting: a folder that fit did not write keeps its files, forced or not."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a run directory"):
        write_run_dir(folder, datatree, {}, force=True)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_force_never_replaces_the_folder_of_the_input(tmp_path, datatree):
    run = write_run_dir(tmp_path / "run", datatree, {})
    log = run / "log.nc"
    log.write_text("the log being fitted")
    with pytest.raises(InputError, match="holds the input"):
        check_destination(run, force=True, inputs=(log,))
    with pytest.raises(InputError, match="holds the input"):
        check_destination(tmp_path, force=True, inputs=(log,))
    assert log.read_text() == "the log being fitted"


def test_force_never_replaces_the_working_directory(tmp_path, datatree, monkeypatch):
    run = write_run_dir(tmp_path / "run", datatree, {})
    monkeypatch.chdir(run)
    with pytest.raises(InputError, match="working directory"):
        check_destination(".", force=True)
    (run / "plots").mkdir(exist_ok=True)
    monkeypatch.chdir(run / "plots")
    with pytest.raises(InputError, match="working directory"):
        check_destination("..", force=True)
    assert (run / "run.json").is_file()


@pytest.mark.parametrize(
    "run_json, message",
    [
        ("[]", "run.json: is a JSON list, expected an object"),
        ('{"options": []}', "field 'options': is a JSON list, expected dict"),
        ('{"model": 3}', "field 'model': is a JSON int, expected str"),
        ("[" * 100_000, "not valid JSON"),
        (b"{\"model\": \"\xff\"}", "not UTF-8"),
    ],
)
def test_a_run_json_of_the_wrong_shape_is_one_input_error(tmp_path, datatree, run_json, message):
    out = write_run_dir(tmp_path / "run", datatree, {"model": "matrix"})
    if isinstance(run_json, bytes):
        (out / RUN_FILE).write_bytes(run_json)
    else:
        (out / RUN_FILE).write_text(run_json)
    with pytest.raises(InputError, match=message) as error:
        read_run(out)
    assert "\n" not in str(error.value)


def test_a_posterior_nc_that_is_an_llm_log_is_named_as_such(tmp_path, datatree):
    from bayesmatrix.data.llmlog import OTHER, make_log, write_log

    out = write_run_dir(tmp_path / "run", datatree, {"model": "matrix"})
    write_log(make_log(np.array([[0.5, 0.5]]), ["a", OTHER], model="t"), out / POSTERIOR_FILE)
    with pytest.raises(InputError, match=r"posterior.nc: has no posterior group \(an LLM log\?\)"):
        read_run(out)


def test_a_symlink_loop_is_not_called_missing(tmp_path, datatree):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match="symlink loop"):
        read_run(loop)
    out = write_run_dir(tmp_path / "run", datatree, {})
    (out / RUN_FILE).unlink()
    (out / RUN_FILE).symlink_to(out / RUN_FILE)
    with pytest.raises(InputError, match="symlink loop"):
        read_run(out)


def test_a_destination_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    with pytest.raises(InputError, match="cannot be written into /proc"):
        check_destination("/proc/run", force=False)
    with pytest.raises(InputError, match="is empty"):
        check_destination("", force=True)


def test_a_killed_fit_s_staging_folder_is_removed_by_the_next_write(tmp_path, datatree):
    """SIGKILL while a run directory is being built leaves its staging folder; the next run beside it removes it."""
    import signal
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "import arviz_base as azb, numpy as np\n"
        "from bayesmatrix.inference.rundir import write_run_dir\n"
        "tree = azb.from_dict({'posterior': {'s': np.ones((1, 3))}})\n"
        "write_run_dir(sys.argv[1], tree, {}, figures=lambda tree, plots: os.kill(os.getpid(), signal.SIGKILL))\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "first")], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".bayesmatrix-tmp-") and "first" in left[0]
    write_run_dir(tmp_path / "second", datatree, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["second"]
