"""Import logprob logs of OpenAI-compatible servers (OpenAI, vLLM) as LLM logs.

Input: a JSONL file, one response per line, either the response body itself or
a wrapper ``{"request": {...}, "response": {...}}`` (the OpenAI Batch output
``{"response": {"body": {...}}}`` works too). Blank lines are skipped. Three
shapes are read:

- ``openai-chat``: ``choices[i].logprobs.content[t]`` holds the generated
  ``token``, its ``logprob`` and ``top_logprobs``, a list of
  ``{"token", "logprob", "bytes"}``;
- ``openai-completions`` (legacy): ``choices[i].logprobs`` holds ``tokens``,
  ``token_logprobs``, ``text_offset`` and ``top_logprobs``, a list of
  ``{token: logprob}`` dicts; echoed prompts (``echo=true``, whose entries
  are ``null``) are not supported;
- ``vllm``: either shape plus ``prompt_logprobs`` (top level for chat, per
  choice for completions): one entry per prompt token, ``null`` for the first,
  else ``{token_id: {"logprob", "rank", "decoded_token"}}``. vLLM puts the
  prompt token itself first in each entry, followed by the top-k.

``auto`` decides per line: ``vllm`` when a ``prompt_logprobs`` field is
present, otherwise by the shape of ``logprobs``. A forced format rejects a line
of another shape (and ``vllm`` rejects a file that mixes the chat and the
completions shapes).

Rows
----
By default one row per choice (one per line for the usual ``n = 1``): the
distribution of its FIRST generated token. ``all_positions`` makes every
generated position a row. ``prompt_positions`` adds a row for each vLLM prompt
position after the first, placed before the line's generated rows.

Prompts
-------
The prompt of a generated row is the request's prompt (when the line carries
the request) followed by the generated text before that position (the
concatenated ``token`` strings). A completions request's ``prompt`` is used as
is; chat ``messages`` are rendered one per line as ``role: content``, followed
by ``assistant: ``. Without a request the prompt is just the generated prefix.
The prompt of a vLLM prompt-position row is the text of the prompt tokens
before it as vLLM decoded them; the first prompt token (whose entry is null)
is unknown and left out.

Columns and mass
----------------
Columns come from a given list (a column file: :func:`bayesmatrix.data.columns.read_columns`) or from ``topk``:
the union of every row's K most probable reported tokens (all reported tokens
when ``topk`` is None), ordered by total probability over the rows (largest
first), then by text. Within a row, a column's probability is ``exp(logprob)``
when the token is among that row's reported ``top_logprobs`` (the sum, when
two reported tokens have the same text), and 0 otherwise. A column that is not
reported in a row has an unknown true mass, at most the smallest reported
probability of that row: it goes to ``"<other>"``, together with all mass
outside the reported top-k, so ``<other> = 1 - sum(columns)``. A token whose
text is ``"<other>"`` is never a column. When a row's reported probabilities
sum above 1 by less than 1e-3 (rounding), they are divided by their sum; a
larger excess is an error.

APIs return token strings, not ids: ``col_token_id`` is -1 for every column,
and ``topk_ids``/``topk_logprobs`` are not stored. The log keeps ``probs`` and
``prompt``, and the attributes ``source_file`` (base name), ``source_sha256``,
``format`` and ``model`` (the responses' ``model`` fields; several are joined
with ",", none gives "unknown").

Errors are :class:`bayesmatrix.data.errors.InputError` naming the file, the field and the
line (1-based, as ``row``): malformed JSON, missing fields, non-finite or
positive log-probabilities, an empty file, no rows, a line in another format
than the forced one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import xarray as xr
from tqdm import tqdm

from bayesmatrix.data.atomic import check_input_file
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log

FORMATS = ("openai-chat", "openai-completions", "vllm")
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
    if prompt_positions and format in ("openai-chat", "openai-completions"):
        raise InputError(f"needs vLLM's prompt_logprobs: use the format vllm or auto, not {format}",
                         field="prompt_positions")

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
    for number, text in tqdm(lines, desc="import", unit="line", disable=not progress, delay=1.0, file=sys.stderr):
        line = _Line(file, number, text)
        line_format = line.format
        if format == "vllm":
            vllm_shape = vllm_shape or line.shape
            if line.shape != vllm_shape:
                raise line.error(f"{line.prefix}choices[0].logprobs",
                                 f"is {line.shape}-shaped, but earlier lines are {vllm_shape}-shaped")
        elif format != "auto" and line.shape != format:
            raise line.error(f"{line.prefix}choices[0].logprobs",
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
        raise InputError("no line has prompt_logprobs (ask vLLM for them)", file=file, field="prompt_logprobs")
    if not rows:
        raise InputError("no rows: no response has a generated token with top_logprobs", file=file, field="choices")

    labels = list(columns) if columns is not None else _top_columns(rows, topk)
    if not labels:
        raise InputError("no columns: no row reports a token other than <other>", file=file, field="top_logprobs")
    probs = np.array([[row.get(label, 0.0) for label in labels] for row in rows], dtype=np.float64)
    other = np.maximum(1.0 - probs.sum(axis=1, keepdims=True), 0.0)
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


class _Line:
    """One JSONL line: its response, request and shape, and the rows it yields."""

    def __init__(self, file: str, number: int, text: str):
        self.file, self.number = file, number
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise self.error(None, f"malformed JSON ({error.msg}, column {error.colno})") from None
        except RecursionError:
            raise self.error(None, "JSON nested too deeply to read") from None
        except ValueError as error:  # an integer of thousands of digits
            raise self.error(None, f"unreadable JSON ({str(error).splitlines()[0]})") from None
        if not isinstance(record, dict):
            raise self.error(None, f"is a JSON {type(record).__name__}, not an object")
        self.prefix = ""
        self.request: dict[str, Any] | None = None
        if "choices" not in record and "response" in record:
            self.request = record.get("request") if isinstance(record.get("request"), dict) else None
            record, self.prefix = record["response"], "response."
            if isinstance(record, dict) and "choices" not in record and isinstance(record.get("body"), dict):
                record, self.prefix = record["body"], "response.body."
            if not isinstance(record, dict):
                raise self.error("response", "is not a JSON object")
        self.response = record
        self.choices = self.field_of(record, "choices", list, self.prefix + "choices")
        if not self.choices:
            raise self.error(self.prefix + "choices", "is empty")
        shapes = {self.shape_of(index) for index in range(len(self.choices))}
        if len(shapes) > 1:
            raise self.error(self.prefix + "choices", "mixes chat and completions logprobs")
        self.shape = shapes.pop()
        has_prompt_logprobs = "prompt_logprobs" in record or any(
            isinstance(choice, dict) and "prompt_logprobs" in choice for choice in self.choices
        )
        self.format = "vllm" if has_prompt_logprobs else self.shape

    def error(self, field: str | None, what: str) -> InputError:
        return InputError(f"line {self.number} (1-based): {what}", file=self.file, field=field, row=self.number)

    def field_of(self, container: Any, key: str, kind: type | tuple[type, ...], field: str) -> Any:
        if not isinstance(container, dict) or container.get(key) is None:
            raise self.error(field, "is missing")
        value = container[key]
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(field, f"is a {type(value).__name__}, expected {names}")
        return value

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

    # --- rows ----------------------------------------------------------------

    def generated_rows(self, all_positions: bool) -> Iterator[tuple[str, dict[str, float]]]:
        for index in range(len(self.choices)):
            field = f"{self.prefix}choices[{index}].logprobs"
            logprobs = self.logprobs_of(index)
            prompt = self.request_prompt(index)
            if self.shape == "openai-chat":
                content = self.field_of(logprobs, "content", list, f"{field}.content")
                positions = [
                    (f"{field}.content[{t}]", entry) for t, entry in enumerate(content[: None if all_positions else 1])
                ]
                for where, entry in positions:
                    top = self.field_of(entry, "top_logprobs", list, f"{where}.top_logprobs")
                    pairs = []
                    for k, candidate in enumerate(top):
                        candidate_field = f"{where}.top_logprobs[{k}]"
                        pairs.append((
                            self.field_of(candidate, "token", str, f"{candidate_field}.token"),
                            self.logprob(candidate, f"{candidate_field}.logprob"),
                        ))
                    yield prompt, self.row_probs(pairs, f"{where}.top_logprobs")
                    prompt += self.field_of(entry, "token", str, f"{where}.token")
            else:
                tokens = self.field_of(logprobs, "tokens", list, f"{field}.tokens")
                top = self.field_of(logprobs, "top_logprobs", list, f"{field}.top_logprobs")
                if len(tokens) != len(top):
                    raise self.error(f"{field}.top_logprobs", f"has {len(top)} entries but tokens has {len(tokens)}")
                for t in range(len(top) if all_positions else min(1, len(top))):
                    where = f"{field}.top_logprobs[{t}]"
                    entry = top[t]
                    if entry is None:
                        raise self.error(where, "is null (echoed prompt positions are not supported)")
                    if not isinstance(entry, dict):
                        raise self.error(where, f"is a {type(entry).__name__}, expected a {{token: logprob}} object")
                    pairs = [(token, self.logprob(entry, f"{where}[{json.dumps(token)}]", key=token)) for token in entry]
                    yield prompt, self.row_probs(pairs, where)
                    if not isinstance(tokens[t], str):
                        raise self.error(f"{field}.tokens[{t}]", f"is a {type(tokens[t]).__name__}, expected text")
                    prompt += tokens[t]

    def prompt_rows(self) -> Iterator[tuple[str, dict[str, float]]]:
        """Rows for vLLM's prompt positions; completions repeat them per choice, so identical lists count once."""
        sources = [(f"{self.prefix}prompt_logprobs", self.response.get("prompt_logprobs"))]
        sources += [
            (f"{self.prefix}choices[{i}].prompt_logprobs", choice.get("prompt_logprobs"))
            for i, choice in enumerate(self.choices)
        ]
        seen: list[list[Any]] = []
        for field, entries in sources:
            if entries is None or entries in seen:
                continue
            if not isinstance(entries, list):
                raise self.error(field, f"is a {type(entries).__name__}, expected a list")
            seen.append(entries)
            prefix = ""
            for position, entry in enumerate(entries):
                where = f"{field}[{position}]"
                if entry is None:
                    continue  # the first prompt token has no distribution
                if not isinstance(entry, dict) or not entry:
                    raise self.error(where, "expected a non-empty {token_id: {logprob, rank, decoded_token}} object")
                pairs = []
                for token_id, candidate in entry.items():
                    candidate_field = f"{where}[{json.dumps(token_id)}]"
                    pairs.append((
                        self.field_of(candidate, "decoded_token", str, f"{candidate_field}.decoded_token"),
                        self.logprob(candidate, f"{candidate_field}.logprob"),
                    ))
                yield prefix, self.row_probs(pairs, where)
                prefix += pairs[0][0]  # vLLM lists the prompt token itself first

    def request_prompt(self, index: int) -> str:
        """The request's prompt text for choice ``index``, or "" when the line carries no request."""
        if self.request is None:
            return ""
        if "messages" in self.request:
            messages = self.field_of(self.request, "messages", list, "request.messages")
            lines = [self.render_message(message, f"request.messages[{i}]") for i, message in enumerate(messages)]
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
                str(part.get("text", "")) if part.get("type") == "text" else f"[{part.get('type')}]"
                for part in content
                if isinstance(part, dict)
            )
        elif not isinstance(content, str):
            raise self.error(f"{field}.content", f"is a {type(content).__name__}, expected text")
        return f"{role}: {content}"

    def logprob(self, container: Any, field: str, key: str = "logprob") -> float:
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
        if not math.isfinite(value):
            raise self.error(field, f"is {value}, not finite")
        if value > 0:
            raise self.error(field, f"is {value}, a log probability above 0")
        return float(value)

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
