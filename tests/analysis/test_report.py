"""The HTML report: structure, embedded figures that decode, FAILED flags, LOO findings and bad input."""

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest

from bayesmatrix.analysis.report import build_report, loo_preference, table_html
from bayesmatrix.cli import main
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import write_log
from bayesmatrix.inference.simulate import simulate_icl

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def decoded_images(text: str) -> list[np.ndarray]:
    """Every embedded image decoded to pixels (raises if one is not a PNG)."""
    import matplotlib.image

    return [matplotlib.image.imread(io.BytesIO(base64.b64decode(payload)), format="png") for payload in DATA_URI.findall(text)]


def assert_self_contained(text: str) -> None:
    sources = re.findall(r'(?:src|href)="([^"#][^"]*)"', text)
    assert all(source.startswith("data:image/png;base64,") for source in sources), sources[:3]
    assert "http://" not in text and "https://" not in text


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small simulated ICL log and runs of three models on it (2 chains x 100 draws), one deliberately short."""
    from bayesmatrix.analysis.plots import run_figures
    from bayesmatrix.inference.fit import FitOptions, fit

    folder = tmp_path_factory.mktemp("report")
    log = write_log(
        simulate_icl(12, 8, np.array([2.0, 1.0]), decay=0.7, temperature=1.3, tau=40.0, seed=3), folder / "sim.nc"
    )
    runs = []
    for model, draws in (("icl", 100), ("icl-general", 100), ("icl-none", 20)):
        options = FitOptions(model=model, num_samples=draws, num_warmup=draws, num_chains=2, seed=1, progress_bar=False)
        runs.append(fit(log, options, folder / model, figures=run_figures).path)
    return folder, log, runs


@pytest.mark.slow
def test_report_structure_and_images(fitted):
    folder, log, runs = fitted
    result = build_report(runs, folder / "report.html", [log], figures_dir=folder / "figures")
    text = result.path.read_text()
    assert_self_contained(text)
    # a diagnostics table per run and one comparison table
    assert text.count("<h2>Diagnostics:") == 3
    assert text.count("<h2>LOO comparison") == 1
    assert "<th>elpd</th>" in text and "<th>r_hat</th>" in text
    images = decoded_images(text)
    # per run: trace, rank, posterior; the comparison; the log: instrumented, fitted, KL/entropy, excess, PPC
    assert len(images) == 3 * 3 + 1 + 5
    # excess code length: a line for each run with an effective prior (icl-none has none); the log states no prior
    assert "Excess code length" in text and "<li>icl (nuts): excess " in text and "<li>icl-general (nuts): excess " in text
    assert "<li>icl-none (nuts): excess" not in text and "No stated prior" in text
    assert all(image.ndim == 3 and min(image.shape[:2]) > 50 for image in images)
    # the findings: the LOO verdict, and each run in play with its own estimates
    [findings] = result.findings
    general = findings.estimates_of("icl-general")
    assert 0 < general.decay.low <= general.decay.mean <= general.decay.high <= 1
    assert ("LOO prefers" in text or "not distinguishable" in text) and "effective prior" in text
    assert findings.preferred in {"icl (nuts)", "icl-general (nuts)"}  # the no-update model explains nothing here
    assert findings.in_play[0].label == findings.preferred
    assert "icl-none (nuts)" not in {run.label for run in findings.in_play}


@pytest.mark.slow
def test_failed_checks_are_flagged_red(fitted):
    folder, _, runs = fitted
    text = build_report([runs[2]], folder / "short.html").path.read_text()
    # 2 x 20 draws cannot reach ESS 200: those rows are FAILED and drawn red
    assert '<tr class=failed><th><span class="tag">FAILED</span>' in text
    assert '<div class="failed-box"><b>FAILED</b>' in text


def test_table_html_marks_failed_rows():
    frame = pd.DataFrame({"mean": [1.0, 2.0], "flag": ["", "r_hat 1.2 > 1.01"]}, index=["a", "b"])
    text = table_html(frame, [False, True], "site")
    assert text.count("FAILED") == 1 and "<tr class=failed><th><span" in text and "<tr><th>a</th>" in text


def test_loo_preference_skips_the_other_fit_of_the_same_model():
    table = pd.DataFrame(
        {"elpd": [100.0, 99.5, 80.0], "dse": [0.0, 0.4, 3.0]},
        index=["icl-general (nuts)", "icl-general (svi)", "icl (nuts)"],
    )
    assert loo_preference(table) == ("icl-general (nuts)", "icl (nuts)", 20.0, 3.0)
    assert loo_preference(table.iloc[:2]) == ("icl-general (nuts)", None, None, None)


def test_bad_arguments_are_one_line_naming_the_option(tmp_path, capsys):
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path)]) == 2  # a folder as the report file
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--out" in error and "is a directory" in error
    with pytest.raises(InputError, match="nothing to report"):
        build_report([], tmp_path / "report.html", [])
    assert list(tmp_path.iterdir()) == []


def test_not_a_run_directory_is_input_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "report.html"
    with pytest.raises(InputError, match="not a run directory"):
        build_report([tmp_path / "empty"], out)
    assert main(["report", str(tmp_path / "empty"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a run directory" in error
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "empty"]


def test_bad_log_is_input_error(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_text("not netCDF")
    with pytest.raises(InputError, match="bad.nc"):
        build_report([], tmp_path / "r.html", [bad])
    assert not (tmp_path / "r.html").exists()


def fake_run(folder, model, method="nuts", sample_stats=None, **sites):
    """A run read back: a posterior of the given sites (chain, draw[, col]) over columns a, b, c."""
    import arviz_base as azb

    from bayesmatrix.inference.rundir import Run

    dims = {name: ["col"] for name, value in sites.items() if np.ndim(value) == 3}
    groups = {"posterior": sites, **({"sample_stats": sample_stats} if sample_stats else {})}
    tree = azb.from_dict(groups, dims=dims, coords={"col": ["a", "b", "c"]})
    info = {"model": model, "method": method, "data_sha256": "log", "data_file": "compass.nc", "data_model": "llm"}
    return Run(path=folder / f"{model}-{method}", datatree=tree, info=info)


def test_findings_quote_each_run_in_play_from_its_own_posterior(tmp_path):
    """The issue's compass case: icl-none 11.4 ± 5.7 behind icl is in play; each run's strength is its own."""
    from bayesmatrix.analysis.compare import Comparison
    from bayesmatrix.analysis.report import findings_of, format_findings

    rng = np.random.default_rng(0)
    m = rng.dirichlet([50.0, 30.0, 20.0], size=(2, 100))
    runs = [
        fake_run(tmp_path, "icl", m=m, s=rng.normal(136.0, 5.0, (2, 100)), tau=rng.gamma(5.0, size=(2, 100))),
        fake_run(tmp_path, "icl-none", m=m, tau=rng.gamma(5.0, size=(2, 100))),
        fake_run(tmp_path, "icl-general", "svi", m=m, s=rng.normal(40.0, 2.0, (1, 100)).repeat(2, 0),
                 sample_stats={"log_importance_weight": 3.0 * rng.standard_t(1.0, (2, 100))},  # a guide far too narrow
                 decay=rng.uniform(0.9, 0.99, (2, 100)), temperature=rng.normal(0.84, 0.05, (2, 100))),
        fake_run(tmp_path, "icl-frequency", pseudocount=rng.gamma(2.0, size=(2, 100))),
    ]  # fmt: skip
    labels = ["icl (nuts)", "icl-none (nuts)", "icl-general (svi)", "icl-frequency (nuts)"]
    table = pd.DataFrame({"elpd": [0.0, -11.4, -3.0, -114.0], "elpd_diff": [0.0, 11.4, 3.0, 114.0],
                          "dse": [0.0, 5.7, 2.0, 15.6], "bad_pareto_k": [0, 0, 0, 0]}, index=labels)  # fmt: skip
    comparison = Comparison(table=table, loo={}, warnings=[],
                            methods={label: label.split("(")[1][:-1] for label in labels},
                            descriptions={"icl (nuts)": "exact Bayes", "icl-none (nuts)": "no updating",
                                          "icl-general (svi)": "decay and temperature"},
                            paths={label: run.path for label, run in zip(labels, runs)})  # fmt: skip
    [findings] = findings_of(runs, {"log": comparison})
    assert [run.label for run in findings.in_play] == labels[:3]
    assert [run.label for run in findings.behind] == ["icl-frequency (nuts)"]
    text = format_findings(findings)
    assert "LOO prefers" not in text and "not distinguishable" in text and "icl-none (nuts) (11.4 ± 5.7)" in text
    assert "icl-none (nuts) = no updating" in text  # the simpler explanation that stays in play
    own = {run.label: run for run in findings.in_play}
    assert 130 < own["icl (nuts)"].strength.mean < 142 and 37 < own["icl-general (svi)"].strength.mean < 43
    for label in labels[:3]:  # one line per run in play, quoting what that run's own posterior says
        [line] = [line for line in text.splitlines() if line.strip().startswith(label)]
        if own[label].strength is not None:
            assert f"strength {own[label].strength} examples" in line
    assert "constant predictive p(a) = " in text and own["icl-none (nuts)"].decay is None
    assert f"temperature {own['icl-general (svi)'].temperature}" in text
    assert "approximate" in text and "SVI fit" in text and "guide Pareto k" in text and ": unreliable" in text
    assert "94% equal-tailed intervals" in text


def test_findings_quote_icl_framed_per_level_priors(tmp_path):
    """icl-framed's prior is indexed by framing level: the findings quote each level's own mean and strength."""
    import arviz_base as azb

    from bayesmatrix.analysis.report import findings_of, format_findings
    from bayesmatrix.inference.rundir import Run

    rng = np.random.default_rng(1)
    m = np.stack([rng.dirichlet([80.0, 20.0], size=(2, 100)), rng.dirichlet([20.0, 80.0], size=(2, 100))], axis=2)
    s = np.stack([rng.normal(5.0, 0.2, (2, 100)), rng.normal(30.0, 1.0, (2, 100))], axis=2)  # (chain, draw, framing)
    tree = azb.from_dict({"posterior": {"m": m, "s": s, "tau": rng.gamma(5.0, size=(2, 100))}},
                         dims={"m": ["framing", "col"], "s": ["framing"]},
                         coords={"framing": ["bias=20", "bias=80"], "col": ["heads", "tails"]})  # fmt: skip
    info = {"model": "icl-framed", "method": "nuts", "data_sha256": "log", "data_file": "framed.nc", "data_model": "llm"}
    [findings] = findings_of([Run(path=tmp_path / "framed", datatree=tree, info=info)], {})
    [run] = findings.in_play
    assert [level["level"] for level in run.levels] == ["bias=20", "bias=80"]
    low, high = run.levels
    assert 0.75 < low["prior_mean"]["heads"].mean < 0.85 and 0.15 < high["prior_mean"]["heads"].mean < 0.25
    assert low["strength"].low < 5.0 < low["strength"].high and 28 < high["strength"].mean < 32
    text = format_findings(findings)
    assert "no prior, decay or temperature" not in text
    for level in run.levels:
        assert (f"under {level['level']}: effective prior mean p(heads) = {level['prior_mean']['heads']}, "
                f"p(tails) = {level['prior_mean']['tails']}, strength {level['strength']} examples") in text  # fmt: skip
    assert "not by whether their intervals overlap" in text and "94% equal-tailed intervals" in text
