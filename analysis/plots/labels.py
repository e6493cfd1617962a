"""Labels that read in a figure, for word categories (``" north"``) as well as letters (``" H"``).

A log's columns are the exact tokens the model reads, often with a leading
space; a figure shows them stripped. Observations are joined with spaces when
any of them is longer than one character (``north south east``) and run
together when all are letters (``HTHH``). ArviZ's figures get a labeller that
writes ``alpha[north]`` on one line, so a title never climbs into the tick
labels of the panel above.
"""

from __future__ import annotations

import re

from arviz_base.labels import BaseLabeller

_SPACE_AFTER_BRACKET = re.compile(r"([(\[])\s+")


def readable(label: object) -> str:
    """A column label, variable name or token for a figure: outer whitespace gone, ``p( north)`` as ``p(north)``."""
    return _SPACE_AFTER_BRACKET.sub(r"\1", str(label).strip())


def joined(observations: list[str]) -> str:
    """Observations as one string: spaced when any is a word, run together when all are single characters."""
    words = [readable(o) for o in observations]
    separator = " " if any(len(w) > 1 for w in words) else ""
    return separator.join(words)


def recent(observations: list[str], width: int = 24) -> str:
    """The latest observations that fit in ``width`` characters, ``…`` first when some are left out."""
    if not observations:
        return "(none)"
    text = joined(observations)
    if len(text) <= width:
        return text
    words = [readable(o) for o in observations]
    separator = " " if any(len(w) > 1 for w in words) else ""
    kept: list[str] = []
    for word in reversed(words):
        if len(separator.join([word, *kept])) + 1 > width and kept:
            break
        kept.insert(0, word)
    return "…" + separator + separator.join(kept)


class OneLineLabeller(BaseLabeller):
    """ArviZ labels on one line (``alpha[north]``), coordinates without their tokens' spaces."""

    def dim_coord_to_str(self, dim, coord_val, coord_idx):
        return readable(coord_val)

    def var_name_to_str(self, var_name):
        return None if var_name is None else readable(var_name)

    def make_label_vert(self, var_name, sel, isel):
        return self.make_label_flat(var_name, sel, isel)
