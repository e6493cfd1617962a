"""Studies across models (bayesmatrix/workflows/study.py, analysis/study.py): the table, the figure, resuming.

The quick tests build finished model folders by hand (a measures.json each) and
check what run_study makes of them without loading a model; the study test runs
``bayesmatrix study`` on two shipped wind tunnels through every stage at a tiny size, then reruns it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bayesmatrix.analysis.study import COLUMNS, PANELS, format_table, study_frame, table_columns
from bayesmatrix.data.errors import InputError
from bayesmatrix.workflows.study import (
    MEASURES_FILE,
    MODEL_FILE,
    MODELS_DIR,
    StudySettings,
    model_folder_name,
    model_identity,
    run_study,
    study_record,
)

TASK = "windtunnel-dirichlet"


def fake_row(model: str, parameters: int, decay: float, **changes) -> dict:
    """A row as fit_measures and the consistency checks make it, with made-up values."""
    row = {"model": model, "parameters": parameters}
    for column in COLUMNS:
        if column not in row:
            row[column] = 0.5
    for column in ("decay", "temperature", "strength", "strength_general", "excess_bits"):
        row[f"{column}_low"], row[f"{column}_high"] = 0.25, 0.75
    row.update(decay=decay, decay_low=decay - 0.1, decay_high=min(decay + 0.1, 1.0), non_bayes="icl-frequency",
               loo_verdict="not distinguishable", divergences=0, **changes)
    return row


def begin(out) -> None:
    """The study.json of a study of TASK with the default settings."""
    from bayesmatrix.data.tasks import get_task

    out.mkdir(parents=True)
    (out / "study.json").write_text(json.dumps(study_record(get_task(TASK), StudySettings())))


def finish(out, model: str, row: dict) -> None:
    """The folder of a model a previous run finished: what it loaded, and its measures."""
    folder = out / MODELS_DIR / model_folder_name(model)
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_text(json.dumps({"model": model, "identity": model_identity(model),
                                                 "parameters": row["parameters"]}))  # fmt: skip
    (folder / MEASURES_FILE).write_text(json.dumps({"row": row}))


def test_folder_names_of_names_paths_and_hub_ids(tmp_path):
    assert model_folder_name("windtunnel:dirichlet") == "windtunnel-dirichlet"
    assert model_folder_name("smollm2") == "smollm2"
    assert model_folder_name("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB--SmolLM2-135M"
    (tmp_path / "size 1k").mkdir()
    assert model_folder_name(str(tmp_path / "size 1k")) == "size-1k"
    assert model_identity(str(tmp_path / "size 1k")) == str((tmp_path / "size 1k").resolve())
    with pytest.raises(InputError, match="no shipped wind-tunnel model 'nope'") as error:
        model_identity("windtunnel:nope")
    assert error.value.field == "models"


def test_settings_check_themselves():
    for field, value in (("episodes", 1), ("orders", 1), ("num_warmup", -1), ("observe", "logits"), ("seed", -1)):
        with pytest.raises(InputError) as error:
            StudySettings(**{field: value})
        assert error.value.field == field
    with pytest.raises(InputError) as error:
        StudySettings(samples=0)  # counts to observe need sampled tokens
    assert error.value.field == "samples"
    assert StudySettings(samples=0, observe="probs").samples == 0


def test_finished_models_are_reused_into_the_table_and_figure(tmp_path):
    """Two finished models (one without consistency checks: NaN) come back as rows, in the order given."""
    out = tmp_path / "study"
    small = fake_row("windtunnel:dirichlet-window4", 1_000, 0.6, order_spread=math.nan, order_spread_mcse=math.nan)
    large = fake_row("windtunnel:dirichlet", 99_520, 0.95)
    begin(out)
    finish(out, "windtunnel:dirichlet", large)
    finish(out, "windtunnel:dirichlet-window4", small)
    said = []
    result = run_study(["windtunnel:dirichlet-window4", "windtunnel:dirichlet"], TASK, out, say=said.append)
    assert result.reused == ("windtunnel:dirichlet-window4", "windtunnel:dirichlet")
    assert [row["model"] for row in result.rows] == ["windtunnel:dirichlet-window4", "windtunnel:dirichlet"]
    assert len(said) == 2 and all("finished earlier" in line for line in said)  # one line per model

    table = pd.read_csv(result.table)
    assert list(table.columns) == table_columns()
    assert table["parameters"].tolist() == [1_000, 99_520]
    assert table["decay"].tolist() == [0.6, 0.95] and np.isnan(table["order_spread"].iloc[0])
    assert result.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "0.6 [0.5, 0.7]" in result.summary and "99,520" in result.summary
    assert json.loads((out / "study.json").read_text())["models"] == [
        "windtunnel:dirichlet-window4", "windtunnel:dirichlet"]  # fmt: skip


def test_a_folder_of_another_study_or_model_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's folder")
    with pytest.raises(InputError, match="holds no study.json") as error:
        run_study(["windtunnel:dirichlet"], TASK, mine)
    assert error.value.field == "out"
    out = tmp_path / "study"
    begin(out)
    finish(out, "windtunnel:dirichlet", fake_row("windtunnel:dirichlet", 99_520, 0.95))
    run_study(["windtunnel:dirichlet"], TASK, out)
    with pytest.raises(InputError, match="other settings \\(episodes 32\\)"):
        run_study(["windtunnel:dirichlet"], TASK, out, episodes=8)
    with pytest.raises(InputError, match="another task"):
        run_study(["windtunnel:dirichlet"], "windtunnel-mixture", out)
    with pytest.raises(InputError, match="would share the folder") as error:
        run_study(["windtunnel:dirichlet", "windtunnel:dirichlet"], TASK, out)
    assert error.value.field == "models"
    # a folder of that name holding another model's study
    other = out / MODELS_DIR / "windtunnel-dirichlet-gpt2"
    other.mkdir()
    (other / MODEL_FILE).write_text(json.dumps({"identity": "/somewhere/else"}))
    with pytest.raises(InputError, match="holds the study of '/somewhere/else'"):
        run_study(["windtunnel:dirichlet-gpt2"], TASK, out)


def test_every_panel_is_a_column_and_the_table_prints_missing_values():
    columns = table_columns()
    for panel in PANELS:
        assert panel.column in columns
        assert panel.bars == "interval" and f"{panel.column}_low" in columns or panel.bars in columns
    row = fake_row("m", 10, 0.9, loo_bayes=math.nan)
    text = format_table([row])
    assert "LOO icl - non-Bayes" in text and " - " in text.splitlines()[1]
    assert list(study_frame([row]).columns)[:2] == ["model", "parameters"]


@pytest.mark.long
@pytest.mark.llm  # runs the wind tunnels (torch)
def test_two_wind_tunnels_end_to_end_and_a_rerun_reuses_them(tmp_path):
    """``bayesmatrix study`` through every stage on two shipped wind tunnels at a tiny size, in its own
    process as a user runs it (the command's end-to-end test: tests/cli/test_commands.py lists it as
    covered here); a rerun redoes nothing, and after a model's measures and one run are removed (a
    crash mid-model) only that model's missing parts are redone."""
    out = tmp_path / "study"
    models = ["windtunnel:dirichlet", "windtunnel:dirichlet-gpt2"]
    tiny = dict(episodes=4, length=6, num_warmup=40, num_samples=40, multisets=2, orders=3, paths=2, path_length=3)
    flags = [word for name, value in tiny.items() for word in (f"--{name.replace('_', '-')}", str(value))]
    command = [sys.executable, "-m", "bayesmatrix", "study", "--task", TASK, "--models", *models, *flags,
               "--out", str(out)]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    shown = f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    assert completed.returncode == 0 and "Traceback" not in completed.stderr, shown
    assert completed.stdout.strip().splitlines()[-1] == f"wrote {out / 'study.csv'} and {out / 'study.png'}"
    assert sum("fit 4/4: icl-frequency" in line for line in completed.stderr.splitlines()) == 2, shown
    table = pd.read_csv(out / "study.csv")
    assert table["model"].tolist() == models and table["parameters"].iloc[0] == 99520
    assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    folders = [out / MODELS_DIR / model_folder_name(model) for model in models]
    assert [json.loads((folder / MEASURES_FILE).read_text())["row"]["model"] for folder in folders] == models

    stamps = {path: path.stat().st_mtime_ns for folder in folders for path in folder.rglob("*") if path.is_file()}
    said = []
    result = run_study(models, TASK, out, say=said.append, **tiny)  # the command's settings, in this process
    assert result.reused == tuple(models) and len(said) == 2 and all("finished earlier" in line for line in said)
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert [row["model"] for row in result.rows] == models
    written = table.set_index("model")
    for row in result.rows:
        assert row["parameters"] > 1000
        for column in ("decay", "temperature", "strength", "excess_bits", "loo_bayes", "loo_bayes_se",
                       "loo_general", "order_spread", "martingale_gap"):  # fmt: skip
            assert np.isfinite(row[column]), (row["model"], column)
            assert np.isclose(written.loc[row["model"], column], row[column]), column
        assert row["decay_low"] <= row["decay"] <= row["decay_high"]
        assert row["excess_bits"] >= 0 and row["order_spread"] >= 0 and row["martingale_gap"] >= 0
        assert row["loo_verdict"] == "not distinguishable" or row["loo_verdict"].startswith("LOO prefers")

    crashed = folders[1]
    (crashed / MEASURES_FILE).unlink()
    removed_run = crashed / "runs" / "icl-none"
    for path in sorted(removed_run.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    removed_run.rmdir()
    said.clear()
    third = run_study(models, TASK, out, say=said.append, **tiny)
    assert third.reused == (models[0],)
    assert [line for line in said if "fit " in line] == [
        f"[2/2] {models[1]}: fit 3/4: icl-none by NUTS (2 chains x 40 draws, observing counts)"]  # fmt: skip
    unchanged = {path: stamp for path, stamp in stamps.items() if path.name != MEASURES_FILE or crashed not in path.parents}
    unchanged = {path: stamp for path, stamp in unchanged.items() if removed_run not in path.parents}
    assert {path: path.stat().st_mtime_ns for path in unchanged} == unchanged  # the log and the other runs kept
    assert third.rows[1]["model"] == models[1] and np.isfinite(third.rows[1]["loo_bayes"])
