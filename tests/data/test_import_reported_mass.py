"""reported_mass: known full distributions, cut to top-k, written in each server shape and imported back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.cli import main
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.importers import import_jsonl, prompt_position_logprobs
from bayesmatrix.data.llmlog import OTHER, make_log, read_log, validate_log

VOCAB = [" H", " T", ",", ".", " and", " or", "\n", " coin", " flip", " the", " a", " 1"]
K = 3


def true_distributions(positions: int, seed: int) -> np.ndarray:
    """Full next-token distributions over VOCAB, skewed as an LM's are (rows, vocab)."""
    return np.random.default_rng(seed).dirichlet(np.full(len(VOCAB), 0.4), size=positions)


def top_k(p: np.ndarray) -> list[int]:
    return list(np.argsort(-p, kind="stable")[:K])


def chat_position(p: np.ndarray, chosen: int) -> dict:
    """A chat / Responses position: the chosen token and the top-K, logprobs as a server writes them."""
    def token(i):
        return {"token": VOCAB[i], "logprob": math.log(p[i]), "bytes": list(VOCAB[i].encode())}
    return {**token(chosen), "top_logprobs": [token(i) for i in top_k(p)]}


def chat_response(distributions: np.ndarray, chosen: list[int]) -> dict:
    content = [chat_position(p, c) for p, c in zip(distributions, chosen)]
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": {"content": content},
                         "finish_reason": "length"}]}  # fmt: skip


def vllm_echo_response(distributions: np.ndarray, prompt: list[int]) -> dict:
    """An echoed completion with vLLM's prompt_logprobs=K: the prompt token first, then the top-K, keyed by id."""
    prompt_logprobs: list = [None]
    for t in range(1, len(prompt)):
        p = distributions[t - 1]
        ids = [prompt[t], *top_k(p)]  # the prompt token may be among the top-K: a dict keeps it once
        prompt_logprobs.append({str(i): {"logprob": math.log(p[i]), "rank": int(np.sum(p > p[i])) + 1,
                                         "decoded_token": VOCAB[i]} for i in ids})  # fmt: skip
    tokens = [VOCAB[i] for i in prompt]
    top = [None] + [{c["decoded_token"]: c["logprob"] for c in entry.values()} for entry in prompt_logprobs[1:]]
    return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "text": "".join(tokens),
                         "logprobs": {"tokens": tokens, "token_logprobs": [None] + [max(e.values()) for e in top[1:]],
                                      "top_logprobs": top, "text_offset": list(range(len(tokens)))},
                         "finish_reason": "length", "prompt_logprobs": prompt_logprobs}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": 0, "total_tokens": len(prompt)}}  # fmt: skip


def write(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def stream_text(response: dict) -> str:
    """A chat response as the server-sent events of its stream: role chunk, one chunk per token, finish, usage."""
    def chunk(choices):
        return "data: " + json.dumps({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
                                      "model": "m", "choices": choices}) + "\n\n"  # fmt: skip
    content = response["choices"][0]["logprobs"]["content"]
    text = chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": {"content": []}}])
    text += "".join(chunk([{"index": 0, "delta": {"content": e["token"]}, "logprobs": {"content": [e]}}])
                    for e in content)  # fmt: skip
    text += chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]) + chunk([])
    return text + "data: [DONE]\n\n"


def responses_response(response: dict) -> dict:
    content = response["choices"][0]["logprobs"]["content"]
    return {"id": "resp_1", "object": "response", "model": "m", "status": "completed",
            "output": [{"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "".join(e["token"] for e in content), "logprobs": content}]}]}


@pytest.fixture(scope="module")
def generated():
    """Six generated positions: their true distributions and the tokens chosen (not always the most probable)."""
    distributions = true_distributions(6, seed=3)
    chosen = [int(np.argsort(-p)[t % 2]) for t, p in enumerate(distributions)]
    return distributions, chosen


def expected_top_k_mass(distributions: np.ndarray) -> np.ndarray:
    return np.array([p[top_k(p)].sum() for p in distributions])


def test_chat_stream_and_responses_report_the_top_k_mass(generated, tmp_path):
    distributions, chosen = generated
    response = chat_response(distributions, chosen)
    paths = {
        "chat": write(tmp_path, "chat.jsonl", [response]),
        "responses": write(tmp_path, "responses.jsonl", [responses_response(response)]),
        "stream": tmp_path / "chat.sse",
    }
    paths["stream"].write_text(stream_text(response), encoding="utf-8")
    for name, path in paths.items():
        ds = import_jsonl(path, all_positions=True)
        np.testing.assert_allclose(ds["reported_mass"].values, expected_top_k_mass(distributions), rtol=1e-12,
                                   err_msg=name)  # fmt: skip
        # every reported token is a column, so what is not reported is exactly <other>
        np.testing.assert_allclose(ds["probs"].sel(col=OTHER).values, 1 - ds["reported_mass"].values, atol=1e-12)
        for row, p in enumerate(distributions):
            for i in top_k(p):
                assert ds["probs"].values[row, list(ds["col"].values).index(VOCAB[i])] == pytest.approx(p[i], 1e-12)


def test_prompt_positions_count_the_prompt_token_once(tmp_path):
    distributions = true_distributions(8, seed=5)
    rng = np.random.default_rng(11)
    # prompt tokens drawn from the distributions: some inside the top-K, some outside
    prompt = [0] + [int(rng.choice(len(VOCAB), p=p)) for p in distributions]
    inside = [prompt[t + 1] in top_k(p) for t, p in enumerate(distributions)]
    assert any(inside) and not all(inside)
    expected = np.array([p[sorted({*top_k(p), prompt[t + 1]})].sum() for t, p in enumerate(distributions)])
    response = vllm_echo_response(distributions, prompt)
    ds = import_jsonl(write(tmp_path, "vllm.jsonl", [response]), prompt_positions=True)
    np.testing.assert_allclose(ds["reported_mass"].values, expected, rtol=1e-12)
    # the echo alone (no prompt_logprobs) reports the same positions
    del response["choices"][0]["prompt_logprobs"]
    echo = import_jsonl(write(tmp_path, "echo.jsonl", [response]), prompt_positions=True)
    np.testing.assert_allclose(echo["reported_mass"].values, expected, rtol=1e-12)
    entries = prompt_position_logprobs(response, file="f", row=0)
    assert [len(e) for e in entries[1:]] == [K if i else K + 1 for i in inside]


def test_sentinels_are_probability_zero(tmp_path):
    p = np.array([0.7, 0.2, 0.1])
    top = [{"token": t, "logprob": lp, "bytes": []}
           for t, lp in zip([" H", " T", " x", " y"], [math.log(0.7), math.log(0.2), -9999.0, -math.inf])]
    response = {"object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "logprobs": {"content": [{"token": " H", "logprob": math.log(0.7),
                                                                   "top_logprobs": top}]}}]}  # fmt: skip
    ds = import_jsonl(write(tmp_path, "s.jsonl", [response]))
    assert ds["probs"].sel(col=[" x", " y"]).values.tolist() == [[0.0, 0.0]]
    np.testing.assert_allclose(ds["reported_mass"].values, [p[:2].sum()], rtol=1e-12)


def test_the_import_command_says_how_much_the_top_k_left_out(generated, tmp_path, capsys):
    distributions, chosen = generated
    path = write(tmp_path, "chat.jsonl", [chat_response(distributions, chosen)])
    out = tmp_path / "log.nc"
    assert main(["import", str(path), "--all-positions", "--out", str(out)]) == 0
    mass = expected_top_k_mass(distributions)
    printed = capsys.readouterr().out
    assert f"reported mass: mean {mass.mean():.4f}, min {mass.min():.4f} (row {int(mass.argmin())})" in printed
    assert f"left {1 - mass.mean():.4f} of the probability unaccounted on average" in printed
    np.testing.assert_allclose(read_log(out)["reported_mass"].values, mass, rtol=1e-12)


@pytest.mark.parametrize("mass, what, row", [([0.5, 1.01], "outside [0, 1]", 1), ([-0.1, 1.0], "outside [0, 1]", 0),
                                             ([1.0, np.nan], "not finite", 1)])  # fmt: skip
def test_the_log_contract_keeps_reported_mass_in_0_1(mass, what, row):
    ds = make_log(np.array([[0.5, 0.5], [0.2, 0.8]]), ["a", OTHER], model="m", reported_mass=[1.0, 1.0 + 5e-5])
    ds["reported_mass"] = ("row", np.asarray(mass, dtype=float))
    with pytest.raises(InputError) as error:
        validate_log(ds, "log.nc")
    assert what in str(error.value) and (error.value.field, error.value.row) == ("reported_mass", row)
    ds["reported_mass"] = (("row", "col"), np.ones((2, 2)))
    with pytest.raises(InputError, match="dims"):
        validate_log(ds, "log.nc")
