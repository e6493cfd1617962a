"""Reliability of fit and report: determinism, crash safety under SIGKILL, and numerical guards."""

import os
import signal
import subprocess
import sys
import time

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


@pytest.mark.slow
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


@pytest.mark.slow
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
