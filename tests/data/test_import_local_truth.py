"""reported_mass against a model's full distributions: logged locally, cut to top-k as vLLM does, imported back."""

from __future__ import annotations

import json

import numpy as np

from bayesmatrix.data.importers import import_jsonl
from bayesmatrix.data.llm import next_token_logprobs
from bayesmatrix.data.llmlog import OTHER
from tests.data.test_llm_logging import WORDS, tiny, tiny_folder  # noqa: F401 (the tiny GPT-2 fixtures)

K = 4


def test_reported_mass_is_the_top_k_mass_of_the_local_distributions(tiny, tmp_path):  # noqa: F811
    prompt = "Coin flips : H , T , H , H , T"
    ids = tiny.tokenizer(prompt)["input_ids"]
    # the full next-token distribution before each prompt token after the first, from the local forward pass
    logprobs = np.array([next_token_logprobs(tiny, ids[:t]) for t in range(1, len(ids))])  # (positions, vocab)
    entries: list = [None]
    expected_mass, expected_probs = [], []
    for t, row in enumerate(logprobs, start=1):
        top = list(np.argsort(-row, kind="stable")[:K])
        reported = [ids[t], *[i for i in top if i != ids[t]]]  # vLLM: the prompt token, then the top-k
        entries.append({str(i): {"logprob": float(row[i]), "rank": int(np.sum(row > row[i])) + 1,
                                 "decoded_token": WORDS[i]} for i in reported})  # fmt: skip
        expected_mass.append(np.exp(row[reported]).sum())
        expected_probs.append({WORDS[i]: float(np.exp(row[i])) for i in reported})
    response = {"id": "cmpl-local", "object": "text_completion", "created": 1, "model": "tiny",
                "choices": [{"index": 0, "text": "", "logprobs": {"tokens": [], "token_logprobs": [],
                                                                   "top_logprobs": [], "text_offset": []},
                             "prompt_logprobs": entries}]}  # fmt: skip
    path = tmp_path / "vllm.jsonl"
    path.write_text(json.dumps({"request": {"prompt": prompt}, "response": response}) + "\n", encoding="utf-8")

    ds = import_jsonl(path, prompt_positions=True)
    assert ds.sizes["row"] == len(ids) - 1
    np.testing.assert_allclose(ds["reported_mass"].values, expected_mass, rtol=1e-12)
    assert (ds["reported_mass"].values < 1).all()  # a top-4 of 35 words leaves mass out
    labels = [str(label) for label in ds["col"].values]
    for row, probs in enumerate(expected_probs):
        for word, p in probs.items():
            np.testing.assert_allclose(ds["probs"].values[row, labels.index(word)], p, rtol=1e-12)
        np.testing.assert_allclose(ds["probs"].sel(col=OTHER).values[row], 1 - expected_mass[row], atol=1e-12)
