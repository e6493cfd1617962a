"""Importers: hand-written OpenAI and vLLM logprob samples -> exact probabilities, <other> mass, columns, errors."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.cli import main
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.columns import read_columns
from bayesmatrix.data.importers import import_jsonl
from bayesmatrix.data.llmlog import OTHER, read_log, task_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHAT = FIXTURES / "openai_chat.jsonl"
COMPLETIONS = FIXTURES / "openai_completions.jsonl"
VLLM_CHAT = FIXTURES / "vllm_chat.jsonl"
VLLM_COMPLETIONS = FIXTURES / "vllm_completions.jsonl"
CHAT_PROMPT = "system: Answer in one word.\nuser: The capital of France is\nassistant: "


def columns(ds) -> list[str]:
    return [str(label) for label in ds["col"].values]


def prompts(ds) -> list[str]:
    return [str(prompt) for prompt in ds["prompt"].values]


def chat_line(top, *, token=" H", **extra) -> str:
    """One chat-completion response whose first generated token reports ``top`` = [(token, logprob), ...]."""
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    content = [{"token": token, "logprob": top[0][1], "bytes": list(token.encode()), "top_logprobs": entries}]
    response = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1732723200,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": token},
                     "logprobs": {"content": content}, "finish_reason": "length"}],
        **extra,
    }
    return json.dumps(response)


def write_lines(tmp_path: Path, *lines: str, name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- the four shapes ---------------------------------------------------------


def test_chat_first_positions_exact_probabilities_other_mass_and_order():
    ds = import_jsonl(CHAT)
    # totals: Paris .8+.25+.4, Lyon .5, \ufffd .2+.1 (two tokens, one text), the .05+.2, a .1+.125, x exp(-9999)
    assert columns(ds) == [" Paris", " Lyon", "\ufffd", " the", " a", " x", OTHER]
    expected = [
        [0.8, 0, 0, 0.05, 0.1, 0, 0.05],
        [0.25, 0.5, 0, 0, 0.125, 0, 0.125],
        [0.4, 0, 0.3, 0.2, 0, 0, 0.1],
    ]
    np.testing.assert_allclose(ds["probs"].values, expected, rtol=1e-12, atol=1e-15)
    assert prompts(ds) == [CHAT_PROMPT, "", "user: Capital of France?\nassistant: "]
    assert ds["col_token_id"].values.tolist() == [-1] * 7
    assert "topk_ids" not in ds and "topk_logprobs" not in ds
    assert ds.attrs["source_file"] == "openai_chat.jsonl"
    assert ds.attrs["source_sha256"] == hashlib.sha256(CHAT.read_bytes()).hexdigest()
    assert ds.attrs["format"] == "openai-chat" and ds.attrs["model"] == "gpt-4o-mini-2024-07-18"
    assert task_of(ds) == {"kind": "import", "positions": "first", "prompt_positions": False,
                           "columns": "topk", "topk": None}


@pytest.mark.parametrize("k, expected", [(1, [" Paris", " Lyon"]), (2, [" Paris", " Lyon", "\ufffd", " a"])])
def test_topk_columns_are_the_union_of_each_rows_top_k(k, expected):
    ds = import_jsonl(CHAT, topk=k)
    assert columns(ds) == [*expected, OTHER]
    # everything not a column, reported or not, is <other>
    np.testing.assert_allclose(ds["probs"].values.sum(axis=1), 1.0, rtol=1e-12)
    if k == 1:
        np.testing.assert_allclose(ds["probs"].values[:, -1], [0.2, 0.25, 0.6], rtol=1e-12)


def test_chat_all_positions_prompts_carry_the_generated_prefix():
    ds = import_jsonl(CHAT, all_positions=True)
    assert prompts(ds) == [CHAT_PROMPT, CHAT_PROMPT + " Paris", "", " Lyon", "user: Capital of France?\nassistant: "]
    probs = ds["probs"].sel(col=[".", ",", "!", OTHER]).values
    np.testing.assert_allclose(probs[1], [0.6, 0.3, 0, 0.05], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[3], [0.8, 0.05, 0.1, 0.05], rtol=1e-12, atol=1e-15)
    assert task_of(ds)["positions"] == "all"


def test_given_columns_verbatim_and_json_strings():
    labels = [label for _, label in read_columns(FIXTURES / "columns.txt")]
    assert labels == [" Paris", " Lyon", "\ufffd", "Berlin"]
    ds = import_jsonl(CHAT, columns=labels)
    assert columns(ds) == [*labels, OTHER]
    # " the" and " a" are reported but not columns: their mass joins <other>
    np.testing.assert_allclose(
        ds["probs"].values, [[0.8, 0, 0, 0, 0.2], [0.25, 0.5, 0, 0, 0.25], [0.4, 0, 0.3, 0, 0.3]], rtol=1e-12, atol=1e-15
    )


def test_completions_ties_are_ordered_by_text_and_prompt_comes_from_the_request():
    ds = import_jsonl(COMPLETIONS)
    assert columns(ds) == [" H", " T", " h", " t", OTHER]  # " H" and " T" both total 0.75
    np.testing.assert_allclose(ds["probs"].values, [[0.5, 0.25, 0.125, 0, 0.125], [0.25, 0.5, 0, 0.125, 0.125]],
                               rtol=1e-12)
    assert prompts(ds) == ["Coin flips: H, T, H,", ""]
    assert ds.attrs["format"] == "openai-completions"
    every = import_jsonl(COMPLETIONS, all_positions=True, format="openai-completions")
    assert prompts(every) == ["Coin flips: H, T, H,", "Coin flips: H, T, H, H", "", " T"]
    np.testing.assert_allclose(every["probs"].sel(col=[",", ".", "\n", OTHER]).values[3], [0.9, 0.05, 0.02, 0.03],
                               rtol=1e-12)


def test_vllm_chat_prompt_positions_become_rows():
    plain = import_jsonl(VLLM_CHAT)
    assert plain.sizes["row"] == 2 and plain.attrs["format"] == "vllm"
    ds = import_jsonl(VLLM_CHAT, prompt_positions=True)
    assert prompts(ds) == ["", "user", "user\n", "user: Coin flips: H, T, H,\nassistant: ", ""]
    probs = ds["probs"].sel(col=["user", "system", "\n", ":", "Coin", "The", "A", " H", " T", OTHER]).values
    np.testing.assert_allclose(probs[0], [0.5, 0.25, 0, 0, 0, 0, 0, 0, 0, 0.25], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[2], [0, 0, 0, 0, 0.05, 0.2, 0.1, 0, 0, 0.65], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[4], [0, 0, 0, 0, 0, 0, 0, 0.4, 0.5, 0.1], rtol=1e-12, atol=1e-15)


def test_vllm_completions_prompt_rows_count_once_for_n_choices(tmp_path):
    ds = import_jsonl(VLLM_COMPLETIONS, prompt_positions=True, format="vllm")
    assert prompts(ds) == ["", " flips", " flips:", " flips: H", "Coin flips: H,", "Coin flips: H,"]
    probs = ds["probs"].sel(col=[" flips", ":", " toss", " H", " T", ",", OTHER]).values
    np.testing.assert_allclose(probs[1], [0, 0.2, 0.5, 0, 0, 0, 0.3], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[3], [0, 0, 0, 0, 0, 0.95, 0.05], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[4], [0, 0, 0, 0.5, 0.4, 0, 0.1], rtol=1e-12, atol=1e-15)


def test_batch_prompts_map_to_choices_n_at_a_time(tmp_path):
    response = json.loads(chat_line([(" H", math.log(0.5))]))
    del response["choices"]
    response["object"] = "text_completion"
    response["choices"] = [
        {"index": i, "text": " x", "logprobs": {"tokens": [" x"], "token_logprobs": [math.log(0.5)],
                                               "top_logprobs": [{" x": math.log(0.5)}], "text_offset": [0]}}
        for i in range(4)
    ]
    line = json.dumps({"request": {"prompt": ["A:", "B:"], "n": 2}, "response": response})
    ds = import_jsonl(write_lines(tmp_path, line))
    assert prompts(ds) == ["A:", "A:", "B:", "B:"]


def test_small_rounding_excess_is_renormalised(tmp_path):
    path = write_lines(tmp_path, chat_line([(" H", math.log(0.6)), (" T", math.log(0.4004))]))
    ds = import_jsonl(path)
    np.testing.assert_allclose(ds["probs"].values, [[0.6 / 1.0004, 0.4004 / 1.0004, 0.0]], rtol=1e-12)


def test_cli_writes_a_readable_log(tmp_path):
    out = tmp_path / "chat.nc"
    assert main(["import", str(VLLM_CHAT), "--prompt-positions", "--topk", "2", "--out", str(out)]) == 0
    ds = read_log(out)
    assert ds.sizes["row"] == 5 and columns(ds)[0] == "\n" and columns(ds)[-1] == OTHER
    assert prompts(ds)[2] == "user\n"
    columns_out = tmp_path / "given.nc"
    assert main(["import", str(CHAT), "--columns", str(FIXTURES / "columns.txt"), "--out", str(columns_out)]) == 0
    assert columns(read_log(columns_out)) == [" Paris", " Lyon", "\ufffd", "Berlin", OTHER]


# --- errors ------------------------------------------------------------------

GOOD = chat_line([(" H", math.log(0.5)), (" T", math.log(0.25))])


def _without(path: list, line: str = GOOD) -> str:
    """``line`` with the field at ``path`` deleted."""
    response = json.loads(line)
    container = response
    for key in path[:-1]:
        container = container[key]
    del container[path[-1]]
    return json.dumps(response)


def _with(path: list, value, line: str = GOOD) -> str:
    response = json.loads(line)
    container = response
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = value
    return json.dumps(response)


TOP0 = ["choices", 0, "logprobs", "content", 0, "top_logprobs", 0]


@pytest.mark.parametrize(
    "bad, field, what",
    [
        ('{"id": "chatcmpl-x", "choices": [', None, "malformed JSON"),
        ("[1, 2]", None, "not an object"),
        (_without(["choices"]), "choices", "missing"),
        (_with(["choices"], []), "choices", "empty"),
        (_with(["choices", 0, "logprobs"], None), "choices[0].logprobs", "missing"),
        (_with(["choices", 0, "logprobs"], {"refusal": None}), "choices[0].logprobs", "neither"),
        (_without(["choices", 0, "logprobs", "content", 0, "top_logprobs"]),
         "choices[0].logprobs.content[0].top_logprobs", "missing"),
        (_with(["choices", 0, "logprobs", "content", 0, "top_logprobs"], []),
         "choices[0].logprobs.content[0].top_logprobs", "empty"),
        (_without([*TOP0, "token"]), "choices[0].logprobs.content[0].top_logprobs[0].token", "missing"),
        (_without([*TOP0, "logprob"]), "choices[0].logprobs.content[0].top_logprobs[0].logprob", "missing"),
        (_with([*TOP0, "logprob"], float("nan")), "choices[0].logprobs.content[0].top_logprobs[0].logprob", "finite"),
        (_with([*TOP0, "logprob"], float("inf")), "choices[0].logprobs.content[0].top_logprobs[0].logprob", "finite"),
        (_with([*TOP0, "logprob"], "-0.5"), "choices[0].logprobs.content[0].top_logprobs[0].logprob", "number"),
        (_with([*TOP0, "logprob"], 0.01), "choices[0].logprobs.content[0].top_logprobs[0].logprob", "above 0"),
        (_with([*TOP0, "logprob"], math.log(0.76)), "choices[0].logprobs.content[0].top_logprobs", "sum to 1.01"),
    ],
)
def test_bad_lines_name_file_field_and_line(bad, field, what, tmp_path):
    path = write_lines(tmp_path, GOOD, "", bad, GOOD)  # the bad line is line 3 (1-based)
    with pytest.raises(InputError) as error:
        import_jsonl(path)
    assert error.value.file == str(path) and error.value.field == field and error.value.row == 3
    assert "line 3 (1-based)" in str(error.value) and what in str(error.value)


def test_wrapped_lines_name_the_field_inside_the_response(tmp_path):
    bad = json.dumps({"request": {"messages": []}, "response": json.loads(_with([*TOP0, "logprob"], 0.5))})
    with pytest.raises(InputError) as error:
        import_jsonl(write_lines(tmp_path, bad))
    assert error.value.field == "response.choices[0].logprobs.content[0].top_logprobs[0].logprob"
    assert error.value.row == 1


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(text, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match="empty file"):
        import_jsonl(path)


def test_no_rows_when_no_token_was_generated(tmp_path):
    path = write_lines(tmp_path, _with(["choices", 0, "logprobs", "content"], []))
    with pytest.raises(InputError, match="no rows") as error:
        import_jsonl(path)
    assert error.value.field == "choices"


def test_forced_format_rejects_another_shape(tmp_path):
    with pytest.raises(InputError, match="but the format asked for is openai-completions") as error:
        import_jsonl(CHAT, format="openai-completions")
    assert error.value.row == 1 and "line 1 (1-based)" in str(error.value)
    # a completions line after chat lines, under a forced chat format
    mixed = write_lines(tmp_path, GOOD, COMPLETIONS.read_text().splitlines()[1])
    with pytest.raises(InputError, match="openai-completions-shaped") as error:
        import_jsonl(mixed, format="openai-chat")
    assert error.value.row == 2
    # vllm: one endpoint per file
    vllm_mixed = write_lines(tmp_path, VLLM_CHAT.read_text().splitlines()[1], VLLM_COMPLETIONS.read_text().strip(),
                             name="vllm.jsonl")
    with pytest.raises(InputError, match="earlier lines are openai-chat-shaped") as error:
        import_jsonl(vllm_mixed, format="vllm")
    assert error.value.row == 2
    # auto takes each line as it comes
    assert import_jsonl(mixed).attrs["format"] == "openai-chat,openai-completions"


def test_prompt_positions_need_vllm_prompt_logprobs():
    with pytest.raises(InputError, match="no line has prompt_logprobs"):
        import_jsonl(CHAT, prompt_positions=True)
    with pytest.raises(InputError) as error:
        import_jsonl(VLLM_CHAT, prompt_positions=True, format="openai-chat")
    assert error.value.field == "prompt_positions"


def test_echoed_completions_are_refused(tmp_path):
    line = json.loads(COMPLETIONS.read_text().splitlines()[1])
    line["choices"][0]["logprobs"]["top_logprobs"][0] = None
    with pytest.raises(InputError, match="echoed") as error:
        import_jsonl(write_lines(tmp_path, json.dumps(line)))
    assert error.value.field == "choices[0].logprobs.top_logprobs[0]"


@pytest.mark.parametrize(
    "text, what, row",
    [
        ("a\nb\na\n", "appears twice", 3),
        ("a\n<other>\n", "reserved", 2),
        ('a\n"b\n', "JSON string", 2),
        ("\n\n", "no column labels", None),
    ],
)
def test_bad_columns_files(text, what, row, tmp_path):
    path = tmp_path / "columns.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=what) as error:
        read_columns(path)
    assert error.value.row == row and error.value.field == "columns"


def test_missing_input_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        import_jsonl(tmp_path / "nope.jsonl")


def test_cli_error_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    path = write_lines(tmp_path, GOOD, '{"choices": [}')
    out = tmp_path / "out.nc"
    assert main(["import", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 2" in err and "line 2 (1-based)" in err and "malformed JSON" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [path]
    assert main(["import", str(CHAT), "--topk", "0", "--out", str(out)]) == 2
    assert "--topk" in capsys.readouterr().err and not out.exists()


def test_a_token_holding_nul_is_one_line_naming_the_file(tmp_path, capsys):
    """netCDF strings cannot hold a NUL: NumPy would drop it and two tokens could become one column."""
    path = write_lines(tmp_path, chat_line([(" H", -0.5), ("a\x00", -1.5), ("a", -2.0)]))
    out = tmp_path / "out.nc"
    assert main(["import", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "field 'token'" in err and "NUL" in err
    assert not out.exists()


@pytest.mark.parametrize("logprob, what", [(-int("9" * 400), "an integer of 400 digits"),
                                           (int("9" * 400), "an integer of 400 digits"),
                                           ("-0.5", 'is "-0.5", expected a number')])  # fmt: skip
def test_a_logprob_that_is_no_float_names_its_field_and_line(logprob, what, tmp_path):
    path = write_lines(tmp_path, GOOD, chat_line([(" H", -0.5), (" T", logprob)]))
    with pytest.raises(InputError, match=what) as error:
        import_jsonl(path)
    assert error.value.row == 2 and error.value.field.endswith("top_logprobs[1].logprob")


@pytest.mark.parametrize("depth", [100_000, 3_000])
def test_json_nested_deeper_than_the_reader_goes_names_the_line(depth, tmp_path):
    path = write_lines(tmp_path, GOOD, "[" * depth + "]" * depth)
    with pytest.raises(InputError, match=r"line 2 \(1-based\)") as error:
        import_jsonl(path)
    assert error.value.row == 2 and "\n" not in str(error.value)


def test_a_prompt_holding_a_lone_surrogate_names_its_line(tmp_path, capsys):
    wrapped = json.dumps({"request": {"prompt": "The \ud800 capital"}, "response": json.loads(GOOD)})
    path = write_lines(tmp_path, GOOD, wrapped)
    with pytest.raises(InputError, match=r"field 'prompt', row 2: line 2 \(1-based\): the prompt holds"):
        import_jsonl(path)
    lone = chat_line([(" H", -0.5), ("XX", -1.5)]).replace('"XX"', '"\\udcff"')  # JSON's escape of a lone surrogate
    token = write_lines(tmp_path, lone, name="token.jsonl")
    out = tmp_path / "out.nc"
    assert main(["import", str(token), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "field 'token'" in err and "Traceback" not in err and not out.exists()


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes((GOOD + "\n" + GOOD + "\n").encode() + b'{"x": "\xff"}\n')
    with pytest.raises(InputError, match=r"line 3 \(1-based\) is not UTF-8 text") as error:
        import_jsonl(path)
    assert error.value.row == 3


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_not_read_until_it_closes(tmp_path, capsys):
    import os

    fifo = tmp_path / "responses.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out.nc"
    assert main(["import", str(fifo), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file" in err and not out.exists()


def test_a_symlink_loop_is_not_called_missing(tmp_path):
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match="symlink loop"):
        import_jsonl(loop)
    with pytest.raises(InputError, match="symlink loop"):
        read_columns(loop)
