"""Logging an LLM: the one-pass ICL logger, prompts mode, column files, checkpoints and the CLI.

Fast tests use a tiny GPT-2 (2 layers, 64 dims, random weights) with a word-level
vocabulary, saved to a folder so that loading a local model is exercised too.
Tests marked slow load SmolLM2 or run the command in subprocesses.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesmatrix.cli import main
from bayesmatrix.data.columns import read_columns
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llm import (
    LoadedModel,
    RowOptions,
    load_model,
    log_prompts,
    log_task,
    next_token_logprobs,
    read_prompts,
    run_log,
)
from bayesmatrix.data.llmlog import OTHER, read_log, task_of, write_log
from bayesmatrix.data.tasks import draw_episode, get_task, task_from_json

WORDS = ["[UNK]", "[PAD]", "Coin", "flips", ":", "H", "T", ",", "Die", "rolls", *"123456", "Labels", "cat", "dog"]
WORDS += ["bird", "The", "capital", "of", "France", "is", "Paris", "London", "a", "city", "in", "Europe", "and"]
PROMPTS = ["The capital of France is", "Paris is a city", "The", "London and Paris is a city in Europe"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(WORDS)}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(WORDS), n_positions=256, n_embd=64, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=1
    )
    model = GPT2LMHeadModel(config)
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_folder) -> LoadedModel:
    return load_model(str(tiny_folder))


def test_local_folder_loads_with_weight_hash(tiny, tiny_folder):
    import hashlib

    expected = hashlib.sha256((tiny_folder / "model.safetensors").read_bytes()).hexdigest()
    assert tiny.file_hash == expected
    assert tiny.name == str(tiny_folder)


# --------------------------------------------------------------------------- ICL tasks


def test_one_pass_equals_a_forward_pass_per_prefix(tiny):
    task = get_task("coin")
    length = 6
    ds = log_task(tiny, task, episodes=2, length=length, seed=7)
    ids = ds["col_token_id"].values[:-1]
    for row in range(ds.sizes["row"]):
        episode, position = int(ds["episode"][row]), int(ds["position"][row])
        observations = draw_episode(task, length, 7, episode)
        prefix, _ = task.render(observations[:position])
        expected = np.exp(next_token_logprobs(tiny, prefix)[ids])
        np.testing.assert_allclose(ds["probs"].values[row, :-1], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(ds["probs"].values[row, -1], 1 - expected.sum(), atol=1e-6)


def test_task_batched_equals_unbatched(tiny):
    task = get_task("labels", labels=["cat", "dog", "bird"])
    one = log_task(tiny, task, episodes=5, length=4, seed=1, batch_size=1)
    batched = log_task(tiny, task, episodes=5, length=4, seed=1, batch_size=3)
    np.testing.assert_allclose(batched["probs"].values, one["probs"].values, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(batched["context_counts"].values, one["context_counts"].values)


def test_task_log_structure_and_file_round_trip(tiny, tmp_path):
    task = get_task("die", alpha=[1, 1, 1, 1, 1, 2])
    length, episodes = 5, 3
    ds = log_task(tiny, task, episodes=episodes, length=length, seed=2, batch_size=2)
    assert ds.sizes["row"] == episodes * (length + 1)
    assert list(ds["col"].values) == [*task.categories, OTHER]
    np.testing.assert_allclose(ds["probs"].values.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(ds["episode"].values, np.repeat(np.arange(episodes), length + 1))
    np.testing.assert_array_equal(ds["position"].values, np.tile(np.arange(length + 1), episodes))
    context = ds["context_counts"].values.reshape(episodes, length + 1, -1)
    assert (context[:, :, -1] == 0).all() and (context[:, 0] == 0).all()
    for episode in range(episodes):
        # consecutive differences are one-hot: the observation sequence read back
        observed = np.argmax(np.diff(context[episode], axis=0), axis=1)
        np.testing.assert_array_equal(observed, draw_episode(task, length, 2, episode))

    path = write_log(ds, tmp_path / "die.nc")
    back = read_log(path)
    np.testing.assert_array_equal(back["probs"].values, ds["probs"].values)
    meta = task_of(back)
    assert (meta["length"], meta["episodes"]) == (length, episodes)
    assert task_from_json(meta) == task
    assert back.attrs["seed"] == 2 and back.attrs["model_sha256"] == tiny.file_hash


def test_same_seed_same_log_other_seed_other_episodes(tiny):
    task = get_task("coin")
    first = log_task(tiny, task, 3, 4, seed=5, options=RowOptions(samples=20))
    again = log_task(tiny, task, 3, 4, seed=5, options=RowOptions(samples=20))
    other = log_task(tiny, task, 3, 4, seed=6, options=RowOptions(samples=20))
    for name in ("probs", "counts", "context_counts"):
        np.testing.assert_array_equal(first[name].values, again[name].values)
    assert not np.array_equal(first["context_counts"].values, other["context_counts"].values)


def test_a_label_that_merges_with_its_context_is_a_clear_error(tiny):
    # "cat:dog" is three tokens of its own, read as a product (tests/data/test_multitoken.py); "dog," is not:
    # its comma merges with the observation's own comma into one token
    assert log_task(tiny, get_task("labels", labels=["bird", "cat:dog"]), 1, 2).attrs["category_rule"] == "product"
    with pytest.raises(InputError, match=r"observation 1 \('dog,'\).*not as tokens of its own"):
        log_task(tiny, get_task("labels", labels=["bird", "dog,"]), 1, 2)
    with pytest.raises(InputError, match="'zebra' is not in the vocabulary"):
        log_task(tiny, get_task("labels", labels=["bird", "zebra"]), 1, 2)


# --------------------------------------------------------------------------- prompts


def test_prompts_batched_equals_unbatched_across_padding(tiny):
    # prompts of 1 to 8 tokens: right padding must leave each row's distribution alone
    one = log_prompts(tiny, PROMPTS, columns=["Paris", "London", "is"], batch_size=1)
    batched = log_prompts(tiny, PROMPTS, columns=["Paris", "London", "is"], batch_size=4)
    np.testing.assert_allclose(batched["probs"].values, one["probs"].values, rtol=1e-5, atol=1e-7)
    for row, prompt in enumerate(PROMPTS):
        expected = np.exp(next_token_logprobs(tiny, prompt)[one["col_token_id"].values[:-1]])
        np.testing.assert_allclose(one["probs"].values[row, :-1], expected, rtol=1e-5, atol=1e-7)
    assert list(one["prompt"].values) == PROMPTS


def test_topk_columns_are_the_union_of_row_top_tokens(tiny):
    k = 3
    ds = log_prompts(tiny, PROMPTS, topk=k, batch_size=3)
    expected = set()
    for prompt in PROMPTS:
        expected |= set(np.argsort(next_token_logprobs(tiny, prompt))[::-1][:k].tolist())
    assert set(ds["col_token_id"].values[:-1].tolist()) == expected
    assert list(ds["col"].values[:-1]) == [tiny.tokenizer.decode([i]) for i in ds["col_token_id"].values[:-1]]
    np.testing.assert_allclose(ds["probs"].values.sum(axis=1), 1.0, atol=1e-9)


def test_samples_embeddings_and_raw_top_tokens(tiny):
    samples = 4000
    options = RowOptions(samples=samples, embeddings=True, topk_store=5)
    ds = log_prompts(tiny, PROMPTS, columns=["Paris", "is"], options=options, seed=3)
    counts = ds["counts"].values
    assert (counts.sum(axis=1) == samples).all()
    # each column's count is Binomial(samples, p) at temperature 1
    p = ds["probs"].values
    z = (counts - samples * p) / np.sqrt(samples * p * (1 - p))
    assert np.abs(z).max() < 4.5
    assert ds["embedding"].shape == (len(PROMPTS), 64)
    assert ds["topk_ids"].shape == (len(PROMPTS), 5)
    top = next_token_logprobs(tiny, PROMPTS[0])
    np.testing.assert_allclose(ds["topk_logprobs"].values[0], np.sort(top)[::-1][:5], rtol=1e-5)


def test_sampling_temperature_sharpens(tiny):
    cold = log_prompts(tiny, PROMPTS[:1], topk=1, options=RowOptions(samples=2000, temperature=0.05))
    # at temperature 0.05 the top token takes nearly every sample
    assert cold["counts"].values[0, 0] > 0.9 * 2000


def test_embedding_is_the_lm_head_input(tiny):
    ds = log_prompts(tiny, PROMPTS[:2], columns=["Paris"], options=RowOptions(embeddings=True, topk_store=3))
    head = tiny.model.get_output_embeddings()
    with torch.inference_mode():
        logits = head(torch.as_tensor(ds["embedding"].values, dtype=torch.float32))
    logprobs = torch.log_softmax(logits.double(), dim=-1).numpy()
    np.testing.assert_allclose(np.sort(logprobs, axis=1)[:, ::-1][:, :3], ds["topk_logprobs"].values, rtol=1e-5)


# --------------------------------------------------------------------------- input files


def test_column_file_lines_are_verbatim_or_json(tmp_path):
    path = tmp_path / "columns.txt"
    path.write_text(' Paris\n"\\u0020London"\n\nis\r\n')
    assert read_columns(path) == [(1, " Paris"), (2, " London"), (4, "is")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no column labels"),
        ("Paris\nParis London\n", "line 2, category 'Paris London' encodes to 2 tokens"),
        ("Paris\nis\nParis\n", "line 3, category 'Paris' appears twice"),
        ("Paris\nzebra\n", "line 2, category 'zebra' is not in the vocabulary"),
        ("<other>\n", "line 1, category '<other>' is reserved"),
        ('"Paris\n', "line 1 is not a JSON string"),
    ],
)
def test_column_file_errors_name_file_category_and_line(tiny, tmp_path, content, message):
    from bayesmatrix.data.llm import column_token_ids

    path = tmp_path / "columns.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        column_token_ids(tiny.tokenizer, read_columns(path), file=str(path))
    assert str(error.value).startswith(f"{path}: field 'columns'")


def test_prompt_files_plain_and_jsonl(tmp_path):
    plain = tmp_path / "prompts.txt"
    plain.write_text("The capital of France is\n\n  Paris is\n")
    assert read_prompts(plain) == ["The capital of France is", "  Paris is"]
    jsonl = tmp_path / "prompts.data"
    jsonl.write_text('{"prompt": "a b"}\n{"prompt": "c", "id": 2}\n')
    assert read_prompts(jsonl) == ["a b", "c"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(InputError, match="line 2 has no string field 'prompt'"):
        read_prompts(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no prompts"):
        read_prompts(empty)


@pytest.mark.parametrize("spec", ["./no/such/folder", "/no/such/folder", "a/b/c"])
def test_missing_model_path_is_an_input_error(spec):
    with pytest.raises(InputError, match="no such model folder"):
        load_model(spec)


def test_model_folder_without_weights_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="neither config.json nor a .gguf"):
        load_model(str(tmp_path))


# --------------------------------------------------------------------------- the command


def _cli(argv, capsys):
    status = main(["log", *argv])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prompts", "p.txt", "--columns", "c.txt", "--topk", "3"], "not allowed with argument"),
        (["--prompts", "p.txt", "--task", "coin"], "not allowed with argument"),
        (["--prompts", "p.txt"], "field '--columns': prompts mode needs exactly one of columns"),
        (["--task", "dice"], "unknown task 'dice'"),
        ([], "field '--task': give either task"),
        (["--prompts", "missing.txt", "--topk", "3"], "missing.txt: field 'prompts': no such file"),
        (["--task", "coin", "--topk", "3"], "field '--columns': columns and topk belong to prompts mode"),
        (["--task", "coin", "--episodes", "0"], "field '--episodes': must be at least 1"),
        (["--task", "coin", "--alpha", "1,x"], "field '--alpha': '1,x' is not a comma-separated list"),
        (["--task", "labels", "--labels", "cat,cat"], "field '--labels': label 2: 'cat' repeats label 1"),
        (["--task", "coin", "--alpha", "1,2,3"], "has 3 values"),
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("p.txt").write_text("The capital of France is\n")
    Path("c.txt").write_text("Paris\n")
    try:
        status, err = _cli([*argv, "--out", "out.nc"], capsys)
    except SystemExit as exit_:  # argparse errors
        status, err = exit_.code, capsys.readouterr().err
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not Path("out.nc").exists() and not Path("out.nc.partial").exists()


def test_column_error_through_the_command(tiny_folder, capsys, tmp_path):
    prompts, columns, out = tmp_path / "p.txt", tmp_path / "c.txt", tmp_path / "out.nc"
    prompts.write_text("The capital of France is\n")
    columns.write_text("Paris\nParis London\n")
    argv = ["--model", str(tiny_folder), "--prompts", str(prompts), "--columns", str(columns), "--out", str(out)]
    status, err = _cli(argv, capsys)
    assert status == 2 and f"{columns}: field 'columns': line 2, category 'Paris London'" in err
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_command_writes_a_valid_log_and_cleans_up(tiny_folder, tmp_path, capsys):
    out = tmp_path / "coin.nc"
    argv = ["--model", str(tiny_folder), "--task", "coin", "--episodes", "3", "--length", "4", "--out", str(out)]
    status, _ = _cli([*argv, "--samples", "5", "--embeddings", "--topk-store", "2"], capsys)
    assert status == 0
    ds = read_log(out)
    assert ds.sizes["row"] == 15 and (ds["counts"].values.sum(axis=1) == 5).all()
    assert ds.attrs["model"] == str(tiny_folder) and json.loads(ds.attrs["task"])["name"] == "coin"
    assert not Path(f"{out}.partial").exists()


def test_other_arguments_with_a_partial_run_need_restart(tiny_folder, tmp_path, capsys):
    from bayesmatrix.data.llm import Checkpoint

    out = tmp_path / "coin.nc"
    partial = Path(f"{out}.partial")
    common = dict(model=str(tiny_folder), task="coin", episodes=4, length=3, progress=False)
    Checkpoint(partial, {"seed": 0}).open()  # as an unfinished run with other arguments leaves it
    with pytest.raises(InputError, match=r"coin.nc.partial: holds an unfinished run with different arguments") as error:
        run_log(out, seed=1, **common)
    assert "delete it or rerun with restart=True" in str(error.value)
    argv = ["--model", str(tiny_folder), "--task", "coin", "--episodes", "4", "--length", "3", "--seed", "1"]
    status, err = _cli([*argv, "--out", str(out)], capsys)
    assert status == 2 and "coin.nc.partial: holds an unfinished run" in err and "delete it or pass --restart" in err
    assert not out.exists()
    run_log(out, seed=1, restart=True, **common)
    assert read_log(out).attrs["seed"] == 1 and not partial.exists()


def test_chunks_without_their_manifest_are_never_trusted(tiny_folder, tmp_path, capsys):
    """A seed-0 chunk whose manifest is gone (deleted by hand, or left by a straggler) must not end up in a
    seed-1 log: the folder is refused in one line until --restart."""
    from bayesmatrix.data.llm import Checkpoint

    out = tmp_path / "coin.nc"
    partial = Path(f"{out}.partial")
    common = dict(model=str(tiny_folder), task="coin", episodes=4, length=3, progress=False)
    checkpoint = Checkpoint(partial, {"seed": 0})
    checkpoint.open()
    checkpoint.save("episodes", 0, {"probs": np.zeros((2, 3))})
    (partial / "manifest.json").unlink()
    with pytest.raises(InputError, match="holds finished chunks but no manifest.json"):
        run_log(out, seed=1, **common)
    argv = ["--model", str(tiny_folder), "--task", "coin", "--episodes", "4", "--length", "3", "--seed", "1"]
    status, err = _cli([*argv, "--out", str(out)], capsys)
    assert status == 2 and err.count("\n") == 1 and "no manifest.json" in err and "--restart" in err
    assert not out.exists()
    run_log(out, seed=1, restart=True, **common)
    assert read_log(out).attrs["seed"] == 1 and not partial.exists()


def test_a_straggler_does_not_recreate_a_removed_folder(tmp_path):
    """The second of two runs on one output: once the first finished and removed the folder, saving a chunk
    is an error, not a new folder holding one chunk and no manifest."""
    from bayesmatrix.data.llm import Checkpoint

    folder = tmp_path / "out.nc.partial"
    straggler = Checkpoint(folder, {"seed": 0})
    straggler.open()
    Checkpoint(folder, {"seed": 0}).remove()  # the other run finished
    with pytest.raises(InputError, match="was removed while this run was writing to it"):
        straggler.save("episodes", 1, {"probs": np.zeros((2, 3))})
    assert not folder.exists()


def test_finished_chunks_are_read_back_and_missing_ones_recomputed(tiny, tmp_path):
    from bayesmatrix.data.llm import Checkpoint

    folder = tmp_path / "out.nc.partial"

    def run():
        checkpoint = Checkpoint(folder, {"prompts": PROMPTS}, chunk_units=2)
        checkpoint.open()
        return log_prompts(tiny, PROMPTS, topk=2, batch_size=1, checkpoint=checkpoint)

    first = run()
    names = sorted(path.name for path in folder.glob("*.npz"))
    assert names == ["prompts-000000.npz", "prompts-000001.npz", "topk-columns-000000.npz", "topk-columns-000001.npz"]
    (folder / "prompts-000001.npz").unlink()
    stored = dict(np.load(folder / "prompts-000000.npz"))
    stored["probs"] = np.full_like(stored["probs"], 1 / stored["probs"].shape[1])
    np.savez(folder / "prompts-000000.npz", **stored)
    again = run()
    # rows 0-1 come from the (edited) finished chunk, rows 2-3 are computed afresh
    np.testing.assert_array_equal(again["probs"].values[:2], stored["probs"])
    np.testing.assert_array_equal(again["probs"].values[2:], first["probs"].values[2:])


@pytest.mark.slow
def test_resume_after_sigkill_equals_an_uninterrupted_run(tiny_folder, tmp_path):
    arguments = dict(task="coin", episodes=150, length=24, batch_size=2, checkpoint_every=2, seed=4, samples=3)
    # the reference runs here, single-threaded like the subprocesses, so that floats match bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = run_log(tmp_path / "reference.nc", model=str(tiny_folder), progress=False, **arguments)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "resumed.nc"
    partial = Path(f"{out}.partial")
    options = [f"--{name.replace('_', '-')}={value}" for name, value in arguments.items()]
    command = [sys.executable, "-m", "bayesmatrix.cli", "log", "--model", str(tiny_folder), *options, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(partial.glob("episodes-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    chunks = len(list(partial.glob("episodes-*.npz")))
    assert not out.exists() and 1 <= chunks < 75, "the run was not interrupted half-way"

    subprocess.run(command, check=True, env=env, capture_output=True)
    resumed, uninterrupted = read_log(out), read_log(reference)
    assert not partial.exists()
    for name in ("probs", "counts", "context_counts", "episode", "position"):
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values)
    assert {k: v for k, v in resumed.attrs.items() if k != "created"} == {
        k: v for k, v in uninterrupted.attrs.items() if k != "created"
    }


def test_unknown_hub_id_is_an_input_error(monkeypatch):
    import huggingface_hub.constants

    # what HF_HUB_OFFLINE=1 does, without the network retries of an unreachable hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="model 'nobody/no-such-model' not found locally and could not be downloaded"):
        load_model("nobody/no-such-model")


# --------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    torch.set_num_threads(1)
    return load_model("smollm2")


@pytest.mark.slow
def test_smollm2_puts_most_mass_on_paris(smollm2, tmp_path):
    columns = tmp_path / "columns.txt"
    columns.write_text(' Paris\n" London"\n')
    categories = [c for _, c in read_columns(columns)]
    ds = log_prompts(smollm2, ["The capital of France is"], columns=categories)
    assert ds["probs"].sel(col=" Paris").item() > 0.5


@pytest.mark.slow
def test_smollm2_coin_episodes_validate(smollm2, tmp_path):
    ds = log_task(smollm2, get_task("coin"), episodes=2, length=8, seed=0, batch_size=2)
    assert list(ds["col"].values) == [" H", " T", OTHER]
    back = read_log(write_log(ds, tmp_path / "coin.nc"))
    assert back.sizes["row"] == 18 and back.attrs["model"] == "smollm2"


def test_benchmark_script_runs_with_tiny_settings(tiny_folder, capsys):
    import argparse
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_logging.py"
    spec = importlib.util.spec_from_file_location("benchmark_logging", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    threads = torch.get_num_threads()
    settings = dict(model=str(tiny_folder), length=3, prefix_episodes=1, episodes=2, batch_size=2, repeats=1, seed=0)
    try:
        benchmark.main(argparse.Namespace(threads=1, **settings))
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "(a) one pass vs per prefix" in printed and "(b) logger vs bare forward" in printed
    agreement = float(printed.split("category probabilities: ")[1].split()[0])
    assert agreement < 1e-5
