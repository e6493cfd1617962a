"""``bayesmatrix demo``: the quick demo end to end (slow: it loads SmolLM2), and its refusal to clobber a folder."""

import json

import pytest

from bayesmatrix.cli import main
from tests.analysis.test_report import assert_self_contained, decoded_images


@pytest.mark.slow
def test_quick_demo_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    for phrase in ("effective prior", "strength", "decay", "temperature", "LOO prefers", "martingale gap", "report:"):
        assert phrase in summary

    text = (out / "report.html").read_text()
    assert_self_contained(text)
    images = decoded_images(text)
    assert all(image.ndim == 3 and min(image.shape[:2]) > 50 for image in images)
    # 3 runs x (trace/rank or elbo, posterior), LOO plot, coin pictures (4), die instrumented, consistency, approximation
    assert len(images) >= 3 * 2 + 1 + 4 + 1 + 1 + 1
    assert text.count("<h2>Diagnostics:") == 3
    assert "<h2>LOO comparison" in text and "<th>elpd</th>" in text
    assert "<h2>Bayesian consistency" in text and "martingale gap" in text
    assert "<h2>The Dirichlet-mixture approximation" in text
    assert "<h2>Log: coin.nc" in text and "<h2>Log: die.nc" in text

    record = json.loads((out / "demo.json").read_text())
    [coin] = record["findings"]
    low, high = coin["decay"][1], coin["decay"][2]
    assert 0 < low <= coin["decay"][0] <= high <= 1
    assert {c["name"] for c in record["consistency"]} >= {"SmolLM2 (coin)"}
    assert record["seconds"]["total"] > 0


def test_demo_refuses_a_folder_it_does_not_own(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "demo.json" in error and "--out" in error
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]
