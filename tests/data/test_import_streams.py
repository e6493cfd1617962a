"""Streamed chat logs (server-sent events) and the Responses API, from recorded-shape fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.cli import main
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.importers import import_jsonl
from bayesmatrix.data.llmlog import OTHER

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHAT_STREAM = FIXTURES / "chat_stream.sse"
RESPONSES = FIXTURES / "openai_responses.jsonl"
RESPONSES_STREAM = FIXTURES / "responses_stream.sse"


def prompts(ds) -> list[str]:
    return [str(prompt) for prompt in ds["prompt"].values]


def test_chat_streams_concatenate_each_choices_logprobs_over_chunks():
    ds = import_jsonl(CHAT_STREAM, all_positions=True)
    # stream 1 (OpenAI): " Paris", "." ; stream 2 (vLLM, n=2, chunks interleaved): " H", "," and " T", ","
    assert prompts(ds) == ["", " Paris", "", " H", "", " T"]
    assert ds.attrs["format"] == "openai-chat-stream"
    assert ds.attrs["model"] == "Qwen/Qwen2.5-0.5B-Instruct,gpt-4o-mini-2024-07-18"
    probs = ds["probs"].sel(col=[" Paris", " Lyon", ".", " H", " T", ",", OTHER]).values
    np.testing.assert_allclose(probs[0], [0.9, 0.05, 0, 0, 0, 0, 0.05], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[2], [0, 0, 0, 0.6, 0.35, 0, 0.05], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[5], [0, 0, 0.02, 0, 0, 0.97, 0.01], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ds["reported_mass"].values, [0.95, 0.9, 0.95, 0.99, 0.95, 0.99], rtol=1e-12)
    first = import_jsonl(CHAT_STREAM)
    assert prompts(first) == ["", "", ""]  # one row per choice: its first token


def test_responses_api_rows_and_prompts_from_the_request():
    ds = import_jsonl(RESPONSES, all_positions=True)
    assert prompts(ds) == [
        "user: Coin flips: H, T, H,\nassistant: ",
        "user: Coin flips: H, T, H,\nassistant:  H",
        "system: Answer in one word.\nuser: The capital of France?\nassistant: ",  # the reasoning item is skipped
    ]
    assert ds.attrs["format"] == "openai-responses"
    np.testing.assert_allclose(ds["probs"].sel(col=[" H", " T"]).values[0], [0.55, 0.4], rtol=1e-12)
    np.testing.assert_allclose(ds["reported_mass"].values, [0.95, 0.99, 0.99], rtol=1e-12)
    assert import_jsonl(RESPONSES, format="openai-responses").sizes["row"] == 2


def test_a_responses_stream_is_read_from_its_completed_event():
    ds = import_jsonl(RESPONSES_STREAM, all_positions=True)
    plain = import_jsonl(RESPONSES, all_positions=True).isel(row=[0, 1])
    labels = [str(label) for label in ds["col"].values if label != OTHER]
    np.testing.assert_array_equal(ds["probs"].sel(col=labels).values, plain["probs"].sel(col=labels).values)
    np.testing.assert_array_equal(ds["reported_mass"].values, plain["reported_mass"].values)
    assert prompts(ds) == ["", " H"]  # a stream carries no request


def write(tmp_path: Path, text: str, name: str = "log.sse") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def stream_lines() -> list[str]:
    return CHAT_STREAM.read_text(encoding="utf-8").splitlines()


def bad_chunk(change) -> list[str]:
    """The chat stream fixture with its second stream's second chunk (line 17) changed by ``change``."""
    lines = stream_lines()
    assert lines[16].startswith("data: {") and "Qwen" in lines[16]
    chunk = json.loads(lines[16][len("data: "):])
    change(chunk)
    lines[16] = "data: " + json.dumps(chunk)
    return lines


CONTENT = ["choices", 0, "logprobs", "content", 0]


def set_at(path, value):
    def change(chunk):
        container = chunk
        for key in path[:-1]:
            container = container[key]
        container[path[-1]] = value
    return change


@pytest.mark.parametrize(
    "lines, field, what",
    [
        (bad_chunk(set_at([*CONTENT, "top_logprobs", 0, "logprob"], float("nan"))),
         "choices[0].logprobs.content[0].top_logprobs[0].logprob", "not finite"),
        (bad_chunk(set_at([*CONTENT, "top_logprobs", 1, "logprob"], 0.1)),
         "choices[0].logprobs.content[0].top_logprobs[1].logprob", "above 0"),
        (bad_chunk(set_at([*CONTENT, "top_logprobs"], [])), "choices[0].logprobs.content[0].top_logprobs", "empty"),
        (bad_chunk(set_at(["choices", 0, "logprobs", "content"], {"token": " T"})),
         "choices[0].logprobs.content", "expected a list"),
        (bad_chunk(set_at(["choices", 0, "index"], -1)), "choices[0].index", "whole number"),
        (bad_chunk(set_at(["object"], "chat.completion")), "object", "chat.completion.chunk"),
        (bad_chunk(lambda chunk: chunk.pop("choices")), "choices", "missing"),
        (stream_lines()[:16] + ['data: {"id": "chatcmpl-x", "choices": ['] + stream_lines()[17:], None,
         "malformed JSON"),
        (stream_lines()[:16] + ["<html>502 Bad Gateway</html>"] + stream_lines()[17:], None,
         "not a server-sent event line"),
    ],
)
def test_a_bad_chunk_is_one_error_naming_its_line_and_field(lines, field, what, tmp_path):
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(InputError) as error:
        import_jsonl(path, all_positions=True)
    assert (error.value.file, error.value.field, error.value.row) == (str(path), field, 17)
    assert what in str(error.value) and "line 17 (1-based)" in str(error.value)


def test_a_stream_of_usage_chunks_only_has_no_rows(tmp_path):
    usage = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": 0}}  # fmt: skip
    with pytest.raises(InputError, match="no rows"):
        import_jsonl(write(tmp_path, f"data: {json.dumps(usage)}\n\ndata: [DONE]\n"))


def test_responses_errors_name_the_field(tmp_path):
    record = json.loads(RESPONSES.read_text(encoding="utf-8").splitlines()[0])
    del record["response"]["output"][0]["content"][0]["logprobs"]
    path = write(tmp_path, json.dumps(record) + "\n", name="r.jsonl")
    with pytest.raises(InputError, match="message.output_text.logprobs") as error:
        import_jsonl(path)
    assert (error.value.field, error.value.row) == ("response.output[0].content[0].logprobs", 1)
    with pytest.raises(InputError, match="openai-responses-shaped") as error:
        import_jsonl(RESPONSES, format="openai-chat")
    assert error.value.field == "response.output"
    with pytest.raises(InputError) as error:
        import_jsonl(RESPONSES, format="openai-responses", prompt_positions=True)
    assert error.value.field == "prompt_positions"


def test_the_cli_imports_a_stream_and_refuses_a_bad_one_with_exit_2(tmp_path, capsys):
    out = tmp_path / "stream.nc"
    assert main(["import", str(CHAT_STREAM), "--all-positions", "--topk", "2", "--out", str(out)]) == 0
    assert "reported mass: mean" in capsys.readouterr().out
    lines = bad_chunk(set_at([*CONTENT, "top_logprobs", 0, "logprob"], math.inf))
    bad = write(tmp_path, "\n".join(lines) + "\n")
    assert main(["import", str(bad), "--out", str(tmp_path / "bad.nc")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 17 (1-based)" in err and "Traceback" not in err
    assert not (tmp_path / "bad.nc").exists()


# --- llama.cpp's server ----------------------------------------------------------


LLAMA_CPP = FIXTURES / "llama_cpp_completions.jsonl"
LLAMA_CPP_STREAM = FIXTURES / "llama_cpp_stream.sse"


def test_llama_cpp_completions_carry_chat_shaped_logprobs():
    ds = import_jsonl(LLAMA_CPP, all_positions=True)
    assert prompts(ds) == ["Coin flips: T, H, T,", "Coin flips: T, H, T, H"]
    assert ds.attrs["format"] == "openai-chat" and ds.attrs["model"] == "smollm2"
    np.testing.assert_allclose(ds["probs"].sel(col=[" H", " T", " h", OTHER]).values[0], [0.5, 0.45, 0.01, 0.04],
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(ds["reported_mass"].values, [0.96, 0.985], rtol=1e-12)


def test_a_llama_cpp_stream_of_text_completion_chunks():
    ds = import_jsonl(LLAMA_CPP_STREAM, all_positions=True)
    assert prompts(ds) == ["", " T"]
    np.testing.assert_allclose(ds["reported_mass"].values, [0.96, 0.985], rtol=1e-12)


def test_post_sampling_probabilities_and_legacy_stream_chunks_are_refused(tmp_path):
    record = json.loads(LLAMA_CPP.read_text(encoding="utf-8"))
    entry = record["response"]["choices"][0]["logprobs"]["content"][0]
    entry["prob"], entry["top_probs"] = 0.5, [{"id": 389, "token": " H", "bytes": [], "prob": 0.5}]
    del entry["logprob"], entry["top_logprobs"]
    with pytest.raises(InputError, match="post-sampling") as error:
        import_jsonl(write(tmp_path, json.dumps(record) + "\n", name="post.jsonl"))
    assert (error.value.field, error.value.row) == ("response.choices[0].logprobs.content[0].top_probs", 1)
    legacy = {"id": "cmpl-1", "object": "text_completion", "model": "m",
              "choices": [{"index": 0, "text": " H", "logprobs": {"tokens": [" H"], "token_logprobs": [-0.7],
                                                                  "top_logprobs": [{" H": -0.7}],
                                                                  "text_offset": [0]}}]}  # fmt: skip
    with pytest.raises(InputError, match="streamed legacy completions") as error:
        import_jsonl(write(tmp_path, f"data: {json.dumps(legacy)}\n\ndata: [DONE]\n"))
    assert (error.value.field, error.value.row) == ("choices[0].logprobs", 1)
