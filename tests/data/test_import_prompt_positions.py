"""Prompt positions of completions responses: echoed prompts and vLLM prompt_logprobs, read by one parser."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.importers import import_jsonl, prompt_position_logprobs, prompt_tokens_of
from bayesmatrix.data.llmlog import OTHER

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ECHO = FIXTURES / "echo_completions.jsonl"
VLLM_PROMPT = FIXTURES / "vllm_prompt_logprobs.jsonl"
VLLM_COMPLETIONS = FIXTURES / "vllm_completions.jsonl"
L = math.log


def responses(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [record.get("response", record) for record in records]


def probabilities(entries: list[dict[str, float] | None]) -> list[dict[str, float] | None]:
    return [None if entry is None else {token: math.exp(lp) for token, lp in entry.items()} for entry in entries]


def assert_entries(entries, expected):
    assert len(entries) == len(expected)
    for entry, want in zip(probabilities(entries), expected):
        if want is None:
            assert entry is None
        else:
            assert entry.keys() == want.keys()
            np.testing.assert_allclose([entry[t] for t in want], list(want.values()), rtol=1e-12, atol=1e-300)


def test_an_echoed_vllm_completion_gives_one_entry_per_prompt_token():
    response = responses(ECHO)[0]
    entries = prompt_position_logprobs(response, file="echo.jsonl", row=0)
    # the generated " H" (the 8th token) is no prompt position; -9999 is probability 0
    assert_entries(entries, [
        None,
        {" flips": 0.2, " toss": 0.5, ",": 0.1},
        {":": 0.0, ",": 0.6, " of": 0.1},
        {" H": 0.4, " T": 0.5},
        {",": 0.9, ".": 0.05},
        {" T": 0.3, " H": 0.6},
        {",": 0.95, ";": 0.01},
    ])
    assert entries[2][":"] == -9999.0
    assert prompt_tokens_of(response) == ["Coin", " flips", ":", " H", ",", " T", ","]


def test_n_choices_of_one_echoed_prompt_share_its_positions():
    response = responses(ECHO)[1]  # OpenAI, n=2, usage counts both choices' generated tokens
    assert prompt_tokens_of(response) == ["H", ",", " T", ","]
    assert_entries(prompt_position_logprobs(response, file="f", row=1),
                   [None, {",": 0.7}, {" T": 0.35, " H": 0.4}, {",": 0.8}])


def test_llama_cpp_leaves_bos_out_of_tokens_but_counts_it_in_usage():
    response = responses(ECHO)[2]
    assert response["usage"]["prompt_tokens"] == 5  # BOS included
    assert prompt_tokens_of(response) == ["T", ",", " T", ","]
    entries = prompt_position_logprobs(response, file="f", row=2)
    assert len(entries) == 4 and entries[0] is None


def test_vllm_prompt_logprobs_count_the_prompt_token_once_in_or_outside_the_top_k():
    response = responses(VLLM_PROMPT)[0]
    entries = prompt_position_logprobs(response, file="f", row=0)
    assert_entries(entries, [
        None,
        {":": 0.05, " is": 0.5, ",": 0.2},  # the prompt token ranks 4th: k + 1 entries
        {" H": 0.6, " T": 0.3},  # the prompt token ranks 1st: k entries
        {",": 0.9, ".": 0.04},
        {" T": 0.25, " H": 0.4, ",": 0.3},
    ])
    # the texts come from the echo, which also names the first token
    assert prompt_tokens_of(response) == ["Flips", ":", " H", ",", " T"]


def test_without_an_echo_the_first_token_is_what_the_prompt_holds_before_the_rest():
    response = responses(VLLM_COMPLETIONS)[0]  # prompt_logprobs, no echo
    entries = prompt_position_logprobs(response, file="f", row=0)
    assert len(entries) == 5 and entries[0] is None
    assert math.exp(entries[2][" toss"]) == pytest.approx(0.5, rel=1e-12)
    assert prompt_tokens_of(response, prompt="Coin flips: H,") == ["Coin", " flips", ":", " H", ","]
    with pytest.raises(InputError, match="request echo=true as well") as error:
        prompt_tokens_of(response, file="f", row=4)
    assert error.value.field == "choices[0].prompt_logprobs[0]" and error.value.row == 4
    with pytest.raises(InputError, match="text is unknown"):
        prompt_tokens_of(response, prompt="Other text")


def test_prompt_logprobs_alone_need_no_logprobs_of_the_choices():
    response = responses(VLLM_COMPLETIONS)[0]
    for choice in response["choices"]:
        choice["logprobs"] = None
    assert len(prompt_position_logprobs(response, file="f", row=0)) == 5


def test_equal_texts_are_combined_and_minus_infinity_is_probability_zero():
    response = responses(ECHO)[0]
    response["choices"][0]["prompt_logprobs"] = [
        None,
        {"7": {"logprob": L(0.25), "rank": 2, "decoded_token": "\ufffd"},
         "8": {"logprob": L(0.25), "rank": 3, "decoded_token": "\ufffd"},
         "9": {"logprob": -math.inf, "rank": 9, "decoded_token": " x"}},
    ]
    response["choices"][0]["logprobs"]["top_logprobs"][0] = {" H": L(0.5)}  # no longer echoed
    entries = prompt_position_logprobs(response, file="f", row=0)
    assert_entries(entries, [None, {"\ufffd": 0.5, " x": 0.0}])
    assert entries[1][" x"] == -math.inf


@pytest.mark.parametrize(
    "change, field, what",
    [
        (lambda r: r["choices"][0]["logprobs"]["top_logprobs"].__setitem__(0, {" a": -1.0}),
         "choices[0].logprobs", "reports no prompt positions"),
        (lambda r: r.pop("usage"), "usage.completion_tokens", "missing"),
        (lambda r: r["usage"].__setitem__("completion_tokens", 8), "choices[0].logprobs.top_logprobs[0]", "echoed"),
        (lambda r: r["usage"].__setitem__("completion_tokens", -1), "usage.completion_tokens", "whole number"),
        (lambda r: r["choices"][0]["logprobs"]["top_logprobs"][2].__setitem__(",", float("nan")),
         'choices[0].logprobs.top_logprobs[2][","]', "not finite"),
        (lambda r: r["choices"][0]["logprobs"]["top_logprobs"][3].__setitem__(" H", 0.5),
         'choices[0].logprobs.top_logprobs[3][" H"]', "above 0"),
        (lambda r: r["choices"][0]["logprobs"]["top_logprobs"][3].__setitem__(" H", L(0.6)),
         "choices[0].logprobs.top_logprobs[3]", "more than 1"),
        (lambda r: r["choices"][0]["logprobs"]["top_logprobs"].__setitem__(4, []),
         "choices[0].logprobs.top_logprobs[4]", "expected a {token: logprob} object"),
        (lambda r: r["choices"][0]["logprobs"]["tokens"].pop(), "choices[0].logprobs.top_logprobs", "8 entries"),
    ],
)
def test_a_bad_response_is_one_input_error_naming_file_field_and_row(change, field, what):
    response = responses(ECHO)[0]
    change(response)
    with pytest.raises(InputError) as error:
        prompt_position_logprobs(response, file="server", row=3)
    assert (error.value.file, error.value.field, error.value.row) == ("server", field, 3)
    assert what in str(error.value) and "response 3" in str(error.value)


def test_a_batch_of_echoed_prompts_is_refused():
    response = responses(ECHO)[1]
    response["choices"][1]["logprobs"]["tokens"][0] = "T"
    with pytest.raises(InputError, match="echoes another prompt") as error:
        prompt_position_logprobs(response, file="f", row=0)
    assert error.value.field == "choices[1].logprobs.tokens"


# --- the importer reads the same positions -------------------------------------------


def test_echoed_prompt_positions_become_rows_before_the_generated_ones():
    ds = import_jsonl(ECHO, prompt_positions=True)
    prompts = [str(p) for p in ds["prompt"].values]
    assert prompts == [
        # vLLM, with its request: prompt rows carry the decoded prefix, the generated row the request's prompt
        "Coin", "Coin flips", "Coin flips:", "Coin flips: H", "Coin flips: H,", "Coin flips: H, T",
        "Coin flips: H, T,",
        # OpenAI, n=2 (the prompt rows once), no request: the echo is the prompt
        "H", "H,", "H, T", "H, T,", "H, T,",
        # llama.cpp
        "T", "T,", "T, T", "T, T,",
    ]
    assert ds.attrs["format"] == "openai-completions,vllm"  # vLLM writes prompt_logprobs: null
    probs = ds["probs"].sel(col=[" H", " T", OTHER]).values
    np.testing.assert_allclose(probs[6], [0.45, 0.45, 0.1], rtol=1e-12)  # the generated row of line 1
    np.testing.assert_allclose(probs[11], [0.5, 0.25, 0.25], rtol=1e-12)  # the second choice of line 2
    np.testing.assert_allclose(probs[2], [0.4, 0.5, 0.1], rtol=1e-12)
    plain = import_jsonl(ECHO)
    assert plain.sizes["row"] == 4  # first generated token of each choice


def test_echoed_and_prompt_logprobs_together_give_each_position_once():
    ds = import_jsonl(VLLM_PROMPT, prompt_positions=True, all_positions=True)
    assert [str(p) for p in ds["prompt"].values] == ["Flips", "Flips:", "Flips: H", "Flips: H,", "Flips: H, T"]
    np.testing.assert_allclose(ds["reported_mass"].values, [0.75, 0.9, 0.94, 0.95, 0.95], rtol=1e-12)
