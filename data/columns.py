"""Column files: the categories of an LLM log, one per line (read by ``bayesmatrix log`` and ``import``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bayesmatrix.data.atomic import check_input_file
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
