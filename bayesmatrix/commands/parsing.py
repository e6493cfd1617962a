"""Option strings the commands share, parsed into the typed values the library takes.

Only the command line parses strings such as ``"2,1,0.5"``; a bad one is an
:class:`~bayesmatrix.data.errors.InputError` on the option's ``dest``, which the
CLI shows as the flag the user typed.
"""

from __future__ import annotations

from pathlib import Path

from bayesmatrix.data.errors import InputError


def parse_floats(text: str, field: str) -> tuple[float, ...]:
    """``"1,2.5"`` -> ``(1.0, 2.5)``; anything else is an :class:`InputError` on ``field``."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of numbers", field=field) from None


def parse_labels(spec: str, field: str = "labels") -> tuple[str, ...]:
    """Labels given as an existing file (one label per line) or as ``a,b,c``.

    Labels are stripped of surrounding whitespace (a task's rendering supplies
    the space before each one); blank lines are skipped; duplicates and fewer
    than two labels are errors naming the file and line (or the label's place).
    """
    path = Path(spec)
    if path.is_file():
        file = str(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        labels = [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
        if not labels:
            raise InputError("no labels (the file is empty)", file=file, field=field)
    else:
        file = None
        labels = [(number, part.strip()) for number, part in enumerate(spec.split(","), start=1)]
        empty = [number for number, label in labels if not label]
        if empty:
            raise InputError(f"label {empty[0]} of {spec!r} is empty", field=field)
    seen: dict[str, int] = {}
    for number, label in labels:
        if label in seen:
            where = "line" if file else "label"
            raise InputError(f"{where} {number}: {label!r} repeats {where} {seen[label]}", file=file, field=field)
        seen[label] = number
    if len(labels) < 2:
        raise InputError("an ICL task needs at least two labels", file=file, field=field)
    return tuple(label for _, label in labels)
