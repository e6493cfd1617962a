"""Categories of several tokens: every logged probability against brute-force products of full forward passes.

Tiny GPT-2 and Llama models (random weights, a word-level vocabulary) are built
here; tests marked slow repeat the check on SmolLM2.
"""

import json

import numpy as np
import pytest
import torch

from bayesmatrix.cli import main
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llm import (
    LoadedModel,
    RowOptions,
    load_model,
    log_task,
    next_token_logprobs,
    task_category_tokens,
)
from bayesmatrix.data.llmlog import OTHER, read_log, write_log
from bayesmatrix.data.tasks import Task, draw_episode, get_task

WORDS = ["[UNK]", "[PAD]", "Pets", ":", ",", "-", "cat", "dog", "bird", "big", "small", "fish", "seen", "today"]


def _word_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]", pad_token="[PAD]")


def _tiny_model(architecture: str, folder) -> LoadedModel:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    if architecture == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_positions=128, n_embd=32, n_layer=2, n_head=2))
    else:
        config = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    _word_level_tokenizer().save_pretrained(folder)
    return load_model(str(folder))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> LoadedModel:
    """A tiny GPT-2 (absolute positions)."""
    return _tiny_model("gpt2", tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny_any(request, tiny, tmp_path_factory) -> LoadedModel:
    """The tiny GPT-2, then a tiny Llama (rotary positions, grouped-query attention)."""
    if request.param == "gpt2":
        return tiny
    return _tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"))


def pets(*categories: str, observation: str = " {},") -> Task:
    return Task("pets", tuple(categories), "Pets:", observation)


def brute_force(loaded: LoadedModel, ds, tokens) -> np.ndarray:
    """Each row's category probabilities from a full forward pass per token of each category, after its prompt."""
    passes: dict[tuple[int, ...], np.ndarray] = {}  # one pass per distinct input (categories share leading tokens)

    def logprobs(ids: list[int]) -> np.ndarray:
        if tuple(ids) not in passes:
            passes[tuple(ids)] = next_token_logprobs(loaded, ids)
        return passes[tuple(ids)]

    probs = np.zeros((ds.sizes["row"], len(tokens)))
    for row, prompt in enumerate(ds["prompt"].values):
        prefix = loaded.tokenizer(str(prompt))["input_ids"]
        for c, category in enumerate(tokens):
            probs[row, c] = np.exp(sum(logprobs(prefix + list(category[:j]))[t] for j, t in enumerate(category)))
    return probs


@pytest.mark.parametrize(
    "task, rule",
    [
        (pets("big cat", "big dog", "small fish", "bird"), "product"),  # shared leading tokens
        (pets("cat", "big cat", "big", "dog"), "product-with-following"),  # prefixes of each other
        (pets("big cat", "dog", observation="\n- {} seen"), "product"),  # text before and after the category
    ],
)
def test_every_probability_equals_a_product_of_full_forward_passes(tiny_any, task, rule):
    ds = log_task(tiny_any, task, episodes=3, length=3, seed=4, batch_size=2)
    tokens = [tuple(t) for t in json.loads(ds.attrs["category_tokens"])]
    assert ds.attrs["category_rule"] == rule
    assert tokens == list(task_category_tokens(tiny_any.tokenizer, task).tokens)
    expected = brute_force(tiny_any, ds, tokens)
    np.testing.assert_allclose(ds["probs"].values[:, :-1], expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(ds["probs"].values[:, -1], 1 - expected.sum(axis=1), atol=1e-6)
    assert list(ds["col"].values) == [*task.categories, OTHER]


def test_the_prefix_rule_extends_every_category_by_the_following_token(tiny):
    categories = task_category_tokens(tiny.tokenizer, pets("cat", "big cat", "big"))
    comma, cat, big = (WORDS.index(w) for w in (",", "cat", "big"))
    assert categories.own == ((cat,), (big, cat), (big,))
    assert categories.tokens == ((cat, comma), (big, cat, comma), (big, comma))


def test_prompts_are_the_text_each_row_was_read_after(tiny):
    task = pets("big cat", "dog")
    length = 4
    ds = log_task(tiny, task, episodes=2, length=length, seed=0)
    for row in range(ds.sizes["row"]):
        episode, position = int(ds["episode"][row]), int(ds["position"][row])
        rendered, _ = task.render(draw_episode(task, length, 0, episode)[:position])
        assert ds["prompt"].values[row] == rendered


def test_batched_equals_unbatched_and_the_file_round_trip(tiny_any, tmp_path):
    task = pets("big cat", "big dog", "fish")
    one = log_task(tiny_any, task, episodes=5, length=3, seed=2, batch_size=1)
    batched = log_task(tiny_any, task, episodes=5, length=3, seed=2, batch_size=4)
    np.testing.assert_allclose(batched["probs"].values, one["probs"].values, rtol=1e-5, atol=1e-9)
    back = read_log(write_log(batched, tmp_path / "pets.nc"))
    assert list(back["prompt"].values) == list(batched["prompt"].values)
    assert back.attrs["category_rule"] == "product"
    np.testing.assert_array_equal(back["col_token_id"].values, [-1, -1, WORDS.index("fish"), -1])


def test_embeddings_and_top_tokens_are_read_at_the_read_position(tiny):
    task = pets("big cat", "dog")
    ds = log_task(tiny, task, episodes=2, length=3, seed=1, options=RowOptions(embeddings=True, topk_store=3))
    for row in (0, 5):
        prompt_ids = tiny.tokenizer(str(ds["prompt"].values[row]))["input_ids"]
        top = np.sort(next_token_logprobs(tiny, prompt_ids))[::-1][:3]
        np.testing.assert_allclose(ds["topk_logprobs"].values[row], top, rtol=1e-5)
    assert ds["embedding"].shape == (8, 32)


@pytest.mark.parametrize(
    "task, options, message",
    [
        (pets("big", "big cat", observation=" {}"), {}, "'big' is a prefix of 'big cat'.*no text after"),
        (pets("big  cat", "big cat"), {}, "render as the same tokens"),
        (pets("big cat", "dog"), {"options": RowOptions(samples=3)}, "samples count single next tokens"),
        (pets("zebra cat", "dog"), {}, "not in the vocabulary"),
    ],
)
def test_tasks_that_cannot_be_read_are_clear_errors(tiny, task, options, message):
    with pytest.raises(InputError, match=message):
        log_task(tiny, task, 1, 2, **options)


def test_a_task_file_of_several_tokens_through_the_command(tiny, tmp_path, capsys):
    path = tmp_path / "pets.toml"
    path.write_text('name = "pets"\ncategories = ["big cat", "dog"]\nheader = "Pets:"\nobservation = " {},"\n')
    out = tmp_path / "pets.nc"
    argv = ["log", "--model", tiny.name, "--task", str(path), "--episodes", "2", "--length", "3", "--out", str(out)]
    assert main(argv) == 0
    ds = read_log(out)
    assert ds.sizes["row"] == 8 and json.loads(ds.attrs["task"])["categories"] == ["big cat", "dog"]
    assert main([*argv[:-1], str(tmp_path / "sampled.nc"), "--samples", "2"]) == 2
    assert "field '--samples': samples count single next tokens" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ncategories = ["big  cat", "big cat"]\nheader = "Pets:"\nobservation = " {},"\n')
    assert main([*argv[:4], str(bad), *argv[5:-1], str(tmp_path / "bad.nc")]) == 2
    assert f"{bad}: field 'categories': task 'bad': categories" in capsys.readouterr().err


# --------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    torch.set_num_threads(1)
    return load_model("smollm2")


@pytest.mark.slow
@pytest.mark.parametrize(
    "task",
    [
        get_task("weather"),
        get_task("coin-words"),
        Task("cities", ("New", "New York", "New Orleans", "Paris"), "Cities I visited:"),
    ],
    ids=["weather", "coin-words", "prefixes"],
)
def test_smollm2_probabilities_equal_full_forward_passes(smollm2, task):
    ds = log_task(smollm2, task, episodes=2, length=4, seed=0, batch_size=2)
    tokens = [tuple(t) for t in json.loads(ds.attrs["category_tokens"])]
    if task.name == "weather":
        assert ds.attrs["category_rule"] == "product" and all(len(t) >= 2 for t in tokens)
    if task.name == "cities":
        assert ds.attrs["category_rule"] == "product-with-following"
    expected = brute_force(smollm2, ds, tokens)
    # float32 through 30 layers: the passes differ in length, so their sums round differently (about 1e-5
    # relative, as much for one token as for the coin's single tokens); 1e-5 absolute is the bar
    np.testing.assert_allclose(ds["probs"].values[:, :-1], expected, rtol=0, atol=1e-5)


def test_benchmark_script_runs_with_tiny_settings(tiny, tmp_path, capsys):
    import argparse
    import importlib.util
    from pathlib import Path

    task = tmp_path / "pets.toml"
    task.write_text('name = "pets"\ncategories = ["big cat", "big dog", "fish"]\nheader = "Pets:"\n'
                    'observation = " {},"\n')
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "multitoken.py"
    spec = importlib.util.spec_from_file_location("benchmark_multitoken", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    threads = torch.get_num_threads()
    settings = dict(model=tiny.name, task=str(task), length=3, prefix_episodes=1, episodes=2, batch_size=2,
                    repeats=1, seed=0)
    try:
        benchmark.main(argparse.Namespace(threads=1, **settings))
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "(a) logger vs a pass per category per position" in printed and "(b) logger vs bare" in printed
    assert float(printed.split("category probabilities: ")[1].split()[0]) < 1e-5


# --------------------------------------------------------------------------- chat templates


def test_a_chat_task_needs_a_chat_template(tiny, tmp_path):
    path = tmp_path / "chat.toml"
    path.write_text('name = "chat"\ncategories = ["cat", "dog"]\nheader = "Pets:"\nobservation = " {},"\nchat = true\n')
    with pytest.raises(InputError, match="chat template, but this tokenizer has none") as error:
        log_task(tiny, Task.from_file(path), 1, 2)
    assert (error.value.file, error.value.field) == (str(path), "chat")


@pytest.mark.slow
def test_smollm2_chat_reads_the_observations_inside_the_assistant_turn(smollm2):
    from bayesmatrix.data.llm import episode_tokens

    task = get_task("coin-words-chat")
    tokenizer = smollm2.tokenizer
    turn = [{"role": "user", "content": task.lead}]
    lead_text = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    lead_ids = tokenizer(lead_text, add_special_tokens=False)["input_ids"]
    assert lead_text.endswith("<|im_start|>assistant\n") and task.lead in lead_text
    categories = task_category_tokens(tokenizer, task)
    observations = draw_episode(task, 6, 0, 0)
    episode = episode_tokens(smollm2, task, observations, categories)
    assert episode.token_ids[: len(lead_ids)] == lead_ids  # the template, special tokens and all
    assert episode.read_at[0] == len(lead_ids) - 1  # the first read is the assistant turn's opening
    for k, category in enumerate(observations):
        first = episode.read_at[k] + 1
        assert first >= len(lead_ids)  # inside the assistant turn
        assert (episode.token_ids[first],) == categories.tokens[category]
        assert tokenizer.decode([episode.token_ids[first]]) == " " + task.categories[category]

    ds = log_task(smollm2, task, episodes=1, length=6, seed=0)
    assert ds["prompt"].values[0] == lead_text
    assert all(str(prompt).startswith(lead_text) for prompt in ds["prompt"].values)
    expected = brute_force(smollm2, ds, list(categories.tokens))
    np.testing.assert_allclose(ds["probs"].values[:, :-1], expected, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- framings


def test_framed_episodes_record_their_level_and_are_read_after_their_own_instruction(tiny, tmp_path):
    task = Task("pets", ("big cat", "dog"), "Pets:", instruction="{size} ").with_framing({"size": ["big", "small"]})
    ds = log_task(tiny, task, episodes=4, length=2, seed=3, batch_size=3)
    np.testing.assert_array_equal(ds["framing"].values, np.repeat([0, 1, 0, 1], 3))
    assert json.loads(ds.attrs["framing_levels"]) == [{"size": "big"}, {"size": "small"}]
    for row in range(ds.sizes["row"]):
        size = ["big", "small"][int(ds["framing"][row])]
        assert str(ds["prompt"].values[row]).startswith(f"{size} Pets:")
    tokens = [tuple(t) for t in json.loads(ds.attrs["category_tokens"])]
    np.testing.assert_allclose(ds["probs"].values[:, :-1], brute_force(tiny, ds, tokens), rtol=1e-5, atol=1e-9)
    back = read_log(write_log(ds, tmp_path / "framed.nc"))
    np.testing.assert_array_equal(back["framing"].values, ds["framing"].values)


def test_framing_through_the_command(tiny, tmp_path, capsys):
    path = tmp_path / "pets.toml"
    path.write_text('name = "pets"\ncategories = ["cat", "dog"]\ninstruction = "{size} "\nheader = "Pets:"\n'
                    'observation = " {},"\n[values]\nsize = "big"\n')
    out = tmp_path / "framed.nc"
    argv = ["log", "--model", tiny.name, "--task", str(path), "--episodes", "3", "--length", "2"]
    assert main([*argv, "--framing", "size=big,small", "--out", str(out)]) == 0
    ds = read_log(out)
    assert list(ds["framing"].values[::3]) == [0, 1, 0]
    assert json.loads(ds.attrs["task"])["template"]["framing"] == {"size": ["big", "small"]}
    capsys.readouterr()
    assert main([*argv, "--framing", "colour=red", "--out", str(tmp_path / "bad.nc")]) == 2
    err = capsys.readouterr().err
    assert "field '--framing': 'colour' is not a placeholder" in err and err.count("\n") == 1


def test_a_resumed_run_reads_prompts_and_framings_back_from_its_chunks(tiny, tmp_path):
    from bayesmatrix.data.llm import Checkpoint

    task = Task("pets", ("big cat", "dog"), "Pets:", instruction="{size} ").with_framing({"size": ["big", "small"]})
    folder = tmp_path / "out.nc.partial"

    def run():
        checkpoint = Checkpoint(folder, {"task": task.to_json()}, chunk_units=2)
        checkpoint.open()
        return log_task(tiny, task, episodes=4, length=2, seed=0, batch_size=2, checkpoint=checkpoint)

    first = run()
    assert len(list(folder.glob("episodes-*.npz"))) == 2
    (folder / "episodes-000001.npz").unlink()
    again = run()  # chunk 0 read back, chunk 1 recomputed
    for name in ("probs", "prompt", "framing", "context_counts"):
        np.testing.assert_array_equal(again[name].values, first[name].values)
