"""The text files a log is built from: column files (the categories of an LLM log, one per line, read by
``bayesmatrix log`` and ``import``) and prompt files (the prompts a log is read for, one per line or JSONL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bayesmatrix.data.atomic import check_input_file
from bayesmatrix.data.catalog import resolve
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER


def read_text(path: str | os.PathLike, field: str) -> str:
    """A UTF-8 text file, or an InputError naming it."""
    p = check_input_file(path, field)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", file=str(path), field=field) from None


def read_columns(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Column labels from a file, as (line number, label), line numbers 1-based.

    Each line is taken verbatim except its line ending, so the token ``" Paris"``
    with its leading space is the line `` Paris``. A line starting with ``"`` is
    a JSON string instead (``" Paris"`` written with its quotes), which makes
    leading and trailing spaces and special characters visible. Empty lines are
    skipped. ``<other>`` (reserved for the remaining mass), duplicates and a file
    without labels are errors naming the line.
    """
    file = str(path)
    labels: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_text(path, "columns").split("\n"), start=1):
        line = line.removesuffix("\r")
        if line == "":
            continue
        label = line
        if line.startswith('"'):
            try:
                label = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"line {number} is not a JSON string ({error.msg})", file=file,
                                 field="columns", row=number) from None
            if not isinstance(label, str):
                raise InputError(f"line {number} is not a JSON string", file=file, field="columns", row=number)
        if label == OTHER:
            raise InputError(f"line {number}, category {label!r} is reserved for the remaining mass", file=file,
                             field="columns", row=number)
        if label in first_line:
            raise InputError(f"line {number}, category {label!r} appears twice (first on line {first_line[label]})",
                             file=file, field="columns", row=number)
        first_line[label] = number
        labels.append((number, label))
    if not labels:
        raise InputError("no column labels (the file is empty)", file=file, field="columns")
    return labels


def read_prompts(path: os.PathLike | str) -> list[str]:
    """Prompts from a file: one per line (verbatim, blank lines skipped), or JSONL with a ``prompt`` field.

    JSONL is recognised by a ``.jsonl`` extension or a first non-blank character ``{``. ``path`` may be
    the shipped corpus's name, ``"corpus:prompts"`` (``bayesmatrix.data.catalog``).
    """
    path = resolve(path, field="prompts")
    file = str(path)
    text = read_text(path, "prompts")
    lines = text.split("\n")
    jsonl = Path(path).suffix == ".jsonl" or text.lstrip().startswith("{")
    prompts = []
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if jsonl:
            try:
                record = json.loads(line)
            except ValueError as error:
                raise InputError(f"line {number} is not JSON ({error.msg})", file=file, field="prompt") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise InputError(f"line {number} has no string field 'prompt'", file=file, field="prompt")
            line = record["prompt"]
        prompts.append(line)
    if not prompts:
        raise InputError("no prompts (the file is empty)", file=file, field="prompt")
    return prompts
