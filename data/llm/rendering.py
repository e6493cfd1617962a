"""Token-level rendering: where an ICL task's observations sit among the tokens, prompt and column tokens.

A causal LM's output at a token depends only on the tokens up to it, so one
rendering of an episode gives the predictives after 0, 1, ..., K observations,
read at the token just before each observation's first token.

A category may be several tokens (README.md, "Logging", the multi-token rule):
its probability at a read position is the product of the next-token
probabilities of the tokens that spell it there. Where one category's tokens
are a prefix of another's, every category is extended by the first token of the
text that follows it (the comma of ``" {},"``), so that the events are disjoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER
from bayesmatrix.data.tasks import Task

if TYPE_CHECKING:  # loading imports torch; the server client renders chat tasks and names rules without it
    from bayesmatrix.data.llm.loading import LoadedModel

SINGLE_TOKEN = "single-token"
"""Every category is one token: its probability is that token's next-token probability."""
PRODUCT = "product"
"""A category's probability is the product of the next-token probabilities of its tokens."""
PRODUCT_WITH_FOLLOWING = "product-with-following"
"""As :data:`PRODUCT`, every category extended by the first token of the text after it (one was a prefix of
another)."""


class CategoryTokens(NamedTuple):
    """The tokens each category is read as, and the rule that made them (the log's ``category_rule``)."""

    tokens: tuple[tuple[int, ...], ...]
    """Per category, the token ids whose probabilities multiply into its probability (extension included)."""
    own: tuple[tuple[int, ...], ...]
    """Per category, the tokens that spell the category itself (without the extension)."""
    rule: str
    """:data:`SINGLE_TOKEN`, :data:`PRODUCT` or :data:`PRODUCT_WITH_FOLLOWING`."""


class EpisodeTokens(NamedTuple):
    """One episode's tokens and where its K + 1 predictives are read."""

    token_ids: list[int]
    """The tokens fed to the model (the rendering up to the last read, and for several-token tasks the tokens of
    the probe observation that follows it)."""
    read_at: list[int]
    """Token index of each read: the token just before observation ``k`` (``k = K``: before a probe)."""
    observed: list[int]
    """The category whose tokens follow each read in ``token_ids`` (the probe's category 0 at ``K``)."""
    prompts: list[str]
    """The exact text each predictive is read after (for a chat task, the rendered chat text)."""


def task_category_tokens(tokenizer, task: Task) -> CategoryTokens:
    """The tokens each category renders as in the task's context, checked to be stable, distinct and readable.

    Renders every category once in order and once in reverse order (under
    every framing level of a framed task); a category
    that tokenises differently in the two, merges with the text around it, is
    not in the vocabulary, or spells the same tokens as another is an
    :class:`InputError` (naming the task file's ``categories`` key).
    """
    if task.framing:
        # every framing level must read the categories as the same tokens, or the columns would mean different things
        found = [task_category_tokens(tokenizer, level) for level in task.framings()]
        for level, categories in zip(task.framings(), found):
            if categories != found[0]:
                raise _task_error(task, f"the categories render as other tokens under the framing "
                                        f"{dict(level.values)} than under {dict(task.framings()[0].values)}")
        return found[0]
    n = len(task.categories)
    found = []
    for order in (list(range(n)), list(range(n))[::-1]):
        token_ids, ranges, _, _ = _place_observations(tokenizer, task, order)
        own = {c: tuple(token_ids[start:stop]) for c, (start, stop) in zip(order, ranges)}
        following = {c: token_ids[stop] if stop < len(token_ids) else None for c, (_, stop) in zip(order, ranges)}
        found.append((own, following))
    (own, following), (own_reversed, following_reversed) = found
    for c in range(n):
        if own[c] != own_reversed[c]:
            raise _task_error(task, f"category {task.categories[c]!r} tokenises as {_pieces(tokenizer, own[c])} "
                                    f"in one place and {_pieces(tokenizer, own_reversed[c])} in another")
        for i in own[c]:
            if _is_unknown(tokenizer, i, task.categories[c]):
                raise _task_error(task, f"category {task.categories[c]!r} is not in the vocabulary")
    first_of = {}
    for c in range(n):
        if own[c] in first_of:
            raise _task_error(
                task,
                f"categories {task.categories[first_of[own[c]]]!r} and {task.categories[c]!r} "
                f"render as the same tokens {_pieces(tokenizer, own[c])} with this tokenizer",
            )
        first_of[own[c]] = c
    own_tokens = tuple(own[c] for c in range(n))
    prefixed = _prefix_pair(own_tokens)
    if prefixed is None:
        rule = SINGLE_TOKEN if all(len(t) == 1 for t in own_tokens) else PRODUCT
        return CategoryTokens(own_tokens, own_tokens, rule)
    # one category's tokens begin another's: extend every one by the token that follows it
    shorter, longer = (task.categories[c] for c in prefixed)
    follows = {following[c] for c in range(n)} | {following_reversed[c] for c in range(n)}
    if len(follows) != 1 or None in follows:
        raise _task_error(
            task,
            f"category {shorter!r} is a prefix of {longer!r} in tokens, and the observation format "
            f"{task.observation!r} has no text after the category that tokenises the same way every time, "
            "so their probabilities cannot be told apart",
        )
    (follow,) = follows
    extended = tuple(t + (follow,) for t in own_tokens)
    still = _prefix_pair(extended)
    if still is not None:
        raise _task_error(
            task,
            f"category {task.categories[still[0]]!r} followed by its next token is still a prefix of "
            f"{task.categories[still[1]]!r}, so their probabilities cannot be told apart",
        )
    return CategoryTokens(extended, own_tokens, PRODUCT_WITH_FOLLOWING)


def task_column_ids(tokenizer, task: Task) -> list[int]:
    """The token id of each category of a task whose categories are one token each (see :func:`task_category_tokens`)."""
    categories = task_category_tokens(tokenizer, task)
    if categories.rule != SINGLE_TOKEN:
        raise _task_error(task, "has categories of several tokens; read them with task_category_tokens")
    return [tokens[0] for tokens in categories.tokens]


def _prefix_pair(tokens: Sequence[tuple[int, ...]]) -> tuple[int, int] | None:
    """The first (a, b) with category a's tokens a proper prefix of b's, or None."""
    for a, short in enumerate(tokens):
        for b, long in enumerate(tokens):
            if a != b and len(short) < len(long) and long[: len(short)] == short:
                return a, b
    return None


def _pieces(tokenizer, ids: Sequence[int]) -> str:
    return repr([tokenizer.decode([i]) for i in ids])


def task_lead(tokenizer, task: Task) -> tuple[str | None, bool]:
    """The text before the observations (None: the task's own) and whether the tokenizer adds special tokens.

    A chat task renders its instruction and header as the user turn and
    opens the assistant turn, whose content the observations begin; the
    template writes the special tokens itself.
    """
    if not task.chat:
        return None, True
    if not getattr(tokenizer, "chat_template", None):
        message = f"task {task.name!r}: asks for the chat template, but this tokenizer has none"
        raise InputError(message, file=task.source, field="chat" if task.source is not None else "task")
    lead = tokenizer.apply_chat_template(
        [{"role": "user", "content": task.lead}], add_generation_prompt=True, tokenize=False
    )
    return lead, False


def _place_observations(tokenizer, task: Task, observations: Sequence[int]):
    """Tokenise the rendering; return its token ids, each observation's token range, the offsets and the text.

    Each observation's symbol must be whole tokens: the first starting no
    earlier than the observation's piece (so ``" H"`` but not ``", H"``), the
    last ending with the symbol (not ``" H,"``), and at least one token before
    it to read the prediction at.
    """
    lead, special = task_lead(tokenizer, task)
    text, spans = task.render(observations, lead)
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=special)
    token_ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    ranges = []
    for k, span in enumerate(spans):
        overlapping = [
            t for t, (start, end) in enumerate(offsets) if start < span.symbol_end and end > span.symbol_start
        ]
        good = bool(overlapping) and overlapping == list(range(overlapping[0], overlapping[-1] + 1))
        if good:
            start, end = offsets[overlapping[0]][0], offsets[overlapping[-1]][1]
            good = span.piece_start <= start <= span.symbol_start and end == span.symbol_end and overlapping[0] > 0
        if not good:
            pieces = [tokenizer.decode([token_ids[t]]) for t in overlapping]
            category = task.categories[observations[k]]
            raise _task_error(
                task,
                f"observation {k} ({category!r}) in {text!r} is tokenised as {pieces!r}, "
                "not as tokens of its own; this tokenizer cannot be read at that observation",
            )
        ranges.append((overlapping[0], overlapping[-1] + 1))
    return token_ids, ranges, offsets, text


def episode_tokens(loaded: LoadedModel, task: Task, observations: Sequence[int], categories: CategoryTokens):
    """Token ids of one episode, the K + 1 positions its predictives are read at, and the text before each.

    Read ``k`` is at the token just before observation ``k``; read ``K`` is
    before a further observation of category 0 (rendered; a causal LM's output
    there does not depend on what follows). For single-token categories the
    tokens end at the last read, as they always have; otherwise the probe's
    tokens stay, since they give category 0's later factors at read ``K``.
    Every observation must render as the tokens its category did in
    :func:`task_category_tokens`.
    """
    observations = list(observations)
    probed = observations + [0]
    token_ids, ranges, offsets, text = _place_observations(loaded.tokenizer, task, probed)
    for k, ((start, _), category) in enumerate(zip(ranges, probed)):
        expected = categories.tokens[category]
        rendered = tuple(token_ids[start : start + len(expected)])
        if rendered != expected:
            raise _task_error(
                task,
                f"observation {k} renders as tokens {_pieces(loaded.tokenizer, rendered)}, not "
                f"{_pieces(loaded.tokenizer, expected)} as category {task.categories[category]!r} did alone",
            )
    read_at = [start - 1 for start, _ in ranges]
    prompts = [text[: offsets[r][1]] for r in read_at]
    if categories.rule == SINGLE_TOKEN:
        token_ids = token_ids[: read_at[-1] + 1]
    else:
        token_ids = token_ids[: read_at[-1] + 1 + len(categories.tokens[0])]
    return EpisodeTokens(token_ids, read_at, probed, prompts)


class PackedEpisode(NamedTuple):
    """An episode with every alternative continuation packed after it, for one forward pass."""

    token_ids: list[int]
    """The episode's tokens, then one token per continuation prefix that the episode does not hold."""
    position_ids: list[int]
    """Each token's position: the episode's are 0..T-1; a continuation token sits where it would follow its read."""
    allowed: np.ndarray
    """(L, L) bool: which tokens each token attends to (the episode causally; a continuation token its read's
    prefix, its own earlier tokens and itself)."""
    sources: list[int]
    """Token indices whose next-token distribution is needed; the first K + 1 are the reads."""
    factors: list[list[list[tuple[int, int]]]]
    """``factors[k][c]``: category ``c``'s ``(index into sources, token)`` pairs at read ``k``."""


def pack_alternatives(episode: EpisodeTokens, categories: CategoryTokens) -> PackedEpisode:
    """Lay out the continuations that give every category's probability at every read in one pass.

    At read ``k`` the category observed next is in the episode itself: its
    factors are the episode's own next-token distributions. Every other
    category needs the distribution after each proper prefix of its tokens;
    prefixes shared with the observed category, or with a category already
    laid out, are reused (a trie per read), and the rest are appended after the
    episode, each attending to the read's prefix and its own earlier tokens,
    at the positions it would have in a prompt of its own.
    """
    episode_length = len(episode.token_ids)
    token_ids = list(episode.token_ids)
    position_ids = list(range(episode_length))
    chains: list[list[int]] = []  # per appended token: the indices beyond its read that it attends to
    contexts: list[int] = []  # per appended token: its read (it attends to 0..read)
    sources = list(episode.read_at)
    source_of = {index: slot for slot, index in enumerate(sources)}
    factors = []
    for read, observed in zip(episode.read_at, episode.observed):
        seen = categories.tokens[observed]
        node = {(): read}  # a prefix of tokens -> the index whose output predicts the token after it
        chain: dict[tuple[int, ...], list[int]] = {(): []}
        for j in range(1, len(seen)):
            node[seen[:j]] = read + j
            chain[seen[:j]] = list(range(read + 1, read + j + 1))
        row = []
        for tokens in categories.tokens:
            for j in range(1, len(tokens)):
                prefix = tokens[:j]
                if prefix not in node:
                    index = len(token_ids)
                    token_ids.append(prefix[-1])
                    position_ids.append(read + j)
                    node[prefix] = index
                    chain[prefix] = chain[prefix[:-1]] + [index]
                    chains.append(chain[prefix])
                    contexts.append(read)
            pairs = []
            for j, token in enumerate(tokens):
                index = node[tokens[:j]]
                if index not in source_of:
                    source_of[index] = len(sources)
                    sources.append(index)
                pairs.append((source_of[index], token))
            row.append(pairs)
        factors.append(row)
    length = len(token_ids)
    allowed = np.zeros((length, length), dtype=bool)
    allowed[:episode_length, :episode_length] = np.tril(np.ones((episode_length, episode_length), dtype=bool))
    for offset, (read, chain_indices) in enumerate(zip(contexts, chains)):
        query = episode_length + offset
        allowed[query, : read + 1] = True
        allowed[query, chain_indices] = True
    return PackedEpisode(token_ids, position_ids, allowed, sources, factors)


def prompt_tokens(loaded: LoadedModel, prompts: Sequence[str], file: str | None = None) -> list[list[int]]:
    """Token ids of each prompt (with the tokenizer's special tokens); empty or over-long prompts are errors."""
    from bayesmatrix.data.llm.loading import _context_limit

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
    return _token_labels(tokenizer, [(i,) for i in ids])


def _token_labels(tokenizer, sequences: Sequence[Sequence[int]]) -> list[str]:
    """Decoded token sequences as column labels; a label two share (or ``<other>``) gets its ids appended."""
    labels = [tokenizer.decode(list(sequence)) for sequence in sequences]
    clashing = {label for label in labels if labels.count(label) > 1 or label == OTHER}
    return [
        f"{label}#{'-'.join(str(i) for i in sequence)}" if label in clashing else label
        for label, sequence in zip(labels, sequences)
    ]
