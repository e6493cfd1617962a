"""The Bayesian wind tunnel: exact predictives, tokenisation, sliding windows, training, resume, scoring."""

import dataclasses
import importlib.resources
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesmatrix.cli import main
from bayesmatrix.commands.cmd_windtunnel import train_command
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.windtunnel import (
    WORLDS,
    TrainOptions,
    World,
    episodes,
    evaluate,
    get_world,
    kl_bits,
    load,
    model_predictive,
    shipped_model,
    train,
    write_evaluation,
)
from bayesmatrix.data.windtunnel.modeling import SHIPPED_DIR, build_model, build_tokenizer, input_ids, receptive_field
from bayesmatrix.data.tasks import windtunnel_task
from bayesmatrix.data.windtunnel.worlds import context_counts, held_out_rng

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("dirichlet", "mixture", "dirichlet-window4", "dirichlet-window1", "dirichlet-gpt2", "dirichlet-nope")


def polya_sequence_probability(tokens, alpha):
    """P(y_1..y_k) under a Dirichlet prior by the Polya urn, one draw at a time (no gamma functions)."""
    alpha = np.asarray(alpha, dtype=float)
    counts = np.zeros_like(alpha)
    probability = 1.0
    for t, token in enumerate(tokens):
        probability *= (alpha[token] + counts[token]) / (alpha.sum() + t)
        counts[token] += 1
    return probability


# ---------------------------------------------------------------- worlds


def test_dirichlet_predictive_is_the_conjugate_update():
    world = WORLDS["dirichlet"]
    alpha = np.asarray(world.alphas[0])
    tokens = np.array([[0, 2, 2, 1, 0, 0]])
    predictive = world.predictive(tokens)[0]
    counts = np.zeros(3)
    for k, token in enumerate(tokens[0]):
        np.testing.assert_allclose(predictive[k], (alpha + counts) / (alpha.sum() + k), rtol=1e-12)
        counts[token] += 1


def test_mixture_predictive_matches_the_polya_urn_ratio():
    world = WORLDS["mixture"]
    tokens = [2, 2, 0, 2, 1, 2, 2]
    predictive = world.predictive(np.array([tokens]))[0]
    for k in range(len(tokens)):
        prefix = tokens[:k]
        evidence = [
            sum(w * polya_sequence_probability(prefix + [c], a) for w, a in zip(world.weights, world.alphas))
            for c in range(3)
        ]
        np.testing.assert_allclose(predictive[k], np.array(evidence) / sum(evidence), rtol=1e-10)


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_predictive_is_a_martingale(name):
    # Averaging the next predictive over the current one gives the current one back.
    world = WORLDS[name]
    tokens = world.sample(np.random.default_rng(0), 20, 10).tokens
    for row in tokens:
        predictive = world.predictive(row[None, :])[0]
        for k in range(9):
            extended = np.array([np.concatenate([row[:k], [c], [0]]) for c in range(3)])
            next_predictive = world.predictive(extended)[:, k + 1]
            np.testing.assert_allclose(predictive[k] @ next_predictive, predictive[k], rtol=1e-10)


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_samples_follow_the_prior(name):
    # The first token's frequencies match the prior predictive within Monte Carlo error.
    world = WORLDS[name]
    n = 20000
    drawn = world.sample(np.random.default_rng(1), n, 4)
    prior_mean = world.predictive(drawn.tokens[:1])[0, 0]
    first = np.bincount(drawn.tokens[:, 0], minlength=3) / n
    mcse = np.sqrt(prior_mean * (1 - prior_mean) / n)
    assert np.all(np.abs(first - prior_mean) / mcse < 4)
    # and each sequence's tokens follow its own pi
    agree = drawn.pi[np.arange(n), drawn.tokens[:, 1]]
    assert agree.mean() > (drawn.pi**2).sum(axis=1).mean() - 4 * agree.std() / np.sqrt(n)
    np.testing.assert_array_equal(np.bincount(drawn.component, minlength=len(world.weights)) > 0, True)


def test_windowed_predictive_limits():
    world = WORLDS["mixture"]
    tokens = world.sample(np.random.default_rng(2), 50, 12).tokens
    np.testing.assert_allclose(world.windowed_predictive(tokens, 12), world.predictive(tokens))
    prior = world.predictive(tokens[:, :1])[:, 0]
    np.testing.assert_allclose(world.windowed_predictive(tokens, 0), np.broadcast_to(prior[:, None], (50, 12, 3)))
    # With 3 visible tokens, position 10 is the predictive from tokens 7, 8, 9 alone.
    window = world.windowed_predictive(tokens, 3)
    np.testing.assert_allclose(window[:, 9], world.predictive(tokens[:, 6:10])[:, 3])
    np.testing.assert_allclose(window[:, :4], world.predictive(tokens)[:, :4])


def test_kl_bits():
    assert kl_bits([0.5, 0.5], [0.5, 0.5]) == 0
    np.testing.assert_allclose(kl_bits([0.5, 0.5], [0.25, 0.75]), 0.5 * np.log2(2) + 0.5 * np.log2(0.5 / 0.75))
    assert kl_bits([1.0, 0.0], [0.5, 0.5]) == pytest.approx(1.0)


def test_world_validation_and_round_trip():
    world = WORLDS["mixture"]
    assert World.from_json(json.loads(json.dumps(world.to_json()))) == world
    with pytest.raises(InputError, match="unknown world"):
        get_world("uniform")
    with pytest.raises(InputError, match="positive"):
        World("w", ("A", "B"), (1.0,), ((1.0, -1.0),))
    with pytest.raises(InputError, match="special"):
        World("w", ("A", "<bos>"), (1.0,), ((1.0, 1.0),))


def test_episodes_render_prompts_the_tokenizer_reads_back():
    world = WORLDS["dirichlet"]
    drawn = episodes("dirichlet", num_episodes=3, length=5, seed=11)
    assert drawn.categories == ("A", "B", "C")
    assert drawn.prompts[0][0] == "<bos>"
    assert drawn.texts[1] == "<bos> " + " ".join(drawn.categories[t] for t in drawn.tokens[1])
    assert drawn.template == {"header": "<bos>", "observation": " {}"}
    np.testing.assert_array_equal(drawn.context_counts, context_counts(drawn.tokens, 3))
    np.testing.assert_allclose(drawn.predictive, world.predictive(drawn.tokens))
    tokenizer = build_tokenizer(world)
    expected = input_ids(drawn.tokens, world).numpy()
    for e in range(3):
        for k in range(5):
            ids = tokenizer(drawn.prompts[e][k])["input_ids"]
            assert ids == tokenizer(drawn.prompts[e][k], add_special_tokens=False)["input_ids"]
            assert ids == list(expected[e, : k + 1])
    assert tokenizer.decode(tokenizer(drawn.texts[0])["input_ids"]) == drawn.texts[0]
    assert tokenizer.convert_tokens_to_ids(list(drawn.categories)) == [3, 4, 5]
    # The same seed gives the same episodes; the held-out stream is not the training stream.
    np.testing.assert_array_equal(episodes("dirichlet", 3, 5, seed=11).tokens, drawn.tokens)


# ---------------------------------------------------------------- architecture


@pytest.mark.parametrize("window", [1, 4])
def test_sliding_window_is_kept_in_the_saved_folder(tmp_path, window):
    from transformers import AutoModelForCausalLM

    world = WORLDS["dirichlet"]
    build_model(world, "llama", window, max_positions=64, seed=0).save_pretrained(tmp_path)
    visible = 2 * (window - 1) + 1  # two layers
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 3, size=(4, 24))
    changed = tokens.copy()
    changed[:, :8] = (tokens[:, :8] + 1) % 3
    for implementation in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        assert receptive_field(model.config) == visible
        before, _ = model_predictive(model, world, tokens)
        after, _ = model_predictive(model, world, changed)
        # Position k sees inputs k-visible+1..k-1 (0-based) : inputs 1..8 carry tokens 0..7.
        first_blind = 8 + visible
        np.testing.assert_array_equal(before[:, first_blind:], after[:, first_blind:])
        assert np.abs(before[:, 1:first_blind] - after[:, 1:first_blind]).max() > 1e-6


def test_gpt2_refuses_a_window():
    with pytest.raises(InputError, match="sliding window needs the llama architecture"):
        build_model(WORLDS["dirichlet"], "gpt2", 4, max_positions=64, seed=0)


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A Llama trained 50 steps on short sequences (about 2 s)."""
    options = TrainOptions(world="dirichlet", steps=50, length=8, batch_size=32, eval_every=25, checkpoint_every=25)
    out = tmp_path_factory.mktemp("tiny")
    return options, train(options, out, progress=False, command=train_command(options, out))


def test_training_writes_a_regular_transformers_folder(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options, result = tiny
    names = {p.name for p in result.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json", "learning_curve.csv"} <= names
    assert "checkpoint.pt" not in names
    model = AutoModelForCausalLM.from_pretrained(result.path)
    tokenizer = AutoTokenizer.from_pretrained(result.path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tokenizer("<bos> A B C")["input_ids"] == [1, 3, 4, 5]
    record = json.loads((result.path / "training.json").read_text())
    assert record["options"]["steps"] == 50
    assert record["command"].startswith("bayesmatrix windtunnel train --world dirichlet --steps 50 --out ")
    assert [row["step"] for row in result.curve] == [25, 50]
    # Fifty steps already move it well below the untrained model.
    untrained = build_model(get_world("dirichlet"), "llama", None, 32, seed=0).eval()
    tokens = get_world("dirichlet").sample(held_out_rng(), 200, 8).tokens
    exact = get_world("dirichlet").predictive(tokens)
    before = kl_bits(exact, model_predictive(untrained, get_world("dirichlet"), tokens)[0]).mean()
    assert result.curve[-1]["kl_bits"] < before / 5


def test_rerun_is_a_no_op_and_other_options_are_refused(tiny):
    options, result = tiny
    again = train(options, result.path, progress=False)
    assert again.resumed_from == options.steps
    assert again.record == result.record
    with pytest.raises(InputError, match="steps"):
        train(TrainOptions(world="dirichlet", steps=60, length=8, batch_size=32), result.path, progress=False)


def test_training_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="neither empty nor"):
        train(TrainOptions(world="dirichlet", steps=2), tmp_path, progress=False)


def test_evaluation_scores_by_position_and_writes_json_and_csv(tiny, tmp_path):
    _, result = tiny
    evaluation = evaluate(result.path, sequences=100, length=12)
    assert evaluation.position.tolist() == list(range(1, 13))
    assert evaluation.mean_kl_bits_beyond is not None
    assert np.all(evaluation.kl_bits >= 0) and np.all((0 <= evaluation.outside_mass) & (evaluation.outside_mass < 1))
    assert evaluation.floor_kl_bits is None
    json_path = write_evaluation(evaluation, tmp_path / "curve.json")
    written = json.loads(json_path.read_text())
    assert written["mean_kl_bits"] == pytest.approx(evaluation.mean_kl_bits)
    assert len(written["positions"]) == 12
    csv_lines = write_evaluation(evaluation, tmp_path / "curve.csv").read_text().splitlines()
    header = "position,strict_kl_bits,strict_kl_bits_se,kl_bits,kl_bits_se,outside_mass"
    assert csv_lines[0] == header and len(csv_lines) == 13
    with pytest.raises(InputError, match=".json or .csv"):
        write_evaluation(evaluation, tmp_path / "curve.txt")


def test_strict_kl_against_brute_force(tiny):
    """The strict score, one prefix at a time through the tokenizer and a plain loop over categories."""
    _, result = tiny
    sequences, length, seed = 4, 10, 11  # 10 > K = 8: two positions beyond training
    evaluation = evaluate(result.path, sequences=sequences, length=length, seed=seed)
    loaded = load(result.path)
    world = loaded.world
    tokens = world.sample(held_out_rng(seed), sequences, length).tokens
    vocab = loaded.tokenizer.get_vocab()
    strict, renormalised, outside = np.zeros((3, sequences, length))
    for s in range(sequences):
        for k in range(length):
            text = " ".join(["<bos>", *(world.categories[t] for t in tokens[s, :k])])
            ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
            with torch.no_grad():
                probs = torch.softmax(loaded.model(input_ids=ids).logits[0, -1].double(), dim=-1).numpy()
            alpha = np.asarray(world.alphas[0])
            counts = np.bincount(tokens[s, :k], minlength=3)
            exact = (alpha + counts) / (alpha.sum() + k)
            p = [probs[vocab[c]] for c in world.categories]
            mass = sum(p)
            strict[s, k] = sum(q * np.log2(q / p_c) for q, p_c in zip(exact, p))
            renormalised[s, k] = sum(q * np.log2(q / (p_c / mass)) for q, p_c in zip(exact, p))
            outside[s, k] = 1 - mass
    # One prefix at a time in float32 differs from the batched pass in the last digits of the logits only.
    np.testing.assert_allclose(evaluation.strict_kl_bits, strict.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(evaluation.kl_bits, renormalised.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(evaluation.outside_mass, outside.mean(axis=0), rtol=1e-4)
    # The two scores differ by exactly -log2(category mass), which charges mass outside the categories.
    np.testing.assert_allclose(strict, renormalised - np.log2(1 - outside), rtol=1e-9)
    assert np.all(outside > 0) and np.all(evaluation.strict_kl_bits > evaluation.kl_bits)
    per_sequence = strict[:, :8].mean(axis=1)
    assert evaluation.mean_strict_kl_bits_trained == pytest.approx(per_sequence.mean(), rel=1e-4)
    assert evaluation.mean_strict_kl_bits_trained_se == pytest.approx(per_sequence.std(ddof=1) / 2, rel=1e-3)
    assert evaluation.mean_strict_kl_bits_beyond == pytest.approx(strict[:, 8:].mean(), rel=1e-4)


def test_outside_penalty_moves_mass_onto_the_categories(tiny, tmp_path):
    options, result = tiny
    penalised = dataclasses.replace(options, outside_penalty=30.0)
    trained = train(penalised, tmp_path, progress=False)
    assert trained.record["options"]["outside_penalty"] == 30.0
    assert "--outside-penalty 30.0" in train_command(penalised, tmp_path)
    # Same data, same steps, same initial weights: only the loss differs.
    # (Fifty steps are too few for the renormalised KL to catch up: the penalty slows the start.)
    assert trained.curve[-1]["outside_mass"] < result.curve[-1]["outside_mass"] / 3
    charged = [row["strict_kl_bits"] - row["kl_bits"] for row in (trained.curve[-1], result.curve[-1])]
    assert 0 < charged[0] < charged[1] / 3
    with pytest.raises(InputError, match="zero or more"):
        dataclasses.replace(options, outside_penalty=-1.0)


def test_a_record_from_before_an_option_existed_reads_as_its_default(tiny, tmp_path):
    options, result = tiny
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "learning_curve.csv"):
        (tmp_path / name).write_bytes((result.path / name).read_bytes())
    record = json.loads((result.path / "training.json").read_text())
    del record["options"]["outside_penalty"]
    (tmp_path / "training.json").write_text(json.dumps(record))
    assert train(options, tmp_path, progress=False).resumed_from == options.steps
    with pytest.raises(InputError, match="outside_penalty"):
        train(dataclasses.replace(options, outside_penalty=1.0), tmp_path, progress=False)


@pytest.mark.slow
def test_resume_after_an_interrupt_gives_the_uninterrupted_result(tmp_path):
    """Ctrl-C a real training process, run the same command again, and get the same weights."""
    from safetensors.torch import load_file

    common = ["--world", "mixture", "--steps", "160", "--length", "6", "--batch-size", "8", "--quiet"]
    common += ["--checkpoint-every", "5", "--eval-every", "50"]
    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "bayesmatrix.cli", "windtunnel", "train", *common, "--out", str(interrupted)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (interrupted / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    stopped_at = torch.load(interrupted / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < stopped_at < 160
    assert main(["windtunnel", "train", *common, "--out", str(interrupted)]) == 0
    straight = tmp_path / "straight"
    assert main(["windtunnel", "train", *common, "--out", str(straight)]) == 0
    resumed_weights = load_file(interrupted / "model.safetensors")
    straight_weights = load_file(straight / "model.safetensors")
    for name, value in straight_weights.items():
        assert torch.equal(resumed_weights[name], value), name
    with pytest.raises(InputError, match="seed"):
        train(TrainOptions(world="mixture", steps=160, length=6, batch_size=8, seed=1), straight, progress=False)


# ---------------------------------------------------------------- command line


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["windtunnel", "eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a trained wind-tunnel model" in err and err.count("\n") == 1
    assert main(["windtunnel", "train", "--world", "dirichlet", "--steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--steps" in capsys.readouterr().err
    args = ["windtunnel", "train", "--world", "dirichlet", "--steps", "5", "--arch", "gpt2", "--window", "4"]
    assert main([*args, "--out", str(tmp_path / "y")]) == 2
    assert "--window" in capsys.readouterr().err
    assert main(["windtunnel", "train", "--world", "uniform", "--steps", "5", "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert "--world" in err and "unknown world 'uniform'" in err and err.count("\n") == 1
    assert not (tmp_path / "z").exists()


def test_cli_eval_prints_the_curve(tiny, tmp_path, capsys):
    _, result = tiny
    assert main(["windtunnel", "eval", str(result.path), "--sequences", "50", "--out", str(tmp_path / "e.csv")]) == 0
    out = capsys.readouterr().out
    assert "strict mean KL over positions 1..8" in out and "renormalised over the categories" in out
    assert "outside the category tokens" in out and "no position limit" in out
    assert (tmp_path / "e.csv").is_file()


# ---------------------------------------------------------------- shipped models


def test_shipped_models_are_package_data_and_small():
    root = importlib.resources.files("bayesmatrix.data") / "shipped" / "windtunnel"
    total = 0
    for name in SHIPPED:
        folder = shipped_model(name)
        assert folder == SHIPPED_DIR / name
        assert (root / name / "model.safetensors").is_file()
        record = json.loads((folder / "training.json").read_text())
        assert record["command"].split("--out ")[1].split()[0] == f"data/shipped/windtunnel/{name}"
        assert train_command(TrainOptions(**record["options"]), f"data/shipped/windtunnel/{name}") == record["command"]
        assert not (folder / "checkpoint.pt").exists()
        total += sum(p.stat().st_size for p in folder.iterdir())
    assert total < 5 * 2**20
    with pytest.raises(InputError, match="no shipped wind-tunnel model"):
        shipped_model("nonexistent")


@pytest.mark.slow
def test_the_logger_reads_a_shipped_model_through_its_icl_task():
    from bayesmatrix.data.llm import load_model, log_task

    loaded = load_model(str(shipped_model("dirichlet")))
    log = log_task(loaded, windtunnel_task("dirichlet"), episodes=4, length=8, seed=0)
    assert [str(c) for c in log["col"].values] == ["A", "B", "C", "<other>"]
    probs = log["probs"].values[:, :3]
    alpha = np.asarray(WORLDS["dirichlet"].alphas[0])
    counts = log["context_counts"].values[:, :3]
    exact = (alpha + counts) / (alpha.sum() + counts.sum(axis=1, keepdims=True))
    assert kl_bits(exact, probs / probs.sum(axis=1, keepdims=True)).mean() < 1e-3


def test_mixture_world_task_draws_from_its_components():
    from bayesmatrix.data.tasks import draw_episode, get_task, task_from_json

    task = get_task("windtunnel-mixture")
    assert task == windtunnel_task("mixture") and task.alpha is None
    assert task_from_json(task.to_json()) == task
    world = WORLDS["mixture"]
    # The share of A among all draws: under the mixture, E[pi_A] = sum_j w_j alpha_jA / S_j.
    expected = sum(w * a[0] / sum(a) for w, a in zip(world.weights, world.alphas))
    draws = np.concatenate([draw_episode(task, 20, seed=3, episode=e) for e in range(2000)])
    share = np.mean(draws == 0)
    # the episode mean of pi_A has variance Var(pi_A) / episodes plus within-episode noise
    pi_sd = np.sqrt(expected * (1 - expected) / 2000)
    assert abs(share - expected) < 4 * pi_sd
    with pytest.raises(InputError, match="world fixes"):
        get_task("windtunnel-dirichlet", alpha=[1, 1, 1])
    with pytest.raises(InputError, match="windtunnel-mixture"):
        get_task("windtunnel-nothing")


def test_shipped_nope_model_loads_back_as_the_model_it_was_built_as():
    from bayesmatrix.data.windtunnel.modeling import count_parameters

    trained = load("windtunnel:dirichlet-nope")
    config = trained.model.config
    assert trained.record["options"]["arch"] == "nope" and not any(config.no_rope_layers)
    fresh = build_model(trained.world, "nope", None, max_positions=config.max_position_embeddings, seed=1).eval()
    assert type(fresh) is type(trained.model) and count_parameters(fresh) == count_parameters(trained.model) == 99520
    fresh.load_state_dict(trained.model.state_dict())  # strict: the same parameters, name for name
    tokens = trained.world.sample(np.random.default_rng(7), 8, 32).tokens
    inputs = input_ids(tokens, trained.world)
    shuffled = torch.as_tensor(np.random.default_rng(8).permutation(32)[None].repeat(8, 0))
    with torch.no_grad():
        logits = trained.model(input_ids=inputs).logits
        np.testing.assert_array_equal(fresh(input_ids=inputs).logits, logits)
        # no position index anywhere: position ids in any order give the same logits
        np.testing.assert_array_equal(trained.model(input_ids=inputs, position_ids=shuffled).logits, logits)


def test_shipped_window_model_cannot_see_past_its_receptive_field():
    loaded = load(shipped_model("dirichlet-window4"))
    assert loaded.model.config.sliding_window == 4
    tokens = loaded.world.sample(np.random.default_rng(4), 16, 32).tokens
    changed = tokens.copy()
    changed[:, :10] = (tokens[:, :10] + 1) % 3
    before, _ = model_predictive(loaded.model, loaded.world, tokens)
    after, _ = model_predictive(loaded.model, loaded.world, changed)
    np.testing.assert_array_equal(before[:, 10 + 7 :], after[:, 10 + 7 :])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dirichlet-window4", "dirichlet-window1"])
def test_windowed_models_sit_at_their_floor(name):
    # E KL(exact || model) = floor + E KL(window predictive || model): the model
    # cannot beat the floor, and a well-trained one is close to it.
    loaded = load(shipped_model(name))
    tokens = loaded.world.sample(held_out_rng(5), 300, 32).tokens
    exact = loaded.world.predictive(tokens)
    floor = kl_bits(exact, loaded.world.windowed_predictive(tokens, receptive_field(loaded.model.config)))
    model = kl_bits(exact, model_predictive(loaded.model, loaded.world, tokens)[0])
    gap = (model - floor).mean(axis=1)  # per sequence
    assert gap.mean() > -4 * gap.std(ddof=1) / np.sqrt(gap.size)
    assert gap.mean() < 2e-3 < floor.mean()


@pytest.mark.slow
def test_shipped_dirichlet_model_is_within_its_strict_bound():
    # The goal (README, "Wind tunnel"): strict mean KL over 1..K at most 1e-4 bits. On fresh sequences
    # (a seed of their own) the estimate must clear the bound by three standard errors.
    evaluation = evaluate(shipped_model("dirichlet"), sequences=2000, seed=31)
    assert evaluation.mean_strict_kl_bits_trained + 3 * evaluation.mean_strict_kl_bits_trained_se <= 1e-4
    assert evaluation.mean_kl_bits_trained < evaluation.mean_strict_kl_bits_trained
    # Mass outside the categories costs about m / ln 2 bits: under a tenth of the bound.
    assert evaluation.outside_mass.mean() / np.log(2) < 1e-5
