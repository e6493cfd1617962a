"""The wind-tunnel size sweep: model sizes, the shared recipe, reuse, the exactness criterion, and the whole sweep.

bayesmatrix/workflows/sweep.py; ``bayesmatrix windtunnel sweep`` runs it end to end (the study test at the end).
"""

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bayesmatrix.cli import main
from bayesmatrix.commands.cmd_windtunnel import train_command
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.windtunnel import TrainOptions, get_world, load, shipped_model
from bayesmatrix.data.windtunnel.modeling import build_model, count_parameters, llama_intermediate_size, vocabulary
from bayesmatrix.data.windtunnel.training import _check_same_options
from bayesmatrix.analysis.study import FIT_MODELS
from bayesmatrix.workflows.sweep import (
    QUICK,
    SIZES,
    Size,
    SweepSettings,
    columns,
    exact_updater,
    smallest_exact,
    trained,
)

pytestmark = pytest.mark.llm  # torch and transformers: the llm extra

REPO = Path(__file__).resolve().parents[2]
WORLD = get_world("dirichlet")


def llama_parameters(size: Size, vocab: int) -> int:
    """Tied embedding, then per layer four attention matrices, the gated MLP's three and two norms; a final norm."""
    h, width = size.hidden_size, llama_intermediate_size(size.hidden_size)
    return vocab * h + size.num_layers * (4 * h * h + 3 * h * width + 2 * h) + h


def test_sizes_span_a_thousand_to_half_a_million_parameters_in_width_and_depth():
    counts = []
    for size in SIZES:
        model = build_model(WORLD, "llama", None, 64, seed=0, hidden_size=size.hidden_size,
                            num_layers=size.num_layers, num_heads=size.num_heads)
        assert model.config.hidden_size == size.hidden_size and model.config.num_hidden_layers == size.num_layers
        counts.append(count_parameters(model))
        assert counts[-1] == llama_parameters(size, len(vocabulary(WORLD))), size
    assert len(SIZES) >= 6 and counts == sorted(counts) and len(set(counts)) == len(counts)
    assert 5e2 <= counts[0] <= 2e3 and 3e5 <= counts[-1] <= 6e5
    assert len({size.hidden_size for size in SIZES}) >= 5 and len({size.num_layers for size in SIZES}) >= 3


def test_the_default_size_is_the_shipped_models_and_their_records_still_match():
    assert count_parameters(build_model(WORLD, "llama", None, 128, seed=0)) == 99_520
    assert llama_intermediate_size(64) == 172
    record = json.loads((shipped_model("dirichlet") / "training.json").read_text())
    assert "hidden_size" not in record["options"]  # trained before the size was an option
    options = TrainOptions(**record["options"])
    assert (options.hidden_size, options.num_layers, options.num_heads) == (64, 2, 4)
    _check_same_options(record["options"], options, "training.json")  # a rerun would find it trained
    with pytest.raises(InputError, match="hidden_size"):
        _check_same_options(record["options"], dataclasses.replace(options, hidden_size=32), "training.json")
    assert record["parameters"] == 99_520


def test_sizes_are_validated_and_the_command_line_names_the_flag(tmp_path, capsys):
    with pytest.raises(InputError, match="do not divide") as error:
        build_model(WORLD, "llama", None, 64, seed=0, hidden_size=10, num_heads=4)
    assert error.value.field == "num_heads"
    with pytest.raises(InputError, match="at least 1") as error:
        TrainOptions(world="dirichlet", steps=5, num_layers=0)
    assert error.value.field == "num_layers"
    args = ["windtunnel", "train", "--world", "dirichlet", "--steps", "5", "--hidden-size", "10", "--heads", "4"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--heads" in err and err.count("\n") == 1 and not (tmp_path / "x").exists()
    assert main(["windtunnel", "sweep", str(tmp_path / "y"), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_train_command_records_a_size_away_from_the_default():
    sized = TrainOptions(world="dirichlet", steps=10, hidden_size=16, num_layers=1, num_heads=2)
    assert train_command(sized, "out").endswith("--seed 0 --hidden-size 16 --layers 1 --heads 2")
    assert "--hidden-size" not in train_command(TrainOptions(world="dirichlet", steps=10), "out")


def test_the_plan_shares_everything_but_the_size():
    settings = SweepSettings()
    options = [settings.train_options(size) for size in settings.sizes]
    shared = [{k: v for k, v in dataclasses.asdict(o).items() if k not in ("hidden_size", "num_layers", "num_heads")}
              for o in options]
    assert all(row == shared[0] for row in shared)
    assert shared[0]["world"] == "dirichlet" and shared[0]["steps"] == settings.steps
    assert [(o.hidden_size, o.num_layers, o.num_heads) for o in options] == [tuple(s) for s in SIZES]
    with pytest.raises(InputError) as error:
        SweepSettings(eval_length=8)
    assert error.value.field == "eval_length"
    with pytest.raises(InputError) as error:
        dataclasses.replace(QUICK, sizes=(Size(6, 1, 4),))
    assert error.value.field == "num_heads"
    with pytest.raises(InputError) as error:  # the study's settings, checked before any size trains
        dataclasses.replace(QUICK, episodes=1)
    assert error.value.field == "episodes"


def test_a_size_trains_into_its_folder_and_is_reused(tmp_path):
    settings = dataclasses.replace(QUICK, steps=6, batch_size=8, length=6, eval_length=6)
    size = Size(8, 1, 2)
    first = trained(tmp_path, size, settings, command="a command")
    assert first.path == tmp_path / "h8-l1-a2" and first.resumed_from == 0
    assert first.record["parameters"] == llama_parameters(size, len(vocabulary(WORLD)))
    assert first.record["options"]["hidden_size"] == 8 and first.record["command"] == "a command"
    assert load(first.path).model.config.num_hidden_layers == 1
    again = trained(tmp_path, size, settings)
    assert again.resumed_from == settings.steps and again.record == first.record
    with pytest.raises(InputError, match="steps"):
        trained(tmp_path, size, dataclasses.replace(settings, steps=7))


def row(parameters, kl, decay, temperature, gain=0.0, se=1.0):
    return {"size": f"p{parameters}", "parameters": parameters, "strict_kl_bits": kl, "decay_low": decay[0],
            "decay_high": decay[1], "temperature_low": temperature[0], "temperature_high": temperature[1],
            "loo_general": gain, "loo_general_se": se}


def test_the_exact_updater_needs_small_kl_intervals_covering_one_and_no_loo_preference():
    assert exact_updater(row(1, 5e-4, (0.9, 1.05), (0.95, 1.2)))
    assert not exact_updater(row(1, 2e-3, (0.9, 1.05), (0.95, 1.2)))  # KL too large
    assert not exact_updater(row(1, 5e-4, (0.8, 0.97), (0.95, 1.2)))  # decay below 1
    assert exact_updater(row(1, 5e-4, (0.98, 0.9995), (0.95, 1.2)))  # decay reaching the edge of its support
    assert not exact_updater(row(1, 5e-4, (0.98, 0.998), (0.95, 1.2)))  # ... or not
    assert not exact_updater(row(1, 5e-4, (0.9, 1.05), (1.01, 1.2)))  # temperature above 1
    assert not exact_updater(row(1, 5e-4, (0.9, 1.05), (0.95, 1.2), gain=3.0, se=1.0))  # LOO prefers icl-general
    rows = [row(300, 5e-4, (0.9, 1.1), (0.9, 1.1)), row(100, 5e-2, (0.5, 0.9), (0.9, 1.1)),
            row(200, 8e-4, (0.95, 1.1), (0.9, 1.1))]
    for r in rows:
        r["exact"] = exact_updater(r)
    assert smallest_exact(rows) == "p200"
    assert smallest_exact(rows[1:2]) is None


@pytest.mark.long
def test_the_quick_sweep_end_to_end(tmp_path):
    """``bayesmatrix windtunnel sweep --quick``: two tiny sizes trained, scored and studied; table, record, figure.

    The sizes are one study (``OUT/study``, as ``bayesmatrix study`` writes it); run again, the sweep reuses
    every step and writes the same rows (costs included)."""
    out, results = tmp_path / "sweep", tmp_path / "results"
    command = [sys.executable, "-m", "bayesmatrix", "windtunnel", "sweep", str(out), "--quick", "--quiet",
               "--results", str(results)]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0 and "Traceback" not in completed.stderr, completed.stderr[-3000:]
    assert "smallest exact updater:" in completed.stdout
    with (results / "sweep.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["size"] for r in table] == [size.name for size in QUICK.sizes]
    assert list(table[0]) == columns() and "model" not in table[0]  # no machine path in a shipped table
    study = json.loads((out / "study" / "study.json").read_text())
    assert study["task"]["name"] == "windtunnel-dirichlet" and study["settings"]["episodes"] == QUICK.episodes
    for size in QUICK.sizes:
        runs = out / "study" / "models" / size.name / "runs"
        assert sorted(path.name for path in runs.iterdir()) == sorted(FIT_MODELS)
    record = json.loads((results / "sweep.json").read_text())
    assert record["command"].startswith("bayesmatrix windtunnel sweep ") and "--quick" in record["command"]
    assert (results / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    parameters = [r["parameters"] for r in record["rows"]]
    assert parameters == sorted(parameters) and parameters[0] < parameters[1]
    for r in record["rows"]:
        assert len(r["strict_kl_bits_by_position"]) == QUICK.eval_length  # positions beyond K = 8 too
        assert r["strict_kl_bits"] >= r["kl_bits"] > 0 and r["strict_kl_bits_beyond"] > 0
        for site in ("strength_general", "decay", "temperature", "strength", "excess_bits"):
            assert r[f"{site}_low"] <= r[site] <= r[f"{site}_high"], site
        assert r["loo_general_se"] > 0 and r["loo_bayes_se"] > 0 and r["non_bayes"] in FIT_MODELS
        assert r["order_spread"] >= 0 and r["martingale_gap"] >= 0 and r["study_seconds"] > 0
        # Forty steps leave even the larger tiny model far from exact Bayes.
        assert r["strict_kl_bits"] > 1e-2 and not r["exact"]
    assert record["smallest_exact"] is None
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((results / "sweep.json").read_text())["rows"] == record["rows"]
