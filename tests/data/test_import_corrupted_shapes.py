"""Random corruptions of the server-shape fixtures (echoes, prompt_logprobs, Responses, streams): a valid
log or one InputError line, never another exception; the prompt-position parser likewise."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.importers import import_jsonl, prompt_position_logprobs, prompt_tokens_of
from bayesmatrix.data.llmlog import validate_log
from tests.data.test_readers_hypothesis import EXTREME_TEXT, JSON_VALUES, assert_one_line, examples, paths_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JSONL = [
    line
    for name in ("echo_completions.jsonl", "vllm_prompt_logprobs.jsonl", "openai_responses.jsonl",
                 "llama_cpp_completions.jsonl")
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    if line.strip()
]
STREAMS = [(FIXTURES / name).read_text(encoding="utf-8") for name in ("chat_stream.sse", "responses_stream.sse",
                                                                        "llama_cpp_stream.sse")]


@st.composite
def corrupted(draw, record: dict) -> dict:
    """``record`` with one field deleted or replaced by a random or extreme value."""
    path = draw(st.sampled_from(list(paths_of(record))[1:]))
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(st.one_of(JSON_VALUES, EXTREME_TEXT.map(lambda text: {"raw": text})))
    return record


@st.composite
def corrupted_jsonl(draw) -> str:
    return json.dumps(draw(corrupted(json.loads(draw(st.sampled_from(JSONL)))))) + "\n"


@st.composite
def corrupted_stream(draw) -> str:
    lines = draw(st.sampled_from(STREAMS)).splitlines()
    data = [i for i, line in enumerate(lines) if line.startswith("data: {")]
    i = draw(st.sampled_from(data))
    lines[i] = "data: " + json.dumps(draw(corrupted(json.loads(lines[i][len("data: "):]))))
    return "\n".join(lines) + "\n"


@examples(120)
@given(text=st.one_of(corrupted_jsonl(), corrupted_stream()), all_positions=st.booleans(),
       prompt_positions=st.booleans())  # fmt: skip
def test_a_corrupted_recording_imports_cleanly_or_is_one_input_error(tmp_path_factory, text, all_positions,
                                                                     prompt_positions):  # fmt: skip
    path = tmp_path_factory.mktemp("corrupt") / "log.jsonl"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        ds = import_jsonl(path, all_positions=all_positions, prompt_positions=prompt_positions)
    except InputError as error:
        assert_one_line(error)
    else:
        validate_log(ds, "<imported>")


@examples(120)
@given(record=st.sampled_from(JSONL[:4]).map(json.loads).flatmap(lambda record: corrupted(record["response"]
                                                                                          if "response" in record
                                                                                          else record)))  # fmt: skip
def test_the_prompt_parser_on_a_corrupted_response_gives_entries_or_one_input_error(record):
    try:
        entries = prompt_position_logprobs(record, file="server", row=2)
        tokens = prompt_tokens_of(record, prompt="")
    except InputError as error:
        assert_one_line(error)
        assert error.file == "server" or error.file == "<response>"
    else:
        assert len(entries) == len(tokens)
        assert all(entry is None or all(value <= 0 for value in entry.values()) for entry in entries)
