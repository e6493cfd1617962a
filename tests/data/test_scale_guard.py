"""Scale guards: vocabulary-sized logits stay per batch (top-k plus ``<other>``), and the scale benchmark runs.

An LLM's vocabulary is large (49,152 columns for SmolLM2); a log of many rows
must never hold a rows x vocabulary array. Logits are read batch by batch and
reduced to the chosen columns plus ``<other>`` at once (``_forward`` and ``_read_rows``,
as the drivers of ``bayesmatrix.data.llm.drivers`` call them); these tests watch every call on a tiny GPT-2 whose
vocabulary is much wider than its top-k columns.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bayesmatrix.data.llm.drivers as drivers
from bayesmatrix.data.llm import load_model, log_prompts

FILLER = [f"w{i}" for i in range(3000)]
WORDS = ["[UNK]", "[PAD]", "The", "capital", "of", "France", "is", "Paris", "a", "city", *FILLER]
PROMPTS = [f"The capital of w{i} is a city" for i in range(10)] + ["The", "Paris is"]
BATCH = 4


@pytest.fixture(scope="module")
def wide_vocabulary_model(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(WORDS), n_positions=64, n_embd=32, n_layer=1, n_head=2, bos_token_id=1,
                        eos_token_id=1)  # fmt: skip
    folder = tmp_path_factory.mktemp("wide-gpt2")
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder))


def test_topk_logging_never_holds_rows_by_vocabulary(wide_vocabulary_model, monkeypatch):
    vocabulary = len(WORDS)
    seen_logits, seen_rows = [], []
    forward, read_rows = drivers._forward, drivers._read_rows

    def watched_forward(*args, **kwargs):  # calls through; records the shape of every logits block
        logits, embedding = forward(*args, **kwargs)
        seen_logits.append(tuple(logits.shape))
        return logits, embedding

    def watched_read_rows(logits, *args, **kwargs):
        seen_rows.append(tuple(logits.shape))
        return read_rows(logits, *args, **kwargs)

    monkeypatch.setattr(drivers, "_forward", watched_forward)
    monkeypatch.setattr(drivers, "_read_rows", watched_read_rows)
    ds = log_prompts(wide_vocabulary_model, PROMPTS, topk=3, batch_size=BATCH)

    # two passes (top-k columns, then rows), each batch by batch
    assert len(seen_logits) == 2 * int(np.ceil(len(PROMPTS) / BATCH))
    assert all(shape[0] <= BATCH and shape[-1] == vocabulary for shape in seen_logits)
    assert all(shape[0] <= BATCH for shape in seen_rows)
    assert max(np.prod(shape) for shape in seen_logits) <= BATCH * vocabulary < len(PROMPTS) * vocabulary
    # what is kept: rows x (top-k union + <other>), far narrower than the vocabulary
    assert ds["probs"].shape == (len(PROMPTS), ds.sizes["col"]) and ds.sizes["col"] <= 3 * len(PROMPTS) + 1
    np.testing.assert_allclose(ds["probs"].values.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.long  # a benchmark script whole: make test-long
def test_scale_benchmark_runs_with_tiny_settings():
    """In its own process: peak resident memory is a property of the process, and the test
    runner's own peak (every library the suite loaded) would be measured instead."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--rows", "400", "--cols", "12", "--embed-dim", "8", "--rank", "2",
         "--batch-size", "40", "--max-steps", "500", "--num-samples", "5", "--predict-rows", "50",
         "--no-progress-bar"],
        capture_output=True, text=True, timeout=600, check=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    table = {}
    for line in completed.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3:
            table[cells[0]] = cells[1]
    assert table["steps in all (3 step sizes) / converged"].split("/")[0].strip() == "500"
    assert float(table["SVI steps per second (without compilation)"]) > 0
    assert 0 < float(table["peak resident memory, GB"]) < 4
