"""A model of one's own, defined here and not in the library, runs through fit, diagnose, compare and report.

The model is README's "Add your own model" example: the matrix model with a
half-normal prior on the strength. It is fitted twice, registered by name in
``MODELS`` (the registry is restored after the test) and from the command line
as ``MODULE:ATTRIBUTE``; diagnose, compare and report then run as fresh
processes, as a user runs them, and find what they need in the run directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

from bayesmatrix.models import MODELS, ModelSpec, clip_simplex


def halfnormal_matrix(*, num_rows, num_cols, probs=None):
    """Every row from one Dirichlet prior whose strength is half-normal.

    m       ~ Dirichlet(1_C)
    s       ~ HalfNormal(5)
    alpha   = s m
    probs_r ~ Dirichlet(alpha)
    """
    m = numpyro.sample("m", dist.Dirichlet(jnp.ones(num_cols)))
    s = numpyro.sample("s", dist.HalfNormal(5.0))
    alpha = numpyro.deterministic("alpha", s * m)
    with numpyro.plate("row", num_rows):
        numpyro.sample("probs", dist.Dirichlet(alpha), obs=None if probs is None else clip_simplex(probs, 1e-6))


HALFNORMAL = ModelSpec(
    halfnormal_matrix,
    "every row from one Dirichlet(s m), s half-normal",
    observed=("probs",),
    event_dims={"m": ("col",), "alpha": ("col",)},
)
TINY = dict(num_chains=1, num_warmup=60, num_samples=60, seed=1, progress_bar=False)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(MODELS, "halfnormal", HALFNORMAL)  # removed again after the test
    return "halfnormal"


def bayesmatrix(*argv, check_status=(0,)):
    """The command in a fresh process that can import this file as a module (a user's own code)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, "-m", "bayesmatrix", *map(str, argv)], capture_output=True, text=True,
                               env=env, timeout=600)  # fmt: skip
    assert completed.returncode in check_status, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed.stdout


@pytest.mark.long  # a registered model through every command, each its own process: make test-long
def test_a_model_of_ones_own_runs_through_every_command(registered, tmp_path):
    from bayesmatrix.data.llmlog import write_log
    from bayesmatrix.inference.fit import FitOptions, fit
    from bayesmatrix.inference.simulate import simulate_matrix

    log = write_log(simulate_matrix(40, [3.0, 2.0, 1.0], seed=0), tmp_path / "rows.nc")

    by_name = fit(log, FitOptions(model=registered, **TINY), tmp_path / "by-name")
    assert by_name.datatree["posterior"]["m"].dims == ("chain", "draw", "col")
    assert by_name.datatree["posterior"]["alpha"].dims == ("chain", "draw", "col")
    assert by_name.datatree["log_likelihood"]["probs"].dims == ("chain", "draw", "row")
    fit(log, FitOptions(model="matrix", **TINY), tmp_path / "matrix")

    source = f"{__name__}:HALFNORMAL"
    bayesmatrix("fit", log, "--model", source, "--num-chains", 1, "--num-warmup", 60, "--num-samples", 60,
                "--seed", 1, "--out", tmp_path / "by-source", "--no-plots", "--quiet", check_status=(0,))  # fmt: skip
    assert json.loads((tmp_path / "by-source" / "run.json").read_text())["model"] == source

    runs = [tmp_path / "by-name", tmp_path / "by-source", tmp_path / "matrix"]
    diagnosis = bayesmatrix("diagnose", *runs, check_status=(0, 1))  # 60 draws may fail ESS; the table is the point
    assert "m[" in diagnosis and "s " in diagnosis
    comparison = bayesmatrix("compare", *runs)
    assert f"{registered} (nuts)" in comparison and f"{source} (nuts)" in comparison and "matrix (nuts)" in comparison
    bayesmatrix("report", *runs, "--log", log, "--out", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert f"{registered} (nuts)" in page and f"{source} (nuts)" in page


def test_an_unknown_or_broken_model_source_is_one_line(tmp_path):
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.inference.prepare import model_spec

    with pytest.raises(InputError, match="cannot be imported") as raised:
        model_spec("no_such_module_here:SPEC")
    assert raised.value.field == "model"
    with pytest.raises(InputError, match="not a ModelSpec"):
        model_spec(f"{__name__}:halfnormal_matrix")
    assert model_spec(f"{__name__}:HALFNORMAL") is HALFNORMAL
