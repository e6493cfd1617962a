"""Import logprob logs of OpenAI-compatible servers (OpenAI, vLLM, llama.cpp) as LLM logs.

Input: a JSONL file, one response per line, either the response body itself or
a wrapper ``{"request": {...}, "response": {...}}`` (the OpenAI Batch output
``{"response": {"body": {...}}}`` works too), or a log of server-sent events
(Streams, below). Blank lines are skipped. The shapes read:

- ``openai-chat``: ``choices[i].logprobs.content[t]`` holds the generated
  ``token``, its ``logprob`` and ``top_logprobs``, a list of
  ``{"token", "logprob", "bytes"}`` (llama.cpp's ``/v1/completions`` answers in
  this shape too; its post-sampling ``top_probs`` are the sampler's, not the
  model's, and are refused);
- ``openai-completions`` (legacy): ``choices[i].logprobs`` holds ``tokens``,
  ``token_logprobs``, ``text_offset`` and ``top_logprobs``, a list of
  ``{token: logprob}`` dicts. An echoed completion (``echo=true``) lists the
  prompt's tokens first, the first with null logprobs; the tokens after them
  are the generated ones, ``usage.completion_tokens`` of them (summed over the
  choices), so an echoed line needs ``usage`` and one prompt (n choices of it);
  this holds whether or not the server lists a BOS token (llama-cpp-python
  leaves it out of ``tokens`` but counts it in ``usage.prompt_tokens``);
- ``openai-responses``: the Responses API (``object: "response"``): the
  ``output_text`` parts of the ``output`` messages hold ``logprobs``, a list of
  positions shaped like chat's, one sequence over the parts;
- ``vllm``: either completions shape plus ``prompt_logprobs`` (top level for
  chat, per choice for completions): one entry per prompt token, ``null`` for
  the first, else ``{token_id: {"logprob", "rank", "decoded_token"}}``. vLLM
  puts the prompt token itself first in each entry, followed by the top-k
  (k + 1 entries, or k when the prompt token is among the top-k: keyed by id,
  it is counted once).

``auto`` decides per line: ``vllm`` when a ``prompt_logprobs`` field is
present, otherwise by the shape of the response. A forced format rejects a line
of another shape (and ``vllm`` rejects a file that mixes the chat and the
completions shapes).

Streams
-------
A file whose first line starts with ``data:`` (or ``event:``, ``:``) holds
server-sent events. ``data: {chunk}`` lines of ``chat.completion.chunk``
objects (or llama.cpp's ``text_completion`` chunks, whose logprobs are
chat-shaped; streamed legacy completions are refused) with one ``id`` are one response: each choice's
``logprobs.content`` lists are concatenated over the chunks (the first
chunk's empty list, ``logprobs: null`` in the last and usage-only chunks with
empty ``choices`` add nothing). ``data: [DONE]``, comments and ``event:``,
``id:``, ``retry:`` lines are skipped. A Responses API stream is read from its
``response.completed`` event, which holds the whole response. A stream
carries no request.

Rows
----
By default one row per choice (one per line for the usual ``n = 1``): the
distribution of its FIRST generated token. ``all_positions`` makes every
generated position a row. ``prompt_positions`` adds a row for each prompt
position after the first (vLLM's ``prompt_logprobs`` or an echoed prompt),
placed before the line's generated rows.

Prompts
-------
The prompt of a generated row is the request's prompt (when the line carries
the request) followed by the generated text before that position (the
concatenated ``token`` strings). A completions request's ``prompt`` is used as
is; chat ``messages`` (and the Responses API's ``instructions`` and ``input``)
are rendered one per line as ``role: content``, followed by ``assistant: ``.
Without a request the prompt is the echoed prompt, if any, then the generated
prefix. The prompt of a prompt-position row is the text of the prompt tokens
before it as the server decoded them; without an echo the first prompt token
(whose entry is null) is unknown and left out.

Columns and mass
----------------
Columns come from a given list (a column file: :func:`bayesmatrix.data.columns.read_columns`) or from ``topk``:
the union of every row's K most probable reported tokens (all reported tokens
when ``topk`` is None), ordered by total probability over the rows (largest
first), then by text. Within a row, a column's probability is ``exp(logprob)``
when the token is among that row's reported ``top_logprobs`` (the sum, when
two reported tokens have the same text), and 0 otherwise; a logprob of -9999
(OpenAI's and vLLM's floor) or -inf is probability 0. A column that is not
reported in a row has an unknown true mass, at most the smallest reported
probability of that row: it goes to ``"<other>"``, together with all mass
outside the reported top-k, so ``<other> = 1 - sum(columns)``. A token whose
text is ``"<other>"`` is never a column. When a row's reported probabilities
sum above 1 by less than 1e-3 (rounding), they are divided by their sum; a
larger excess is an error. The variable ``reported_mass`` (row) is that sum,
what the server reported before anything was folded into ``<other>``.

APIs return token strings, not ids: ``col_token_id`` is -1 for every column,
and ``topk_ids``/``topk_logprobs`` are not stored. The log keeps ``probs``,
``prompt`` and ``reported_mass``, and the attributes ``source_file`` (base
name), ``source_sha256``, ``format`` and ``model`` (the responses' ``model``
fields; several are joined with ",", none gives "unknown").

Errors are :class:`bayesmatrix.data.errors.InputError` naming the file, the field and the
line (1-based, as ``row``): malformed JSON, missing fields, NaN or positive
log-probabilities, an empty file, no rows, a line in another format than the
forced one. :func:`prompt_position_logprobs` and :func:`prompt_tokens_of` read
the prompt positions of one response body, for a client that asks a server
itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import xarray as xr
from tqdm import tqdm

from bayesmatrix.data.atomic import check_input_file
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log

FORMATS = ("openai-chat", "openai-completions", "openai-responses", "vllm")
# Reported top-k probabilities may sum a little above 1 from rounding of the logprobs.
RENORMALISE_TOLERANCE = 1e-3


def import_jsonl(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    columns: Sequence[str] | None = None,
    topk: int | None = None,
    all_positions: bool = False,
    prompt_positions: bool = False,
    progress: bool = False,
) -> xr.Dataset:
    """Read a JSONL file of logprob responses into an LLM log (see the module docstring)."""
    file = str(path)
    if format not in ("auto", *FORMATS):
        raise InputError(f"is {format!r}; choose auto, {', '.join(FORMATS)}", field="format")
    if columns is not None and topk is not None:
        raise InputError("give either columns or topk, not both", field="topk")
    if topk is not None and (isinstance(topk, bool) or int(topk) != topk or topk < 1):
        raise InputError(f"must be an integer >= 1, got {topk}", field="topk")
    if prompt_positions and format in ("openai-chat", "openai-responses"):
        raise InputError(f"needs vLLM's prompt_logprobs or an echoed completion: use the format vllm, "
                         f"openai-completions or auto, not {format}", field="prompt_positions")  # fmt: skip

    raw = _read_bytes(Path(path), file)
    lines = [(number, line) for number, line in enumerate(_decode(raw, file).split("\n"), start=1) if line.strip()]
    if not lines:
        raise InputError("empty file: no JSON lines", file=file)

    rows: list[dict[str, float]] = []
    prompts: list[str] = []
    row_lines: list[int] = []  # the line each row came from, to name it in an error
    formats: set[str] = set()
    models: set[str] = set()
    vllm_shape: str | None = None
    saw_prompt_logprobs = False
    if _is_event_stream(lines):
        responses: Iterable[_Line] = _stream_lines(file, lines)
    else:
        responses = (_Line.from_text(file, number, text) for number, text in lines)
    for line in tqdm(responses, desc="import", unit="response", disable=not progress, delay=1.0, file=sys.stderr):
        number = line.number
        line_format = line.format
        if format == "vllm":
            vllm_shape = vllm_shape or line.shape
            if line.shape != vllm_shape:
                raise line.error(f"{line.prefix}choices[0].logprobs",
                                 f"is {line.shape}-shaped, but earlier lines are {vllm_shape}-shaped")
        elif format != "auto" and line.shape != format:
            raise line.error(f"{line.prefix}{'output' if line.shape == 'openai-responses' else 'choices[0].logprobs'}",
                             f"is {line.shape}-shaped, but the format asked for is {format}")
        formats.add(line_format)
        if isinstance(line.response.get("model"), str):
            models.add(line.response["model"])
        if prompt_positions:
            for prompt, probs in line.prompt_rows():
                saw_prompt_logprobs = True
                prompts.append(prompt)
                rows.append(probs)
                row_lines.append(number)
        for prompt, probs in line.generated_rows(all_positions):
            prompts.append(prompt)
            rows.append(probs)
            row_lines.append(number)
    if prompt_positions and not saw_prompt_logprobs:
        raise InputError("no line has prompt_logprobs or an echoed prompt (ask vLLM for prompt_logprobs, or send "
                         "echo=true with logprobs)", file=file, field="prompt_logprobs")  # fmt: skip
    if not rows:
        raise InputError("no rows: no response has a generated token with top_logprobs", file=file, field="choices")

    labels = list(columns) if columns is not None else _top_columns(rows, topk)
    if not labels:
        raise InputError("no columns: no row reports a token other than <other>", file=file, field="top_logprobs")
    probs = np.array([[row.get(label, 0.0) for label in labels] for row in rows], dtype=np.float64)
    other = np.maximum(1.0 - probs.sum(axis=1, keepdims=True), 0.0)
    reported_mass = np.minimum([sum(row.values()) for row in rows], 1.0)
    try:
        return make_log(
            np.concatenate([probs, other], axis=1),
            [*labels, OTHER],
            model=",".join(sorted(models)) or "unknown",
            task={
                "kind": "import",
                "positions": "all" if all_positions else "first",
                "prompt_positions": prompt_positions,
                "columns": "given" if columns is not None else "topk",
                "topk": topk,
            },
            prompt=prompts,
            reported_mass=reported_mass,
            source_file=Path(path).name,
            source_sha256=hashlib.sha256(raw).hexdigest(),
            format=format if format != "auto" else ",".join(sorted(formats)),
        )
    except InputError as error:
        # a token or prompt the log cannot hold (a NUL, a lone surrogate): say which file and line it came from
        if error.field == "col":
            raise InputError(f"a token of the responses: {error.reason}", file=file, field="token") from None
        if error.field == "prompt" and error.row is not None:
            number = row_lines[error.row]
            raise InputError(f"line {number} (1-based): the prompt {error.reason}", file=file, field="prompt",
                             row=number) from None  # fmt: skip
        raise


def _top_columns(rows: list[dict[str, float]], topk: int | None) -> list[str]:
    """The union of each row's ``topk`` most probable tokens, by total probability then text."""
    total: dict[str, float] = defaultdict(float)
    chosen: set[str] = set()
    for row in rows:
        ranked = sorted(row.items(), key=lambda item: (-item[1], item[0]))
        chosen.update(label for label, _ in ranked[:topk] if label != OTHER)
        for label, probability in row.items():
            total[label] += probability
    return sorted(chosen, key=lambda label: (-total[label], label))


class _Reader:
    """Where a value came from (a file and a line or response), to name it in an error, and the checks on values."""

    def __init__(self, file: str, number: int | None, label: str):
        self.file, self.number, self.label = file, number, label

    def error(self, field: str | None, what: str) -> InputError:
        return InputError(f"{self.label}: {what}", file=self.file, field=field, row=self.number)

    def parse(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise self.error(None, f"malformed JSON ({error.msg}, column {error.colno})") from None
        except RecursionError:
            raise self.error(None, "JSON nested too deeply to read") from None
        except ValueError as error:  # an integer of thousands of digits
            raise self.error(None, f"unreadable JSON ({str(error).splitlines()[0]})") from None

    def field_of(self, container: Any, key: str, kind: type | tuple[type, ...], field: str) -> Any:
        if not isinstance(container, dict) or container.get(key) is None:
            raise self.error(field, "is missing")
        value = container[key]
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(field, f"is a {type(value).__name__}, expected {names}")
        return value

    def logprob(self, container: Any, field: str, key: str = "logprob") -> float:
        """A reported log probability: a number <= 0; -inf (and OpenAI's floor -9999) is probability 0."""
        if not isinstance(container, dict) or key not in container:
            raise self.error(field, "is missing")
        value = container[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            shown = json.dumps(value)
            raise self.error(field, f"is {shown if len(shown) <= 40 else shown[:37] + '...'}, expected a number")
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float: hundreds of digits
            raise self.error(field, f"is an integer of {len(str(abs(value)))} digits, not a log probability") from None
        if math.isnan(value) or value == math.inf:
            raise self.error(field, f"is {value}, not finite")
        if value > 0:
            raise self.error(field, f"is {value}, a log probability above 0")
        return value

    def token_text(self, container: Any, index: int, field: str) -> str:
        token = container[index]
        if not isinstance(token, str):
            raise self.error(field, f"is a {type(token).__name__}, expected text")
        return token

    def chat_pairs(self, entry: Any, where: str) -> list[tuple[str, float]]:
        """The reported (token, logprob) pairs of a chat or Responses API position ``entry``."""
        if isinstance(entry, dict) and "top_probs" in entry and "top_logprobs" not in entry:
            raise self.error(f"{where}.top_probs", "holds llama.cpp's post-sampling probabilities (the sampler's "
                                                   "after top-k/top-p, not the model's); request them without "
                                                   "post_sampling_probs")  # fmt: skip
        top = self.field_of(entry, "top_logprobs", list, f"{where}.top_logprobs")
        pairs = []
        for k, candidate in enumerate(top):
            candidate_field = f"{where}.top_logprobs[{k}]"
            pairs.append((
                self.field_of(candidate, "token", str, f"{candidate_field}.token"),
                self.logprob(candidate, f"{candidate_field}.logprob"),
            ))
        return pairs

    def row_probs(self, pairs: list[tuple[str, float]], field: str) -> dict[str, float]:
        """Reported (token, logprob) pairs -> {token: probability}, tokens of equal text summed."""
        if not pairs:
            raise self.error(field, "is empty (request top_logprobs=K with K >= 1)")
        probs: dict[str, float] = defaultdict(float)
        for token, logprob in pairs:
            probs[token] += math.exp(logprob)
        total = sum(probs.values())
        if total > 1.0 + RENORMALISE_TOLERANCE:
            raise self.error(field, f"reported probabilities sum to {total:.6g}, more than 1")
        if total > 1.0:
            probs = {token: p / total for token, p in probs.items()}
        return dict(probs)


# one generated or prompt position: the reader that names its line, its field, the entry itself
_Position = tuple[_Reader, str, Any]


class _Line(_Reader):
    """One response (a JSONL line, or the chunks of one stream): its request, its shape, and the rows it yields."""

    def __init__(self, file: str, number: int | None, record: Any, *, label: str | None = None,
                 need_logprobs: bool = True):  # fmt: skip
        super().__init__(file, number, label or f"line {number} (1-based)")
        if not isinstance(record, dict):
            raise self.error(None, f"is a JSON {type(record).__name__}, not an object")
        self.prefix = ""
        self.request: dict[str, Any] | None = None
        if "choices" not in record and "output" not in record and "response" in record:
            self.request = record.get("request") if isinstance(record.get("request"), dict) else None
            record, self.prefix = record["response"], "response."
            if (isinstance(record, dict) and "choices" not in record and "output" not in record
                    and isinstance(record.get("body"), dict)):  # fmt: skip
                record, self.prefix = record["body"], "response.body."
            if not isinstance(record, dict):
                raise self.error("response", "is not a JSON object")
        self.response = record
        # a stream's positions per choice, concatenated over its chunks (None: read them from the response)
        self.stream_positions: dict[int, list[_Position]] | None = None
        self.echo_length = 0
        if record.get("object") == "response" or ("output" in record and "choices" not in record):
            self.choices: list[Any] = []
            self.shape = self.format = "openai-responses"
            return
        self.choices = self.field_of(record, "choices", list, self.prefix + "choices")
        if not self.choices:
            raise self.error(self.prefix + "choices", "is empty")
        if need_logprobs or all(isinstance(choice, dict) and isinstance(choice.get("logprobs"), dict)
                                for choice in self.choices):  # fmt: skip
            shapes = {self.shape_of(index) for index in range(len(self.choices))}
            if len(shapes) > 1:
                raise self.error(self.prefix + "choices", "mixes chat and completions logprobs")
            self.shape: str | None = shapes.pop()
        else:  # prompt logprobs alone: the choices need not carry logprobs of their own
            self.shape = None
        has_prompt_logprobs = "prompt_logprobs" in record or any(
            isinstance(choice, dict) and "prompt_logprobs" in choice for choice in self.choices
        )
        self.format = "vllm" if has_prompt_logprobs else self.shape
        if self.shape == "openai-completions":
            self.echo_length = self.echoed_prompt_length()

    @classmethod
    def from_text(cls, file: str, number: int, text: str) -> _Line:
        return cls(file, number, _Reader(file, number, f"line {number} (1-based)").parse(text))

    def logprobs_of(self, index: int) -> dict[str, Any]:
        field = f"{self.prefix}choices[{index}].logprobs"
        choice = self.choices[index]
        if not isinstance(choice, dict) or choice.get("logprobs") is None:
            raise self.error(field, "is missing (request logprobs with top_logprobs)")
        return self.field_of(choice, "logprobs", dict, field)

    def shape_of(self, index: int) -> str:
        logprobs = self.logprobs_of(index)
        if "content" in logprobs:
            return "openai-chat"
        if "top_logprobs" in logprobs:
            return "openai-completions"
        raise self.error(f"{self.prefix}choices[{index}].logprobs",
                         "has neither 'content' (chat) nor 'top_logprobs' (completions)")

    def completions_lists(self, index: int) -> tuple[list[Any], list[Any]]:
        """Choice ``index``'s ``tokens`` and ``top_logprobs``, checked to be lists of one length."""
        field = f"{self.prefix}choices[{index}].logprobs"
        logprobs = self.logprobs_of(index)
        tokens = self.field_of(logprobs, "tokens", list, f"{field}.tokens")
        top = self.field_of(logprobs, "top_logprobs", list, f"{field}.top_logprobs")
        if len(tokens) != len(top):
            raise self.error(f"{field}.top_logprobs", f"has {len(top)} entries but tokens has {len(tokens)}")
        return tokens, top

    def echoed_prompt_length(self) -> int:
        """How many of each choice's tokens echo the prompt (0: not echoed).

        An echoed completion marks itself by a null first entry; the tokens after the prompt's are
        the generated ones, which ``usage.completion_tokens`` counts (summed over the choices).
        """
        lists = [self.completions_lists(index) for index in range(len(self.choices))]
        echoed = [bool(top) and top[0] is None for _, top in lists]
        if not any(echoed):
            return 0
        first_null = f"{self.prefix}choices[{echoed.index(True)}].logprobs.top_logprobs[0]"
        if not all(echoed):
            raise self.error(f"{self.prefix}choices", "mixes echoed choices (top_logprobs[0] null) and others")
        usage = self.response.get("usage")
        completion_tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        field = f"{self.prefix}usage.completion_tokens"
        if completion_tokens is None:
            raise self.error(field, "is missing: an echoed completion (top_logprobs[0] null) needs it to tell the "
                                    "prompt's tokens from the generated ones")  # fmt: skip
        if isinstance(completion_tokens, bool) or not isinstance(completion_tokens, int) or completion_tokens < 0:
            raise self.error(field, f"is {json.dumps(completion_tokens)}, expected a whole number >= 0")
        lengths = [len(tokens) for tokens, _ in lists]
        length, remainder = divmod(sum(lengths) - completion_tokens, len(lists))
        if remainder or not 1 <= length <= min(lengths):
            per_choice = (sum(lengths) - completion_tokens) / len(lists)
            raise self.error(first_null, f"is null (an echoed prompt's first token), but usage.completion_tokens = "
                                         f"{completion_tokens} leaves {per_choice:g} prompt tokens of the "
                                         f"{min(lengths)} a choice lists")  # fmt: skip
        prompt_tokens = lists[0][0][:length]
        for index, (tokens, _) in enumerate(lists[1:], start=1):
            if tokens[:length] != prompt_tokens:
                raise self.error(f"{self.prefix}choices[{index}].logprobs.tokens",
                                 "echoes another prompt than choices[0] (a batch of prompts?): echoed prompts are "
                                 "read one prompt per request")  # fmt: skip
        return length

    # --- rows ----------------------------------------------------------------

    def generated_rows(self, all_positions: bool) -> Iterator[tuple[str, dict[str, float]]]:
        if self.shape == "openai-responses":
            yield from _entry_rows(self.responses_positions(), self.request_prompt(0), all_positions)
            return
        for index in range(len(self.choices)):
            prompt = self.request_prompt(index)
            if self.shape == "openai-chat":
                yield from _entry_rows(self.chat_positions(index), prompt, all_positions)
                continue
            field = f"{self.prefix}choices[{index}].logprobs"
            tokens, top = self.completions_lists(index)
            start = self.echo_length
            if self.request is None:  # an echoed prompt is its own record of the prompt
                prompt = "".join(self.token_text(tokens, t, f"{field}.tokens[{t}]") for t in range(start))
            for t in range(start, len(top) if all_positions else min(start + 1, len(top))):
                where = f"{field}.top_logprobs[{t}]"
                entry = top[t]
                if entry is None:
                    raise self.error(where, "is null (only an echoed prompt's first token has no logprobs)")
                yield prompt, self.row_probs(self.completions_pairs(entry, where), where)
                prompt += self.token_text(tokens, t, f"{field}.tokens[{t}]")

    def chat_positions(self, index: int) -> list[_Position]:
        if self.stream_positions is not None:
            return self.stream_positions[index]
        field = f"{self.prefix}choices[{index}].logprobs.content"
        content = self.field_of(self.logprobs_of(index), "content", list, field)
        return [(self, f"{field}[{t}]", entry) for t, entry in enumerate(content)]

    def responses_positions(self) -> list[_Position]:
        """The Responses API's output_text positions, in order over the output's messages and their parts."""
        output = self.field_of(self.response, "output", list, f"{self.prefix}output")
        positions: list[_Position] = []
        for i, item in enumerate(output):
            if not isinstance(item, dict):
                raise self.error(f"{self.prefix}output[{i}]", f"is a {type(item).__name__}, expected an object")
            if item.get("type") != "message":  # reasoning, tool calls: no logprobs
                continue
            content = self.field_of(item, "content", list, f"{self.prefix}output[{i}].content")
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "output_text":  # a refusal
                    continue
                field = f"{self.prefix}output[{i}].content[{j}].logprobs"
                if part.get("logprobs") is None:
                    raise self.error(field, 'is missing (request include=["message.output_text.logprobs"] and '
                                            "top_logprobs)")  # fmt: skip
                logprobs = self.field_of(part, "logprobs", list, field)
                positions += [(self, f"{field}[{t}]", entry) for t, entry in enumerate(logprobs)]
        return positions

    def completions_pairs(self, entry: Any, where: str) -> list[tuple[str, float]]:
        if not isinstance(entry, dict):
            raise self.error(where, f"is a {type(entry).__name__}, expected a {{token: logprob}} object")
        return [(token, self.logprob(entry, f"{where}[{json.dumps(token)}]", key=token)) for token in entry]

    def prompt_logprobs_of(self, index: int) -> tuple[str, list[Any]] | None:
        """vLLM's prompt_logprobs for choice ``index`` (top level for chat, per choice for completions)."""
        field, entries = f"{self.prefix}prompt_logprobs", self.response.get("prompt_logprobs")
        if entries is None:
            choice = self.choices[index] if index < len(self.choices) else None
            field = f"{self.prefix}choices[{index}].prompt_logprobs"
            entries = choice.get("prompt_logprobs") if isinstance(choice, dict) else None
        if entries is None:
            return None
        if not isinstance(entries, list):
            raise self.error(field, f"is a {type(entries).__name__}, expected a list")
        return field, entries

    def prompt_positions(self, index: int) -> list[tuple[str | None, list[tuple[str, float]] | None, str]] | None:
        """Choice ``index``'s prompt tokens as (text, reported pairs, field); None where unknown or unreported.

        vLLM's prompt_logprobs list the prompt token itself first, then the top-k (an entry of k
        tokens when the prompt token is among them, keyed by token id so it counts once). An
        echoed completion lists the same for its first ``echo_length`` tokens, keyed by text. With
        both, the logprobs come from prompt_logprobs and the texts from the echo. Returns None when
        the response reports no prompt positions.
        """
        source = self.prompt_logprobs_of(index)
        echo_texts: list[str] | None = None
        if self.echo_length:
            tokens, top = self.completions_lists(index)
            field = f"{self.prefix}choices[{index}].logprobs"
            echo_texts = [self.token_text(tokens, t, f"{field}.tokens[{t}]") for t in range(self.echo_length)]
        if source is not None:
            field, entries = source
            positions: list[tuple[str | None, list[tuple[str, float]] | None, str]] = []
            for t, entry in enumerate(entries):
                where = f"{field}[{t}]"
                if entry is None:  # the first prompt token has no distribution
                    positions.append((None, None, where))
                    continue
                if not isinstance(entry, dict) or not entry:
                    raise self.error(where, "expected a non-empty {token_id: {logprob, rank, decoded_token}} object")
                pairs = [
                    (self.field_of(candidate, "decoded_token", str, f"{where}[{json.dumps(token_id)}].decoded_token"),
                     self.logprob(candidate, f"{where}[{json.dumps(token_id)}].logprob"))
                    for token_id, candidate in entry.items()
                ]  # fmt: skip
                positions.append((pairs[0][0], pairs, where))
            if echo_texts is not None:
                if len(echo_texts) != len(positions):
                    raise self.error(field, f"has {len(positions)} entries, but the echoed prompt has "
                                            f"{len(echo_texts)} tokens")  # fmt: skip
                positions = [(text, pairs, where) for text, (_, pairs, where) in zip(echo_texts, positions)]
            return positions
        if echo_texts is None:
            return None
        field = f"{self.prefix}choices[{index}].logprobs.top_logprobs"
        _, top = self.completions_lists(index)
        return [
            (text, None if top[t] is None else self.completions_pairs(top[t], f"{field}[{t}]"), f"{field}[{t}]")
            for t, text in enumerate(echo_texts)
        ]

    def prompt_rows(self) -> Iterator[tuple[str, dict[str, float]]]:
        """Rows for the prompt positions; n choices of one prompt repeat them, so identical lists count once."""
        seen: list[list[Any]] = []
        for index in range(len(self.choices)):
            positions = self.prompt_positions(index)
            if positions is None:
                continue
            key = [(text, pairs) for text, pairs, _ in positions]
            if key in seen:
                continue
            seen.append(key)
            prefix = ""  # an unknown first token (a null prompt_logprobs entry without an echo) is left out
            for text, pairs, where in positions:
                if pairs is not None:
                    yield prefix, self.row_probs(pairs, where)
                prefix += text or ""

    def request_prompt(self, index: int) -> str:
        """The request's prompt text for choice ``index``, or "" when the line carries no request."""
        if self.request is None:
            return ""
        if "messages" in self.request:
            messages = self.field_of(self.request, "messages", list, "request.messages")
            lines = [self.render_message(message, f"request.messages[{i}]") for i, message in enumerate(messages)]
            return "\n".join([*lines, "assistant: "])
        if "input" in self.request:  # the Responses API: instructions, then a text or a list of messages
            lines = []
            if isinstance(self.request.get("instructions"), str):
                lines.append(f"system: {self.request['instructions']}")
            given = self.request["input"]
            if isinstance(given, str):
                lines.append(f"user: {given}")
            elif isinstance(given, list):
                lines += [self.render_message(message, f"request.input[{i}]") for i, message in enumerate(given)]
            else:
                raise self.error("request.input", f"is a {type(given).__name__}, expected text or a list of messages")
            return "\n".join([*lines, "assistant: "])
        if "prompt" not in self.request:
            return ""
        prompt = self.request["prompt"]
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            # a batch of prompts: choices come n per prompt, in order
            n = self.request.get("n") or 1
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise self.error("request.n", f"is {json.dumps(n)}, expected a whole number >= 1")
            if index // n >= len(prompt):
                raise self.error("request.prompt", f"has {len(prompt)} prompts, too few for choice {index}")
            return prompt[index // n]
        raise self.error("request.prompt", "is not text (token-id prompts are not supported)")

    def render_message(self, message: Any, field: str) -> str:
        role = self.field_of(message, "role", str, f"{field}.role")
        content = message.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list):  # content parts: keep the text, name the rest
            content = "".join(
                str(part.get("text", "")) if part.get("type") in ("text", "input_text", "output_text")
                else f"[{part.get('type')}]"
                for part in content
                if isinstance(part, dict)
            )  # fmt: skip
        elif not isinstance(content, str):
            raise self.error(f"{field}.content", f"is a {type(content).__name__}, expected text")
        return f"{role}: {content}"


def _entry_rows(positions: list[_Position], prompt: str, all_positions: bool) -> Iterator[tuple[str, dict[str, float]]]:
    """Rows of chat-like positions (``token``, ``logprob``, ``top_logprobs``), each prompt the one before plus its token."""
    for reader, where, entry in positions[: None if all_positions else 1]:
        yield prompt, reader.row_probs(reader.chat_pairs(entry, where), f"{where}.top_logprobs")
        prompt += reader.field_of(entry, "token", str, f"{where}.token")


def _stream_lines(file: str, lines: list[tuple[int, str]]) -> list[_Line]:
    """A server-sent-event log -> one :class:`_Line` per stream (chat chunks grouped by id) or completed response."""
    streams: dict[Any, dict[str, Any]] = {}
    responses: list[tuple[int, _Line]] = []
    for number, text in lines:
        reader = _Reader(file, number, f"line {number} (1-based)")
        stripped = text.strip()
        name, colon, value = stripped.partition(":")
        if stripped.startswith(":") or name in ("event", "id", "retry"):  # a comment or another event field
            continue
        if name != "data" or not colon:
            raise reader.error(None, "is not a server-sent event line (data: ...), in a file whose first line is")
        value = value.strip()
        if value == "[DONE]":
            continue
        chunk = reader.parse(value)
        if not isinstance(chunk, dict):
            raise reader.error(None, f"is a JSON {type(chunk).__name__}, not an object")
        event = chunk.get("type")
        if isinstance(event, str) and event.startswith("response."):  # a Responses API stream
            if event == "response.completed":  # the whole response, logprobs included
                responses.append((number, _Line(file, number, chunk)))
            continue
        # chat chunks, and llama.cpp's completions chunks, whose logprobs are chat-shaped
        if chunk.get("object") not in ("chat.completion.chunk", "text_completion"):
            raise reader.error("object", f"is {json.dumps(chunk.get('object'))}; streams are read as "
                                         "chat.completion.chunk lines or Responses API events")  # fmt: skip
        stream = streams.setdefault(json.dumps(chunk.get("id")), {"line": number, "model": None, "choices": {}})
        if isinstance(chunk.get("model"), str):
            stream["model"] = chunk["model"]
        for k, choice in enumerate(reader.field_of(chunk, "choices", list, "choices")):  # [] in a usage chunk
            if not isinstance(choice, dict):
                raise reader.error(f"choices[{k}]", f"is a {type(choice).__name__}, expected an object")
            index = choice.get("index", k)
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise reader.error(f"choices[{k}].index", f"is {json.dumps(index)}, expected a whole number >= 0")
            positions = stream["choices"].setdefault(index, [])
            logprobs = choice.get("logprobs")  # null in the last chunk
            if logprobs is None:
                continue
            if not isinstance(logprobs, dict):
                raise reader.error(f"choices[{k}].logprobs", f"is a {type(logprobs).__name__}, expected an object")
            content = logprobs.get("content")  # [] in the first chunk, null beside a refusal
            if content is None and "top_logprobs" in logprobs:
                raise reader.error(f"choices[{k}].logprobs", "is a legacy completions chunk (tokens, top_logprobs): "
                                                             "streamed legacy completions are not read; log the "
                                                             "responses unstreamed")  # fmt: skip
            if content is None:
                continue
            if not isinstance(content, list):
                raise reader.error(f"choices[{k}].logprobs.content", f"is a {type(content).__name__}, expected a list")
            positions += [(reader, f"choices[{k}].logprobs.content[{t}]", entry) for t, entry in enumerate(content)]
    for key, stream in streams.items():
        if not stream["choices"]:  # only usage chunks
            continue
        indices = sorted(stream["choices"])
        record = {"id": json.loads(key), "object": "chat.completion", "model": stream["model"],
                  "choices": [{"index": i, "logprobs": {"content": []}} for i in indices]}  # fmt: skip
        line = _Line(file, stream["line"], record, label=f"the stream starting at line {stream['line']} (1-based)")
        line.stream_positions = {k: stream["choices"][i] for k, i in enumerate(indices)}
        line.format = "openai-chat-stream"
        responses.append((stream["line"], line))
    return [line for _, line in sorted(responses, key=lambda pair: pair[0])]


def _is_event_stream(lines: list[tuple[int, str]]) -> bool:
    return lines[0][1].lstrip().startswith(("data:", "event:", ":"))


def prompt_position_logprobs(response: dict, *, file: str, row: int) -> list[dict[str, float] | None]:
    """What a completions response reports at each PROMPT position: one entry per prompt token.

    ``response`` is the response body (an echoed completion, ``echo=true`` with ``logprobs``, or
    one with vLLM's ``prompt_logprobs``; the first choice is read, n choices of one prompt share
    it). Each entry is a dict token text -> logprob of the tokens the server reported at that
    position: the prompt token itself and the top-k (vLLM and an echo report k + 1 tokens, k when
    the prompt token is among the top-k; it is counted once). Tokens of equal text are combined
    (their probabilities summed). An entry is None where nothing was reported: the first token.
    Logprobs -9999 and -inf stay as given (probability 0). A response that reports no prompt
    positions, or a malformed one, raises :class:`InputError` naming ``file``, the field and ``row``.
    """
    line = _Line(file, row, response, label=f"response {row}", need_logprobs=False)
    positions = line.prompt_positions(0)
    if positions is None:
        raise line.error("choices[0].logprobs", "reports no prompt positions: request echo=true with logprobs, or "
                                                "vLLM's prompt_logprobs")  # fmt: skip
    entries: list[dict[str, float] | None] = []
    for _, pairs, where in positions:
        if pairs is None:
            entries.append(None)
            continue
        line.row_probs(pairs, where)  # the checks of an imported row: not empty, not above 1
        combined: dict[str, float] = {}
        for token, logprob in pairs:
            combined[token] = float(np.logaddexp(combined[token], logprob)) if token in combined else logprob
        entries.append(combined)
    return entries


def prompt_tokens_of(response: dict, *, prompt: str | None = None, file: str = "<response>",
                     row: int | None = None) -> list[str]:  # fmt: skip
    """The prompt's token texts as the server returned them, one per entry of :func:`prompt_position_logprobs`.

    An echoed completion lists them all (``logprobs.tokens``; a server may decode a BOS token as
    text, e.g. ``"<s>"``, or leave it out). vLLM's ``prompt_logprobs`` name each token but the
    first (its entry is null): without an echo the first token is what ``prompt`` (the prompt
    sent) holds before the other tokens' text, and an :class:`InputError` when no ``prompt`` is
    given or it does not end with that text.
    """
    line = _Line(file, row, response, label="response" if row is None else f"response {row}", need_logprobs=False)
    positions = line.prompt_positions(0)
    if positions is None:
        raise line.error("choices[0].logprobs", "reports no prompt positions: request echo=true with logprobs, or "
                                                "vLLM's prompt_logprobs")  # fmt: skip
    texts = [text for text, _, _ in positions]
    for t, (text, _, where) in enumerate(positions):
        if text is not None:
            continue
        rest = "".join(texts[t + 1:]) if all(other is not None for other in texts[t + 1:]) else None
        if t == 0 and prompt is not None and rest is not None and prompt.endswith(rest):
            texts[0] = prompt[: len(prompt) - len(rest)]
        else:
            raise line.error(where, "is null, so this prompt token's text is unknown: request echo=true as well, "
                                    "or give the prompt sent")  # fmt: skip
    return [str(text) for text in texts]


def _read_bytes(path: Path, file: str) -> bytes:
    return check_input_file(path).read_bytes()  # a FIFO is refused, not read until it closes


def _decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise InputError(f"line {line} (1-based) is not UTF-8 text (byte {error.start}, column {column} of the line)",
                         file=file, row=line) from None  # fmt: skip


def _read_text(path: Path, file: str) -> str:
    return _decode(_read_bytes(path, file), file)
