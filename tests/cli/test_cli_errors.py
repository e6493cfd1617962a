"""Bad input through the real command: one line on stderr naming the file, field and row (or option),
exit status 2, no traceback, and no output created or changed."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.cli import main
from bayesmatrix.data.llmlog import OTHER, make_log, write_log
from bayesmatrix.inference.simulate import simulate_icl, simulate_matrix


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("logs")
    icl = write_log(simulate_icl(3, 4, [1.0, 1.0], seed=0), folder / "icl.nc")
    matrix = write_log(simulate_matrix(5, [1.0, 1.0, 1.0], seed=0), folder / "matrix.nc")
    (folder / "garbage.nc").write_text("this is not netCDF\n")
    (folder / "empty.nc").write_bytes(b"")
    bad_rows = make_log(np.array([[0.5, 0.5], [0.2, 0.8]]), ["a", OTHER], model="t").copy(deep=True)
    bad_rows["probs"].values[1, 0] = 0.5  # row 1 now sums to 1.3
    bad_rows.to_netcdf(folder / "rowsum.nc", engine="netcdf4")
    return folder


def run_cli(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.err


def assert_one_line(err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    "log, model, fragments",
    [
        ("garbage.nc", "icl", ["garbage.nc", "not a readable netCDF file"]),
        ("empty.nc", "icl", ["empty.nc", "empty file"]),
        ("missing.nc", "icl", ["missing.nc", "no such file"]),
        ("rowsum.nc", "matrix", ["rowsum.nc", "field 'probs', row 1", "sums to 1.3"]),
        ("matrix.nc", "icl", ["matrix.nc", "context_counts"]),
        ("icl.nc", "no-such-model", ["--model", "no-such-model"]),
    ],
)
def test_fit_bad_input(logs, model, log, fragments, capsys, tmp_path):
    out = tmp_path / "run"
    status, err = run_cli(["fit", str(logs / log), "--model", model, "--out", str(out), "--quiet"], capsys)
    assert status == 2
    assert_one_line(err, *fragments)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, option",
    [
        (["--num-samples", "0"], "--num-samples"),
        (["--num-chains", "0"], "--num-chains"),
        (["--num-warmup", "-1"], "--num-warmup"),
        (["--target-accept", "1.5"], "--target-accept"),
        (["--components", "0"], "--components"),
    ],
)
def test_fit_contradictory_or_impossible_options(logs, options, option, capsys, tmp_path):
    out = tmp_path / "run"
    status, err = run_cli(["fit", str(logs / "icl.nc"), "--model", "icl", "--out", str(out), *options], capsys)
    assert status == 2
    assert_one_line(err, option)
    assert not out.exists()


@pytest.mark.parametrize(
    "model, observe",
    [("matrix", "tokens"), ("matrix", "probs,,counts"), ("matrix", ""), ("icl", "tokens")],
)
def test_fit_observe_names_sites_the_model_has(logs, model, observe, capsys, tmp_path):
    out = tmp_path / "run"
    log = logs / ("icl.nc" if model == "icl" else "matrix.nc")
    status, err = run_cli(["fit", str(log), "--model", model, "--observe", observe, "--out", str(out)], capsys)
    assert status == 2
    assert_one_line(err, "--observe", repr(observe))
    assert not out.exists()


def test_fit_refuses_to_replace_a_run_directory(logs, capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    status, err = run_cli(["fit", str(logs / "icl.nc"), "--model", "icl", "--out", str(out)], capsys)
    assert status == 2
    assert_one_line(err, "already exists", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_fit_force_deletes_nothing_that_is_not_a_run(logs, capsys, tmp_path):
    """--force onto the folder of the log being fitted, or onto a folder of the user's: one line, nothing deleted."""
    log = tmp_path / "data" / "icl.nc"
    log.parent.mkdir()
    log.write_bytes((logs / "icl.nc").read_bytes())
    (tmp_path / "data" / "notes.txt").write_text("mine")
    status, err = run_cli(["fit", str(log), "--model", "icl", "--force", "--out", str(log.parent), "--quiet"], capsys)
    assert status == 2
    assert_one_line(err, "holds the input")
    assert sorted(p.name for p in log.parent.iterdir()) == ["icl.nc", "notes.txt"]
    status, err = run_cli(["fit", str(log), "--model", "icl", "--force", "--out", str(tmp_path), "--quiet"], capsys)
    assert status == 2
    assert_one_line(err, "holds the input")


@pytest.mark.parametrize("command", [["simulate", "matrix", "--rows", "3", "--cols", "2"],
                                     ["import", str(Path(__file__).resolve().parents[1] / "fixtures" / "openai_chat.jsonl")],
                                     ["compare", "run-a", "run-b"]])
def test_out_onto_a_fifo_or_a_folder_is_refused_before_the_work(command, capsys, tmp_path):
    import os
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (fifo, tmp_path):
        status, err = run_cli([*command, "--out", str(target)], capsys)
        assert status == 2
        assert_one_line(err, str(target))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_diagnose_and_compare_refuse_what_is_not_a_run(logs, capsys, tmp_path):
    status, err = run_cli(["diagnose", str(tmp_path)], capsys)
    assert status == 2
    assert_one_line(err, "posterior.nc is missing")
    status, err = run_cli(["compare", str(tmp_path)], capsys)
    assert status == 2
    assert_one_line(err, "at least two run directories")


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--model", "icl"])
    assert info.value.code == 2
    assert_one_line(capsys.readouterr().err, "required")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["fit", "{garbage}", "--model", "icl", "--out", "{out}"], ["garbage.nc"]),
        (["simulate", "icl", "--episodes", "2", "--length", "3", "--alpha", "1,1", "--decay", "1.5",
          "--out", "{out}"], ["--decay"]),
        pytest.param(["log", "--model", "{missing_model}", "--task", "coin", "--episodes", "1", "--out", "{out}"],
                     ["no-such-model-folder"], marks=pytest.mark.llm),
        pytest.param(["log", "--task", "no-such-task", "--out", "{out}"], ["no-such-task"], marks=pytest.mark.llm),
    ],
)
def test_end_to_end_in_a_fresh_process(logs, argv, fragments, tmp_path):
    """The installed entry point, in its own process: nothing but one line reaches the user."""
    values = {"garbage": str(logs / "garbage.nc"), "out": str(tmp_path / "out.nc"),
              "missing_model": str(tmp_path / "no-such-model-folder")}
    argv = [arg.format(**values) for arg in argv]
    completed = subprocess.run([sys.executable, "-m", "bayesmatrix.cli", *argv], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 2, completed.stderr
    assert_one_line(completed.stderr, *fragments)
    assert completed.stdout == ""
    assert not (tmp_path / "out.nc").exists()


SHIPPED_WORLD_MODEL = str(Path(__file__).resolve().parents[2] / "data" / "shipped" / "windtunnel" / "dirichlet")


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**70)])
@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "matrix", "--rows", "3", "--cols", "2"],
        pytest.param(["log", "--model", SHIPPED_WORLD_MODEL, "--task", "windtunnel-dirichlet", "--episodes", "1"],
                     marks=pytest.mark.llm),
        pytest.param(["windtunnel", "train", "--world", "dirichlet", "--steps", "2"], marks=pytest.mark.llm),
    ],
    ids=["simulate", "log", "windtunnel-train"],
)
def test_seeds_outside_32_bits_are_one_line(command, seed, capsys, tmp_path):
    """A negative or too large seed would wrap onto another seed's draws (or overflow): refused, nothing written."""
    out = tmp_path / "out"
    status, err = run_cli([*command, "--seed", seed, "--out", str(out)], capsys)
    assert status == 2
    assert_one_line(err, "--seed", seed)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_fit_seed_outside_32_bits_is_refused_before_sampling(logs, seed, capsys, tmp_path):
    out = tmp_path / "run"
    status, err = run_cli(["fit", str(logs / "matrix.nc"), "--model", "matrix", "--seed", seed, "--out", str(out)], capsys)
    assert status == 2
    assert_one_line(err, "--seed", seed)
    assert not out.exists()


@pytest.mark.parametrize("target", ["/proc/x.nc", ""])
@pytest.mark.parametrize("command", [["simulate", "matrix", "--rows", "3", "--cols", "2"],
                                     ["import", str(Path(__file__).resolve().parents[1] / "fixtures" / "openai_chat.jsonl")],
                                     ["compare", "run-a", "run-b"]],
                         ids=["simulate", "import", "compare"])  # fmt: skip
def test_out_into_proc_or_empty_is_one_line_before_the_work(command, target, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, err = run_cli([*command, "--out", target], capsys)
    assert status == 2
    assert_one_line(err, "is empty" if target == "" else "cannot be written into /proc")
    assert list(tmp_path.iterdir()) == []


HUGE = ["--num-samples", "10000000", "--num-warmup", "10000000", "--quiet", "--no-plots"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("out, force, fragment", [("/proc/run", False, "cannot be written into /proc"),
                                                  (".", True, "holds the working directory")])  # fmt: skip
def test_fit_output_is_checked_before_sampling(logs, out, force, fragment, capsys, tmp_path, monkeypatch):
    """With ten million draws, a check made after sampling would never be reached within the timeout."""
    monkeypatch.chdir(tmp_path)
    argv = ["fit", str(logs / "matrix.nc"), "--model", "matrix", "--out", out, *HUGE, *(["--force"] if force else [])]
    status, err = run_cli(argv, capsys)
    assert status == 2
    assert_one_line(err, fragment)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rate", ["-1", "0", "nan", "inf"])
def test_fit_learning_rate_must_be_a_positive_number(logs, rate, capsys, tmp_path):
    out = tmp_path / "run"
    status, err = run_cli(["fit", str(logs / "matrix.nc"), "--model", "matrix", "--method", "svi",
                           "--learning-rate", rate, "--out", str(out)], capsys)  # fmt: skip
    assert status == 2
    assert_one_line(err, "--learning-rate", rate)
    assert not out.exists()


def _jax_has_gpu() -> bool:
    import jax

    for platform in ("cuda", "rocm"):
        try:
            jax.devices(platform)
        except RuntimeError:
            continue
        return True
    return False


@pytest.mark.timeout(120)
def test_fit_device_gpu_without_one_is_refused_before_the_work(logs, capsys, tmp_path):
    if _jax_has_gpu():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    status, err = run_cli(["fit", str(logs / "matrix.nc"), "--model", "matrix", "--device", "gpu", "--out", str(out),
                           *HUGE], capsys)  # fmt: skip
    assert status == 2
    assert_one_line(err, "--device", "no such device")
    assert not out.exists()


def test_report_log_whose_task_is_not_json_is_one_line(capsys, tmp_path):
    ds = make_log(np.array([[0.5, 0.5]]), ["a", OTHER], model="t")
    ds.attrs["task"] = "{not json"
    ds.to_netcdf(tmp_path / "task.nc", engine="netcdf4")
    out = tmp_path / "report.html"
    status, err = run_cli(["report", "--log", str(tmp_path / "task.nc"), "--out", str(out)], capsys)
    assert status == 2
    assert_one_line(err, "task.nc", "field 'task'", "is not JSON")
    assert not out.exists()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two readable run folders (what fit writes, without the cost of sampling)."""
    import arviz_base as azb

    from bayesmatrix.inference.rundir import write_run_dir

    folder = tmp_path_factory.mktemp("runs")
    tree = azb.from_dict({"posterior": {"s": np.ones((1, 4))}, "log_likelihood": {"probs": np.zeros((1, 4, 3))}})
    for name in ("a", "b"):
        write_run_dir(folder / name, tree, {"model": "matrix", "method": "nuts", "options": {}})
    return folder


@pytest.mark.parametrize("breakage, fragment", [("run-json-list", "run.json: is a JSON list"),
                                                ("posterior-is-a-log", "has no posterior group (an LLM log?)")])  # fmt: skip
def test_a_broken_run_folder_is_one_line_for_diagnose_compare_and_report(two_runs, logs, breakage, fragment,
                                                                         capsys, tmp_path):  # fmt: skip
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(two_runs / "a", broken)
    if breakage == "run-json-list":
        (broken / "run.json").write_text("[]")
    else:
        shutil.copyfile(logs / "matrix.nc", broken / "posterior.nc")
    out = tmp_path / "out.html"
    for argv in (["diagnose", str(broken)], ["compare", str(two_runs / "b"), str(broken)],
                 ["report", str(broken), "--out", str(out)]):  # fmt: skip
        status, err = run_cli(argv, capsys)
        assert status == 2, argv
        assert_one_line(err, fragment)
    assert not out.exists()


def test_an_unexpected_error_is_one_line_asking_to_be_reported(capsys, tmp_path, monkeypatch):
    """A bug (simulated here: nothing on a user's path is known to raise one) never shows a traceback or exits 0."""
    import bayesmatrix.inference.simulate

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(bayesmatrix.inference.simulate, "simulate", broken)
    out = tmp_path / "out.nc"
    status, err = run_cli(["simulate", "matrix", "--rows", "3", "--cols", "2", "--out", str(out)], capsys)
    assert status == 1
    assert_one_line(err, "internal error: ZeroDivisionError: division by zero", "please report it",
                    "BAYESMATRIX_TRACEBACK=1")  # fmt: skip
    assert not out.exists()
    monkeypatch.setenv("BAYESMATRIX_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main(["simulate", "matrix", "--rows", "3", "--cols", "2", "--out", str(out)])
