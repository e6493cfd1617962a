"""Reliability of fit and report: determinism, crash safety under SIGKILL, and numerical guards."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bayesmatrix.cli import main
from bayesmatrix.data.atomic import TEMPORARY_MARK
from bayesmatrix.data.llmlog import OTHER, make_log, read_log, write_log
from bayesmatrix.inference.simulate import simulate_icl
from bayesmatrix.inference.rundir import read_run

TINY = ["--num-samples", "60", "--num-warmup", "60", "--num-chains", "2", "--quiet", "--no-plots"]


@pytest.fixture(scope="module")
def icl_log(tmp_path_factory):
    return write_log(simulate_icl(8, 6, [2.0, 1.0, 1.0], seed=0), tmp_path_factory.mktemp("log") / "icl.nc")


def posterior_arrays(run_dir):
    with xr.open_datatree(run_dir / "posterior.nc", engine="netcdf4") as tree:
        return {name: np.asarray(var) for name, var in tree["posterior"].data_vars.items()}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "svi"])
def test_same_seed_same_draws(icl_log, tmp_path, method, capsys):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        extra = ["--max-steps", "1500"] if method == "svi" else []
        assert main(["fit", str(icl_log), "--model", "icl", "--method", method, "--seed", "5", "--out", str(out),
                     *TINY, *extra]) == 0
        runs.append(posterior_arrays(out))
    capsys.readouterr()
    assert runs[0].keys() == runs[1].keys()
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])


@pytest.mark.long  # kills a command again and again: make test-long
def test_fit_killed_at_any_moment_leaves_no_half_written_run(icl_log, tmp_path):
    """SIGKILL while fitting or writing: RUN_DIR is either absent or complete and readable."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "bayesmatrix.cli", "fit", str(icl_log), "--model", "icl", "--out", str(out),
         "--num-samples", "400", "--num-warmup", "200", "--num-chains", "2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    # Kill as soon as the run directory starts being written (its staging folder appears).
    while time.time() < deadline and process.poll() is None:
        if any(p.name.startswith(TEMPORARY_MARK) and ".run." in p.name for p in tmp_path.iterdir()):
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if out.exists():
        run = read_run(out)
        assert {"posterior", "log_likelihood"} <= set(run.datatree.children)
        assert (out / "summary.csv").is_file()
    assert not any(p.name == "run" and not (p / "run.json").exists() for p in tmp_path.iterdir())


@pytest.mark.slow
def test_underflowing_probabilities_and_an_unseen_column_give_finite_posteriors(tmp_path, capsys):
    """Rows with exact zeros (probabilities that underflowed) and a category never observed in
    context: the observation clips at epsilon and renormalises, and nothing downstream is NaN."""
    ds = simulate_icl(6, 5, [2.0, 1.0, 0.2], world_alpha=[1.0, 1.0, 1e-3], tau=5e4, seed=3)
    probs = ds["probs"].values.copy()
    probs[::3, 2] = 0.0  # underflow
    probs /= probs.sum(axis=1, keepdims=True)
    context = ds["context_counts"].values
    guarded = make_log(probs, list(ds["col"].values), model="guard", context_counts=context,
                       episode=ds["episode"].values)
    log = write_log(guarded, tmp_path / "zeros.nc")
    assert (read_log(log)["probs"].values == 0).any()
    out = tmp_path / "run"
    assert main(["fit", str(log), "--model", "icl-general", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for name, values in posterior_arrays(out).items():
        assert np.isfinite(values).all(), name
    run = read_run(out)
    assert np.isfinite(np.asarray(run.datatree["log_likelihood"]["probs"])).all()
    assert "divergences:" in printed  # diagnostics are reported, whatever they say


@pytest.mark.slow
def test_extreme_concentration_is_reported_not_hidden(tmp_path, capsys):
    """A log whose rows follow the updater almost exactly (tau = 1e7): the fit runs, and
    diagnose prints its table with flags rather than failing silently."""
    ds = simulate_icl(5, 4, [1.0, 1.0], tau=1e7, seed=4)
    log = write_log(ds, tmp_path / "sharp.nc")
    out = tmp_path / "run"
    assert main(["fit", str(log), "--model", "icl", "--out", str(out), *TINY]) == 0
    status = main(["diagnose", str(out)])
    printed = capsys.readouterr().out
    assert status in (0, 1)
    assert ("all checks passed" in printed) == (status == 0)
    assert "FAILED CHECKS" in printed or status == 0
    assert all(np.isfinite(v).all() for v in posterior_arrays(out).values())


def test_other_column_with_zero_mass_is_dropped_and_renormalised(tmp_path):
    probs = np.array([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0]])
    log = make_log(probs, ["a", "b", OTHER], model="t", context_counts=np.array([[0, 0, 0], [1, 0, 0]]),
                   episode=np.array([0, 0]))
    from bayesmatrix.inference.prepare import prepare

    model_input = prepare(log, "icl")
    assert model_input.columns == ["a", "b"]
    np.testing.assert_allclose(np.asarray(model_input.kwargs["probs"]).sum(axis=1), 1.0)


@pytest.fixture(scope="module")
def icl_run(icl_log, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "run"
    assert main(["fit", str(icl_log), "--model", "icl", "--out", str(out), *TINY]) == 0
    return out


def _report_process(icl_run, icl_log, out):
    return subprocess.Popen(
        [sys.executable, "-m", "bayesmatrix.cli", "report", str(icl_run), "--log", str(icl_log), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.mark.long  # kills a command again and again: make test-long
def test_report_killed_at_any_moment_leaves_the_old_file_or_a_complete_one(icl_run, icl_log, tmp_path):
    """SIGKILL while drawing or while writing: OUT holds its old content or the whole new report."""
    out = tmp_path / "report.html"
    start = time.time()
    assert _report_process(icl_run, icl_log, out).wait() == 0
    duration = time.time() - start
    complete = out.read_text(encoding="utf-8")
    assert complete.rstrip().endswith("</html>")

    # Kill midway, and the moment the temporary file beside OUT appears.
    for when in (0.6, "writing"):
        out.write_text("old report", encoding="utf-8")
        process = _report_process(icl_run, icl_log, out)
        if when == "writing":
            deadline = time.time() + 2 * duration + 60
            while time.time() < deadline and process.poll() is None:
                if any(p.name.startswith(TEMPORARY_MARK) and ".report.html." in p.name for p in tmp_path.iterdir()):
                    break
                time.sleep(0.005)
        else:
            time.sleep(when * duration)
        process.send_signal(signal.SIGKILL)  # nothing if it has already finished and been reaped
        process.wait()
        if when != "writing":  # the writing window is short; the process may finish before it is seen
            assert process.returncode == -signal.SIGKILL, when
        text = out.read_text(encoding="utf-8")
        assert text == "old report" or text.rstrip().endswith("</html>"), when


SHIPPED_WORLD_MODEL = str(Path(__file__).resolve().parents[2] / "data" / "shipped" / "windtunnel" / "dirichlet")


def _log_command(out, *extra):
    return [sys.executable, "-m", "bayesmatrix.cli", "log", "--model", SHIPPED_WORLD_MODEL, "--task",
            "windtunnel-dirichlet", "--length", "8", "--checkpoint-every", "64", *extra, "--out", str(out)]  # fmt: skip


def _wait_for(predicate, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.llm  # runs an LLM (torch): the llm extra
@pytest.mark.long  # logs SmolLM2 in processes it kills or races: make test-long
def test_a_second_log_on_the_same_output_is_refused_while_the_first_holds_the_folder(tmp_path):
    """Two overlapping runs of one --out: the first is stopped (SIGSTOP) while it holds OUT.partial/; the
    second is refused in one line naming the folder and changes nothing; the first then finishes its log."""
    out = tmp_path / "world.nc"
    partial = Path(f"{out}.partial")
    first = subprocess.Popen(_log_command(out, "--episodes", "800", "--seed", "0"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for(lambda: (partial / "manifest.json").exists() or first.poll() is not None)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None and (partial / "manifest.json").exists(), "the first run ended before the test"
        before = sorted(p.name for p in partial.iterdir())
        second = subprocess.run(_log_command(out, "--episodes", "800", "--seed", "1"), capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert second.returncode == 2, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"{partial}: is in use by another run" in lines[0], second.stderr
        assert f"pid {first.pid}" in lines[0] and "Traceback" not in second.stderr
        assert sorted(p.name for p in partial.iterdir()) == before and not out.exists()
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0
    log = read_log(out)
    assert log.attrs["seed"] == 0 and log.sizes["row"] == 800 * 9 and not partial.exists()


@pytest.mark.llm  # runs an LLM (torch): the llm extra
@pytest.mark.long  # logs SmolLM2 in processes it kills or races: make test-long
def test_a_killed_log_releases_its_lock_and_a_damaged_chunk_is_named(tmp_path):
    """SIGKILL leaves OUT.partial/ and its lock file, but the OS has released the lock: the rerun is not
    refused for it. A chunk damaged on disk is refused in one line naming it, until --restart."""
    out = tmp_path / "world.nc"
    partial = Path(f"{out}.partial")
    command = _log_command(out, "--episodes", "800")
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: len(list(partial.glob("episodes-*.npz"))) >= 2 or first.poll() is not None)
    first.send_signal(signal.SIGKILL)
    first.wait()
    chunks = sorted(partial.glob("episodes-*.npz"))
    assert first.returncode == -signal.SIGKILL and len(chunks) >= 2 and (partial / "lock").exists()
    chunks[1].write_bytes(chunks[1].read_bytes()[:40])  # a torn write the atomic rename would never leave
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2, again.stderr
    lines = [line for line in again.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{partial}: holds a damaged chunk, {chunks[1].name}" in lines[0], again.stderr
    assert "--restart" in lines[0] and not out.exists()
    restarted = subprocess.run([*command, "--restart"], capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr
    assert read_log(out).sizes["row"] == 800 * 9 and not partial.exists()


def test_a_killed_import_s_temporary_is_removed_by_the_next_write(tmp_path, capsys):
    """An import SIGKILLed while writing leaves its hidden temporary; the next write beside it removes it."""
    chat = Path(__file__).resolve().parents[1] / "fixtures" / "openai_chat.jsonl"
    out = tmp_path / "imported.nc"
    script = (
        "import os, signal, sys\n"
        "from bayesmatrix.data.atomic import atomic_path\n"
        "from bayesmatrix.data.importers import import_jsonl\n"
        "log = import_jsonl(sys.argv[1])\n"
        "with atomic_path(sys.argv[2]) as tmp:\n"
        "    log.to_netcdf(tmp, engine='netcdf4')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"  # as if killed between the write and the rename
    )
    killed = subprocess.run([sys.executable, "-c", script, str(chat), str(out)], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(TEMPORARY_MARK) and ".imported.nc." in left[0]
    assert main(["import", str(chat), "--out", str(out)]) == 0
    capsys.readouterr()
    assert [p.name for p in tmp_path.iterdir()] == ["imported.nc"]


@pytest.mark.slow
def test_max_steps_bounds_the_svi_steps(icl_log, tmp_path, capsys):
    """SVI runs in compiled chunks of 250 steps; the last chunk is shortened so that max_steps holds."""
    out = tmp_path / "run"
    assert main(["fit", str(icl_log), "--model", "icl", "--method", "svi", "--max-steps", "50", "--num-samples", "100",
                 "--out", str(out), "--quiet", "--no-plots"]) == 0  # fmt: skip
    capsys.readouterr()
    run = read_run(out)
    assert run.info["num_steps"] == 50 and run.datatree["elbo"].sizes["step"] == 50


@pytest.mark.llm  # runs an LLM (torch): the llm extra
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_log_refused_for_its_length_leaves_no_folder_so_the_fix_runs(tmp_path, capsys):
    """--length past the model's context (128 tokens): 100000 is refused without rendering an episode, 128 at
    its first batch; neither leaves OUT.partial/ behind to refuse the corrected command."""
    out = tmp_path / "world.nc"
    command = ["log", "--model", SHIPPED_WORLD_MODEL, "--task", "windtunnel-dirichlet", "--episodes", "2",
               "--out", str(out)]  # fmt: skip
    for length in ("100000", "128"):
        start = time.monotonic()
        assert main([*command, "--length", length]) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error" in line]
        assert len(errors) == 1 and "--length" in errors[0] and "context of 128 tokens" in errors[0], err
        assert "Traceback" not in err and list(tmp_path.iterdir()) == []
        assert time.monotonic() - start < 120
    assert main([*command, "--length", "8"]) == 0
    capsys.readouterr()
    assert read_log(out).sizes["row"] == 2 * 9


@pytest.mark.slow
def test_run_json_records_the_log_as_it_was_read_not_a_file_swapped_in_during_sampling(icl_log, tmp_path, capsys,
                                                                                       monkeypatch):  # fmt: skip
    """The model (one of the user's own, a real path) swaps the log for another the first time it runs, after
    the log was read and before sampling ends: run.json keeps the hash of the file the fit read."""
    import functools
    import hashlib

    from bayesmatrix.models import MODELS

    log = tmp_path / "icl.nc"
    log.write_bytes(icl_log.read_bytes())
    read_hash = hashlib.sha256(log.read_bytes()).hexdigest()
    other = write_log(simulate_icl(8, 6, [1.0, 1.0, 3.0], seed=9), tmp_path / "other.nc")
    icl = MODELS["icl"]

    @functools.wraps(icl.function)
    def swapping(**kwargs):
        if other.exists():
            os.replace(other, log)
        return icl.function(**kwargs)

    monkeypatch.setitem(MODELS, "swapping", icl._replace(function=swapping))
    out = tmp_path / "run"
    assert main(["fit", str(log), "--model", "swapping", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert not other.exists() and hashlib.sha256(log.read_bytes()).hexdigest() != read_hash
    assert read_run(out).info["data_sha256"] == read_hash
