"""README, "A Gupta-style experiment", at small size through the command line: log SmolLM2 on coin-words
under two stated biases, fit the effective prior per framing level, and report it with the TVDs.

Slow: loading SmolLM2 takes most of a minute on a CPU.
"""

import json
import re
import subprocess
import sys

import pytest

from bayesmatrix.data.llmlog import read_log
from bayesmatrix.inference.rundir import read_run

pytestmark = pytest.mark.long  # the experiment end to end on SmolLM2, minutes: make test-long


def bayesmatrix(*args: str, cwd) -> str:
    completed = subprocess.run([sys.executable, "-m", "bayesmatrix", *args], cwd=cwd, capture_output=True, text=True,
                               timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.llm  # runs an LLM (torch): the llm extra
def test_the_gupta_sequence_runs_and_reports_the_effective_prior_per_stated_bias(tmp_path):
    bayesmatrix("log", "--task", "coin-words", "--framing", "bias=20,80", "--episodes", "4", "--length", "6",
                "--seed", "0", "--out", "gupta.nc", cwd=tmp_path)
    ds = read_log(tmp_path / "gupta.nc")
    assert json.loads(ds.attrs["framing_levels"]) == [{"bias": "20"}, {"bias": "80"}]
    assert sorted(set(ds["framing"].values.tolist())) == [0, 1]
    bayesmatrix("fit", "gupta.nc", "--model", "icl-framed", "--out", "run", "--num-warmup", "30", "--num-samples",
                "30", "--num-chains", "1", "--no-plots", "--quiet", cwd=tmp_path)
    posterior = read_run(tmp_path / "run").datatree["posterior"]
    assert list(posterior["m"].dims) == ["chain", "draw", "framing", "col"]
    assert list(posterior["framing"].values) == ["bias=20", "bias=80"]
    bayesmatrix("report", "run", "--log", "gupta.nc", "--out", "report.html", "--quiet", cwd=tmp_path)
    text = (tmp_path / "report.html").read_text()
    section = text[text.index("<h2>Framings: gupta.nc</h2>"):]
    section = section[: section.index("</section>")]
    assert "fitted prior mean of heads" in section and "Slope of the fitted prior mean" in section
    for level, stated in (("bias=20", "0.2"), ("bias=80", "0.8")):
        assert re.search(rf"<td>{level}</td><td>{stated}</td><td>[0-9.]+ \[[0-9.]+, [0-9.]+\]</td>", section), level
    assert section.count('src="data:image/png;base64,') == 1
