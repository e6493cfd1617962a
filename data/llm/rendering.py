"""Token-level rendering: where an ICL task's observations sit among the tokens, prompt and column tokens.

A causal LM's output at a token depends only on the tokens up to it, so one
rendering of an episode gives the predictives after 0, 1, ..., K observations,
read at the token just before each observation's own token.
"""

from __future__ import annotations

from typing import Sequence

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llm.loading import LoadedModel, _context_limit
from bayesmatrix.data.llmlog import OTHER
from bayesmatrix.data.tasks import Task


def task_column_ids(tokenizer, task: Task) -> list[int]:
    """The token id of each category, as the task's rendering produces it.

    Renders every category once and places them with the tokenizer's character
    offsets; a category that is not exactly one token there, or two categories
    sharing a token, is an :class:`InputError`.
    """
    probe = list(range(len(task.categories)))
    token_ids, positions = _place_observations(tokenizer, task, probe)
    ids = [token_ids[p] for p in positions]
    for c, i in enumerate(ids):
        if _is_unknown(tokenizer, i, task.categories[c]):
            raise _task_error(task, f"category {task.categories[c]!r} is not in the vocabulary")
        if ids.index(i) != c:
            raise _task_error(
                task,
                f"categories {task.categories[ids.index(i)]!r} and {task.categories[c]!r} "
                "render as the same token with this tokenizer",
            )
    return ids


def _place_observations(tokenizer, task: Task, observations: Sequence[int]) -> tuple[list[int], list[int]]:
    """Tokenise the rendering; return its token ids and the token index of each observation.

    Each observation's symbol must be exactly one token that starts no earlier
    than the observation's piece and ends with the symbol (so ``" H"`` but not
    ``", H"`` or ``" H,"``); otherwise the prediction for it could not be read.
    """
    text, spans = task.render(observations)
    encoded = tokenizer(text, return_offsets_mapping=True)
    token_ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    positions = []
    for k, span in enumerate(spans):
        overlapping = [
            t for t, (start, end) in enumerate(offsets) if start < span.symbol_end and end > span.symbol_start
        ]
        good = len(overlapping) == 1
        if good:
            start, end = offsets[overlapping[0]]
            good = span.piece_start <= start <= span.symbol_start and end == span.symbol_end and overlapping[0] > 0
        if not good:
            pieces = [tokenizer.decode([token_ids[t]]) for t in overlapping]
            category = task.categories[observations[k]]
            raise _task_error(
                task,
                f"observation {k} ({category!r}) in {text!r} is tokenised as {pieces!r}, "
                "not as one token of its own; this tokenizer cannot be read at that observation",
            )
        positions.append(overlapping[0])
    return token_ids, positions


def episode_tokens(loaded: LoadedModel, task: Task, observations: Sequence[int], column_ids: Sequence[int]):
    """Token ids of one episode's prompt and the K + 1 positions its predictives are read at.

    Position ``k`` is the token just before observation ``k``; position ``K``
    is the token before a further observation (rendered, then cut off: a causal
    LM's output there does not depend on what follows).
    """
    observations = list(observations)
    token_ids, positions = _place_observations(loaded.tokenizer, task, observations + [0])
    for k, (position, category) in enumerate(zip(positions[:-1], observations)):
        if token_ids[position] != column_ids[category]:
            raise _task_error(
                task,
                f"observation {k} renders as token {token_ids[position]}, "
                f"not {column_ids[category]} as category {task.categories[category]!r} did alone",
            )
    read_at = [p - 1 for p in positions]
    return token_ids[: read_at[-1] + 1], read_at


def prompt_tokens(loaded: LoadedModel, prompts: Sequence[str], file: str | None = None) -> list[list[int]]:
    """Token ids of each prompt (with the tokenizer's special tokens); empty or over-long prompts are errors."""
    if not prompts:
        raise InputError("no prompts", file=file, field="prompt")
    limit = _context_limit(loaded)
    tokenized = []
    for row, prompt in enumerate(prompts):
        ids = loaded.tokenizer(prompt)["input_ids"]
        if not ids:
            raise InputError("encodes to no tokens", file=file, field="prompt", row=row)
        if limit is not None and len(ids) > limit:
            raise InputError(f"has {len(ids)} tokens, over the model's context of {limit}", file=file,
                             field="prompt", row=row)
        tokenized.append(ids)
    return tokenized


def column_token_ids(tokenizer, categories: Sequence[tuple[int | None, str]], file: str | None = None) -> list[int]:
    """The token id of each (line, category); each must encode to exactly one token, all distinct."""
    ids: list[int] = []
    first_line: dict[int, tuple[int | None, str]] = {}
    for number, category in categories:
        where = f"line {number}, " if number is not None else ""
        if category == OTHER:
            raise InputError(f"{where}category {category!r} is reserved for the remaining mass", file=file,
                             field="columns")
        encoded = tokenizer.encode(category, add_special_tokens=False)
        if len(encoded) != 1:
            pieces = [tokenizer.decode([i]) for i in encoded]
            raise InputError(
                f"{where}category {category!r} encodes to {len(encoded)} tokens {pieces!r}, not exactly one",
                file=file, field="columns",
            )
        token = encoded[0]
        if _is_unknown(tokenizer, token, category):
            raise InputError(f"{where}category {category!r} is not in the vocabulary", file=file, field="columns")
        if token in first_line:
            other_line, other = first_line[token]
            same = f"line {other_line}" if other_line is not None else repr(other)
            raise InputError(f"{where}category {category!r} is the same token as {same} ({other!r})", file=file,
                             field="columns")
        first_line[token] = (number, category)
        ids.append(token)
    return ids


def _task_error(task: Task, message: str) -> InputError:
    """A category this tokenizer cannot render: the task file's ``categories`` key, or the task by name."""
    if task.source is not None:
        return InputError(f"task {task.name!r}: {message}", file=task.source, field="categories")
    return InputError(f"task {task.name!r}: {message}", field="task")


def _is_unknown(tokenizer, token: int, text: str) -> bool:
    """Whether ``text`` became the unknown token (word-level vocabularies map any new word to it)."""
    unknown = tokenizer.unk_token_id
    return unknown is not None and token == unknown and text.strip() != tokenizer.unk_token


def _column_labels(tokenizer, ids: Sequence[int]) -> list[str]:
    """Decoded tokens as column labels; a label two tokens share (or ``<other>``) gets its id appended."""
    labels = [tokenizer.decode([i]) for i in ids]
    clashing = {label for label in labels if labels.count(label) > 1 or label == OTHER}
    return [f"{label}#{i}" if label in clashing else label for label, i in zip(labels, ids)]
