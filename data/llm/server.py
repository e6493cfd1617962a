"""Logging through an OpenAI-compatible completions server (vLLM, llama.cpp): ICL episodes and prompts over HTTP.

The same episodes and prompts as the local logger (:mod:`bayesmatrix.data.llm.drivers`),
read from a model that runs elsewhere. The server tokenizes, so each episode is
sent as its rendered TEXT and the reads are found among the returned prompt
tokens by their text offsets; one request per episode scores every prompt
position at once (README.md, "Logging through a server"):

- :data:`ECHO`: the legacy completions request with ``echo`` and ``logprobs``
  (llama.cpp, OpenAI's legacy models, vLLM);
- :data:`PROMPT_LOGPROBS`: vLLM's ``prompt_logprobs`` request field.

A category's probability at a read is the product of the probabilities of the
tokens that spell it there (its continuation after the prefix). For the
category the episode shows next they are the episode's own prompt tokens; for
another one, its single token when the server reported it among the read's
top ``top_logprobs``, and otherwise a request of its own (the prefix followed
by the category, echoed). Nothing the server did not report is set to 0; each
row's ``reported_mass`` is the probability the server reported at the read.

Two kinds of task need more than the server's tokens (README.md, "Logging through a server"):

- a chat task (``chat = true``) is rendered here, by a local tokenizer's chat
  template (:func:`~bayesmatrix.data.llm.rendering.task_lead`, the local
  logger's own rendering), and sent as text; the template's special tokens,
  which servers echo as empty text or leave out, are placed by their text;
- where one category is a prefix of another ("1" and "10"), every category is
  extended by the text after it in the observation format (the ``","`` of
  ``" {},"``), as the local logger extends them by the token after it
  (``category_rule`` :data:`~bayesmatrix.data.llm.rendering.PRODUCT_WITH_FOLLOWING`).

Requests run ``concurrency`` at a time; 429s, 5xx answers, timeouts, dropped
connections, malformed or truncated bodies are retried with exponential
backoff, then end the run with one :class:`~bayesmatrix.data.errors.InputError`.
Finished chunks are checkpointed as in local logging
(:mod:`bayesmatrix.data.llm.checkpoint`): a killed run resumes and writes the
same log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import xarray as xr

from bayesmatrix.data.columns import read_columns, read_prompts
from bayesmatrix.data.errors import InputError, checked_seed
from bayesmatrix.data.importers import prompt_position_logprobs, prompt_tokens_of
from bayesmatrix.data.llm.checkpoint import DEFAULT_CHECKPOINT_EVERY, PARTIAL_SUFFIX, Checkpoint, _run_chunks, _stack
from bayesmatrix.data.llm.rendering import PRODUCT, PRODUCT_WITH_FOLLOWING, task_lead
from bayesmatrix.data.llmlog import OTHER, make_log, write_log
from bayesmatrix.data.tasks import Task, draw_episode, get_task

ECHO = "echo"
"""Prompt logprobs from a legacy completions request with ``echo: true`` and ``logprobs: K``."""
PROMPT_LOGPROBS = "prompt_logprobs"
"""Prompt logprobs from vLLM's ``prompt_logprobs: K`` request field."""
APIS = (ECHO, PROMPT_LOGPROBS)
# The categories' probabilities may sum a little above 1 from the server's rounding of logprobs.
SUM_TOLERANCE = 1e-3
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_BACKOFF = 30.0


@dataclasses.dataclass(frozen=True)
class Server:
    """Where and how to ask: an OpenAI-compatible server and the request settings (checked on creation).

    ``url`` is the server's base (``http://host:8000``, with or without ``/v1``)
    or its completions endpoint; ``model`` the name the server knows the model
    by; ``api_key`` goes out as a bearer token. ``top_logprobs`` is the K of
    each request (the number of alternatives reported per position);
    ``retries`` the further tries of a failed request, ``backoff`` the first
    wait in seconds (doubled each time), ``timeout`` the seconds one request may take.
    """

    url: str
    model: str
    api_key: str | None = None
    api: str = ECHO
    top_logprobs: int = 5
    concurrency: int = 4
    timeout: float = 120.0
    retries: int = 5
    backoff: float = 0.5

    def __post_init__(self):
        if not self.url.startswith(("http://", "https://")):
            raise InputError(f"{self.url!r} is not an http:// or https:// URL", field="server")
        if not self.model.strip():
            raise InputError("is empty: name the model the server serves", field="model")
        if self.api not in APIS:
            raise InputError(f"{self.api!r} is not one of {', '.join(APIS)}", field="api")
        for name, minimum in (("top_logprobs", 1), ("concurrency", 1), ("retries", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"must be a whole number of at least {minimum}, not {value!r}", field=name)
        for name in ("timeout", "backoff"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "timeout" and value == 0):
                raise InputError(f"must be a positive number of seconds, not {value!r}", field=name)

    @property
    def endpoint(self) -> str:
        """The completions endpoint the requests go to."""
        base = self.url.rstrip("/")
        if base.endswith("/completions"):
            return base
        return base + ("/completions" if base.endswith("/v1") else "/v1/completions")


class PromptToken(NamedTuple):
    """One prompt token as the server reported it."""

    text: str
    offset: int
    """Where the token starts in the prompt text."""
    logprob: float | None
    """log P(this token | the tokens before it); None for the first token."""
    top: dict[str, float] | None
    """The reported alternatives at this position, token text -> logprob; None for the first token."""


# ----------------------------------------------------------------------------- requests


class _Client:
    """Completions requests with retries, and the continuation requests an episode needs (cached).

    ``specials`` are the texts of a chat template's special tokens (``"<|im_start|>"``): a prompt
    holding them is sent with ``add_special_tokens: false`` (the template wrote them; vLLM reads the
    field, other servers ignore it), and where the server echoes one as empty text or leaves it out,
    the tokens around it are placed by the prompt's text.
    """

    def __init__(self, server: Server, specials: Sequence[str] = ()):
        self.server = server
        self.specials = tuple(sorted((s for s in set(specials) if s), key=len, reverse=True))
        self._cache: dict[tuple[str, str], Future] = {}
        self._lock = threading.Lock()

    def prompt_tokens(self, prompt: str, row: int = 0) -> list[PromptToken]:
        """The prompt's tokens with their logprobs and reported alternatives, from one request."""
        body: dict[str, Any] = {"model": self.server.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0}
        if self.server.api == ECHO:
            body.update(echo=True, logprobs=self.server.top_logprobs)
        else:
            body.update(prompt_logprobs=self.server.top_logprobs)
        if self.specials:
            body.update(add_special_tokens=False)
        return _prompt_positions(self.post(body), prompt, self.server.endpoint, row, self.specials)

    def continuation(self, prefix: str, continuation: str, row: int = 0) -> tuple[float, dict[str, float]]:
        """log P(continuation | prefix) (the summed logprobs of its tokens in ``prefix + continuation``) and the
        alternatives reported at its first token (the distribution after ``prefix``)."""
        key = (prefix, continuation)
        with self._lock:  # one request per continuation, however many episodes ask for it at once
            pending = self._cache.get(key)
            if pending is None:
                pending = self._cache[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()
        try:
            tokens = self.prompt_tokens(prefix + continuation, row)
            span = _tokens_between(tokens, len(prefix), len(prefix) + len(continuation))
            if span is None or span[0] == 0:
                raise InputError(f"the server tokenizes {continuation!r} after {prefix[-40:]!r} across the boundary "
                                 "between them, so the continuation's probability cannot be read", field="task",
                                 row=row)  # fmt: skip
            value = (float(sum(tokens[t].logprob for t in range(*span))), tokens[span[0]].top or {})
        except BaseException as error:
            pending.set_exception(error)
            raise
        pending.set_result(value)
        return value

    def post(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON; retry what a retry may cure, then one :class:`InputError`."""
        server = self.server
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if server.api_key:
            headers["Authorization"] = f"Bearer {server.api_key}"
        reason = ""
        for attempt in range(server.retries + 1):
            if attempt:
                time.sleep(min(_MAX_BACKOFF, server.backoff * 2 ** (attempt - 1)))
            request = urllib.request.Request(server.endpoint, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=server.timeout) as answer:
                    raw = answer.read()
            except urllib.error.HTTPError as error:
                detail = _error_detail(error)
                if error.code not in _RETRY_STATUS:
                    raise InputError(f"{server.endpoint} refused the request: HTTP {error.code}{detail}",
                                     field="server") from None  # fmt: skip
                reason = f"HTTP {error.code}{detail}"
                continue
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
                    socket.timeout) as error:  # fmt: skip
                reason = _network_reason(error)
                continue
            try:
                response = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                reason = f"a body that is not JSON ({len(raw)} bytes: {raw[:60]!r})"
                continue
            if isinstance(response, dict):
                return response
            reason = f"a JSON {type(response).__name__}, not an object"
        tries = server.retries + 1
        raise InputError(f"{server.endpoint} gave no usable answer in {tries} {'try' if tries == 1 else 'tries'}; "
                         f"the last: {reason}", field="server")  # fmt: skip


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The server's own words from an error answer (its ``error.message`` or the body's start)."""
    try:
        raw = error.read()
    except Exception:  # the body of an error answer is a courtesy; its absence changes nothing
        return ""
    try:
        message = json.loads(raw)["error"]
        message = message.get("message", message) if isinstance(message, dict) else message
    except Exception:  # not the OpenAI error shape: show the body's start
        message = raw[:200].decode("utf-8", errors="replace")
    message = " ".join(str(message).split())[:200]
    return f" ({message})" if message else ""


def _network_reason(error: Exception) -> str:
    inner = getattr(error, "reason", None)
    if isinstance(inner, (TimeoutError, socket.timeout)) or isinstance(error, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"a truncated body ({len(error.partial)} bytes, {error.expected} more expected)"
    what = inner if inner is not None else error
    return f"{type(what).__name__}: {what}" if str(what) else type(what).__name__


def _prompt_positions(response: Mapping[str, Any], prompt: str, file: str, row: int,
                      specials: Sequence[str] = ()) -> list[PromptToken]:  # fmt: skip
    """The prompt tokens of a completions response (echoed, or vLLM's ``prompt_logprobs``), placed in ``prompt``.

    Read with the importer's parsers (:mod:`bayesmatrix.data.importers`), one reading of a response for both.
    ``specials`` (longest first) are texts of special tokens the server may echo as empty text or leave out.
    """
    visible = _without(prompt, specials)
    _check_echo_alignment(response, visible, file, row)
    tops = prompt_position_logprobs(dict(response), file=file, row=row)
    try:
        texts = prompt_tokens_of(dict(response), prompt=prompt, file=file, row=row)
    except InputError:
        if visible == prompt:
            raise
        # vLLM's prompt_logprobs without an echo: the first token is what the prompt holds before the others,
        # whose text lacks the special tokens the server decoded as empty
        texts = prompt_tokens_of(dict(response), prompt=visible, file=file, row=row)
    if "".join(texts) != prompt and texts and "".join(texts[1:]) == prompt:
        texts[0] = ""  # a BOS token the server decodes as text ("<s>") is no part of the prompt
    offsets = _place(texts, prompt, specials)
    if offsets is None:
        raise InputError(f"the prompt tokens the server returned spell {''.join(texts)[:60]!r}..., not the prompt "
                         f"sent ({prompt[:60]!r}...)", file=file, field="choices[0].logprobs.tokens", row=row)
    return [PromptToken(text, offset, None if top is None else top.get(text), top)
            for text, offset, top in zip(texts, offsets, tops)]


def _without(prompt: str, specials: Sequence[str]) -> str:
    for special in specials:
        prompt = prompt.replace(special, "")
    return prompt


def _place(texts: Sequence[str], prompt: str, specials: Sequence[str]) -> list[int] | None:
    """Where each token text starts in ``prompt``, or None if they do not spell it.

    A special token's text (one of ``specials``) that the tokens do not spell is stepped over: a server may
    leave the token out (llama-cpp-python drops every token that is the model's BOS, such as ChatML's
    ``<|im_start|>``) or echo it as empty text (its ``<|im_end|>``).
    """

    def special_at(position: int) -> str | None:
        return next((s for s in specials if prompt.startswith(s, position)), None)

    offsets, position = [], 0
    for text in texts:
        if not text:
            offsets.append(position)
            skipped = special_at(position)
            position += len(skipped) if skipped is not None else 0
            continue
        while not prompt.startswith(text, position):
            skipped = special_at(position)
            if skipped is None:
                return None
            position += len(skipped)
        offsets.append(position)
        position += len(text)
    while position < len(prompt) and (skipped := special_at(position)) is not None:
        position += len(skipped)
    return offsets if position == len(prompt) else None


def _check_echo_alignment(response: Mapping[str, Any], prompt: str, file: str, row: int) -> None:
    """Refuse an echo whose entries sit one position late: it lists the prompt's tokens but not the generated one.

    llama-cpp-python's server (0.3) answers so for a model that adds no BOS token (SmolLM2's GGUF): it pairs
    each prompt token with the distribution AFTER it, and the generated token falls off the end.
    """
    try:
        offsets = response["choices"][0]["logprobs"]["text_offset"]
        generated = response["usage"]["completion_tokens"]
    except (KeyError, IndexError, TypeError):
        return  # not an echo with usage: the parser names what is missing
    if isinstance(generated, int) and generated > 0 and offsets and isinstance(offsets[-1], int) and \
            offsets[-1] < len(prompt):  # fmt: skip
        raise InputError("echoes the prompt's tokens but not the generated one, as llama-cpp-python's server does "
                         "for a model that adds no BOS token, whose entries are then one position late (the "
                         "distribution after each token, not before it); serve the model with a BOS token "
                         "(the server's kv override tokenizer.ggml.add_bos_token=bool:true; README.md, "
                         "\"Logging through a server\")",
                         file=file, field="choices[0].logprobs", row=row)  # fmt: skip


def _tokens_between(tokens: Sequence[PromptToken], start: int, end: int) -> tuple[int, int] | None:
    """(first, stop) token indices exactly covering text[start:end], or None if no tokens begin and end there."""
    first = next((t for t, token in enumerate(tokens) if token.offset == start), None)
    if first is None:
        return None
    stop = first
    while stop < len(tokens) and tokens[stop].offset < end:
        stop += 1
    covered_end = tokens[stop - 1].offset + len(tokens[stop - 1].text)
    if stop == first or covered_end != end or any(tokens[t].logprob is None for t in range(first, stop)):
        return None
    return first, stop


# ----------------------------------------------------------------------------- ICL tasks


def server_log_task(
    server: Server,
    task: Task,
    episodes: int,
    length: int,
    seed: int = 0,
    *,
    checkpoint: Checkpoint | None = None,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
    tokenizer: Any = None,
) -> xr.Dataset:
    """Log ``episodes`` ICL episodes of ``task`` through ``server``: the log :func:`~bayesmatrix.data.llm.log_task` writes.

    The same episodes (``draw_episode(task, length, seed, e)``), rows, prompts
    and ``context_counts``; column ``i`` is category ``i`` as the observation
    format writes it (``" H"``), then ``<other>``, every ``col_token_id`` -1
    (the server speaks text). ``reported_mass`` is each row's reported top-k mass.
    A chat task is rendered by ``tokenizer``'s chat template (a transformers
    tokenizer, :func:`~bayesmatrix.data.llm.loading.load_tokenizer`), exactly as the
    local logger renders it; categories one of which begins another are each
    read followed by the observation format's text after the category.
    """
    extension = _category_extension(task)
    leads = _chat_leads(task, tokenizer)
    _check_counts(episodes, length)
    client = _Client(server, _special_texts(tokenizer) if task.chat else ())
    levels = task.framings()
    n_categories = len(task.categories)
    before = task.observation.split("{}")[0]

    def episode_rows(e: int) -> dict[str, np.ndarray]:
        observations = list(draw_episode(task, length, seed, e))
        level = levels[e % len(levels)]
        # read K sits before a probe of category 0
        text, spans = level.render(observations + [0], leads[e % len(levels)])
        tokens = client.prompt_tokens(text, e)
        probs = np.zeros((length + 1, n_categories + 1))
        reported = np.zeros(length + 1)
        prompts = []
        for k, (span, observed) in enumerate(zip(spans, observations + [0])):
            first, stop = _observation_tokens(tokens, span, text, k, task, span.symbol_end + len(extension))
            prefix = text[: tokens[first].offset]
            top = tokens[first].top or {}
            reported[k] = float(np.sum(np.exp(list(top.values())))) if top else 0.0
            for c, symbol in enumerate(task.categories):
                if c == observed:
                    logprob = sum(tokens[t].logprob for t in range(first, stop))
                else:
                    continuation = text[tokens[first].offset : span.symbol_start] + symbol + extension
                    logprob = top[continuation] if continuation in top else client.continuation(
                        prefix, continuation, e)[0]
                probs[k, c] = math.exp(logprob)
            probs[k] = _with_other(probs[k, :n_categories], e * (length + 1) + k)
            prompts.append(prefix)
        context = np.zeros((length + 1, n_categories + 1), dtype=np.int64)
        context[1:] = np.cumsum(np.eye(n_categories + 1, dtype=np.int64)[observations], axis=0)
        rows = {"probs": probs, "reported_mass": reported, "context_counts": context,
                "episode": np.full(length + 1, e, dtype=np.int64), "prompt": np.asarray(prompts, dtype=str)}
        if task.framing:
            rows["framing"] = np.full(length + 1, e % len(levels), dtype=np.int64)
        return rows

    rows = _run_parallel(server, episode_rows, episodes, checkpoint, "episodes", progress, "episode")
    return make_log(
        rows.pop("probs"),
        [before + symbol for symbol in task.categories] + [OTHER],
        model=server.model,
        task={**task.to_json(), "length": length, "episodes": episodes},
        prompt=[str(prompt) for prompt in rows.pop("prompt")],
        **rows,
        **_server_attrs(server, seed, mode="task"),
        category_rule=PRODUCT_WITH_FOLLOWING if extension else PRODUCT,
        category_following=extension or None,
        framing_levels=json.dumps([dict(level.values) for level in levels]) if task.framing else None,
        **(attrs or {}),
    )


def _category_extension(task: Task) -> str:
    """The text every category is read followed by: ``""``, or where one category begins another, the
    observation format's text after the category (the local logger's rule in text: it extends them by the
    token after)."""
    symbols = task.categories
    prefixed = next(((a, b) for a in symbols for b in symbols if a != b and b.startswith(a)), None)
    if prefixed is None:
        return ""
    shorter, longer = prefixed
    after = task.observation.split("{}")[1]
    where = {"file": task.source, "field": "categories"} if task.source is not None else {"field": "task"}
    if not after:
        raise InputError(f"task {task.name!r}: category {shorter!r} is a prefix of {longer!r}, and the observation "
                         f"format {task.observation!r} has no text after the category to tell them apart by",
                         **where)  # fmt: skip
    still = next(((a, b) for a in symbols for b in symbols if a != b and (b + after).startswith(a + after)), None)
    if still is not None:
        raise InputError(f"task {task.name!r}: category {still[0]!r} followed by {after!r} is still a prefix of "
                         f"{still[1]!r}, so their probabilities cannot be told apart", **where)  # fmt: skip
    return after


def _chat_leads(task: Task, tokenizer: Any) -> list[str | None]:
    """Per framing level, the text before the observations: the chat template's rendering for a chat task
    (the local logger's :func:`~bayesmatrix.data.llm.rendering.task_lead`), None (the task's own) otherwise."""
    if not task.chat:
        return [None] * len(task.framings())
    if tokenizer is None:
        raise InputError(f"task {task.name!r} renders through a chat template, which a completions server does not "
                         "apply: name a local tokenizer that has it (a model folder, a .gguf file or a shipped "
                         "model's name)", field="tokenizer")  # fmt: skip
    return [task_lead(tokenizer, level)[0] for level in task.framings()]


def _special_texts(tokenizer: Any) -> tuple[str, ...]:
    """The texts of the tokenizer's special tokens (a chat template writes them into the prompt)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return tuple({*tokenizer.all_special_tokens, *(token.content for token in added.values() if token.special)})


def _check_counts(episodes: int, length: int) -> None:
    for name, value, minimum in (("episodes", episodes, 1), ("length", length, 0)):
        if value < minimum:
            raise InputError(f"must be at least {minimum}, not {value}", field=name)


def _observation_tokens(tokens, span, text: str, k: int, task: Task, end: int) -> tuple[int, int]:
    """The tokens spelling observation ``k``: starting within its piece, ending at ``end`` (its symbol's end, or
    the end of the text the categories are extended by)."""
    start = next((t for t, token in enumerate(tokens) if token.offset + len(token.text) > span.symbol_start), None)
    located = None if start is None else _tokens_between(tokens, tokens[start].offset, end)
    if located is None or located[0] == 0 or not span.piece_start <= tokens[located[0]].offset <= span.symbol_start:
        pieces = [token.text for token in tokens if token.offset < end and
                  token.offset + len(token.text) > span.symbol_start]  # fmt: skip
        raise InputError(f"task {task.name!r}: the server tokenizes observation {k} of {text[:80]!r}... as "
                         f"{pieces!r}, not as tokens of its own, so it cannot be read there", field="task")
    return located


def _with_other(category_probs: np.ndarray, row: int) -> np.ndarray:
    total = float(category_probs.sum())
    if total > 1 + SUM_TOLERANCE:
        raise InputError(f"the server's category probabilities sum to {total:.6g}, more than 1", field="server",
                         row=row)
    if total > 1:
        category_probs = category_probs / total
        total = 1.0
    return np.append(category_probs, 1.0 - total)


def _run_parallel(server: Server, one: Callable[[int], dict[str, np.ndarray]], n_units: int,
                  checkpoint: Checkpoint | None, phase: str, progress: bool, unit: str) -> dict[str, np.ndarray]:
    """``one(unit)`` for every unit, ``server.concurrency`` at a time, checkpointed chunk by chunk."""
    with ThreadPoolExecutor(max_workers=server.concurrency) as pool:

        def compute(start: int, stop: int, advance: Callable[[int], None]) -> dict[str, np.ndarray]:
            futures = [pool.submit(one, unit_index) for unit_index in range(start, stop)]
            parts = []
            try:
                for future in futures:
                    parts.append(future.result())
                    advance(1)
            finally:
                for future in futures:
                    future.cancel()
            return _stack(parts)

        return _run_chunks(compute, n_units, 1, checkpoint, phase, progress, unit)


def _server_attrs(server: Server, seed: int, mode: str) -> dict[str, Any]:
    return {"mode": mode, "seed": seed, "server": server.endpoint, "server_api": server.api,
            "top_logprobs": server.top_logprobs}


# ----------------------------------------------------------------------------- prompts


def server_log_prompts(
    server: Server,
    prompts: Sequence[str],
    columns: Sequence[str],
    *,
    checkpoint: Checkpoint | None = None,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Log the distribution of the text after each prompt over ``columns``, one row per prompt, through ``server``.

    The distribution after a prompt is reported at the first token of any text
    that follows it: one request scores the prompt followed by the first column,
    and another column is read from that position's reported alternatives when
    the server listed it as one token, else from a request of its own. The last
    column is ``<other>``; ``reported_mass`` is the mass reported there.
    """
    if not prompts:
        raise InputError("no prompts", field="prompt")
    client = _Client(server)

    def prompt_row(r: int) -> dict[str, np.ndarray]:
        if not prompts[r]:
            raise InputError("is empty", field="prompt", row=r)
        # the distribution after the prompt is reported at the first token of any continuation: the first column's
        first, top = client.continuation(prompts[r], columns[0], r)
        logprobs = [first] + [top[c] if c in top else client.continuation(prompts[r], c, r)[0] for c in columns[1:]]
        mass = float(np.sum(np.exp(list(top.values())))) if top else 0.0
        return {"probs": _with_other(np.exp(logprobs), r)[None], "reported_mass": np.asarray([mass])}

    rows = _run_parallel(server, prompt_row, len(prompts), checkpoint, "prompts", progress, "prompt")
    return make_log(rows["probs"], list(columns) + [OTHER], model=server.model, prompt=list(prompts),
                    reported_mass=rows["reported_mass"], **_server_attrs(server, 0, mode="prompts"), **(attrs or {}))


# ----------------------------------------------------------------------------- the run


def run_server_log(
    out: os.PathLike | str,
    server: Server,
    *,
    prompts: os.PathLike | str | None = None,
    columns: os.PathLike | str | None = None,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    alpha: Sequence[float] | None = None,
    framing: Mapping[str, Sequence[str]] | None = None,
    episodes: int = 64,
    length: int = 16,
    seed: int = 0,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    restart: bool = False,
    progress: bool = True,
    tokenizer: str | None = None,
) -> Path:
    """Check the inputs, log through ``server`` with checkpoints and write ``out`` atomically (``bayesmatrix log``).

    The arguments are those of :func:`~bayesmatrix.data.llm.run_log` (prompts
    mode takes a column file). ``tokenizer`` names the local tokenizer whose
    chat template renders a chat task (a model as :func:`~bayesmatrix.data.llm.loading.load_tokenizer`
    takes it: a shipped name, a model folder, a ``.gguf`` file, whose
    ``tokenizer.chat_template`` is read, or a hub id); only a chat task takes one.
    The manifest of ``out.partial/`` holds the model
    name, the API and ``top_logprobs`` but not the URL, so a run resumes against
    a restarted server at another address; ``concurrency`` does not change the log.
    """
    out = Path(out)
    if (task is None) == (prompts is None):
        raise InputError("give either task (an ICL task) or prompts (a prompt file)", field="task")
    checked_seed(seed)
    if checkpoint_every < 1:
        raise InputError(f"must be at least 1, not {checkpoint_every}", field="checkpoint_every")
    manifest: dict[str, Any] = {"server_model": server.model, "server_api": server.api,
                                "top_logprobs": server.top_logprobs, "seed": seed,
                                "checkpoint_every": checkpoint_every}
    if task is not None:
        if columns is not None:
            raise InputError("columns belong to prompts mode, not to a task", field="columns")
        the_task = get_task(task, labels, alpha)
        if framing:
            the_task = the_task.with_framing(framing)
        _category_extension(the_task)
        if tokenizer is not None and not the_task.chat:
            raise InputError(f"renders a chat task's template; task {the_task.name!r} is not a chat task",
                             field="tokenizer")  # fmt: skip
        _check_counts(episodes, length)
        chat_tokenizer = None
        if tokenizer is not None:
            from bayesmatrix.data.llm.loading import load_tokenizer  # torch and transformers: a chat task only

            chat_tokenizer = load_tokenizer(tokenizer)
        _chat_leads(the_task, chat_tokenizer)  # no tokenizer, or one without a chat template: refused here
        manifest.update(task=the_task.to_json(), episodes=episodes, length=length)
        if tokenizer is not None:
            manifest.update(tokenizer=tokenizer)
    else:
        if tokenizer is not None:
            raise InputError("renders a chat task's template; prompts are sent as they are", field="tokenizer")
        if labels is not None or alpha is not None or framing:
            raise InputError("labels, alpha and framing belong to task mode, not to prompts", field="labels")
        if columns is None:
            raise InputError("prompts mode through a server needs columns (a column file)", field="columns")
        prompt_list = read_prompts(prompts)
        column_list = [c for _, c in read_columns(columns)]
        manifest.update(prompts_sha256=hashlib.sha256(json.dumps(prompt_list).encode()).hexdigest(),
                        columns=column_list)
    checkpoint = Checkpoint(Path(f"{out}{PARTIAL_SUFFIX}"), manifest, checkpoint_every)
    if restart:
        checkpoint.remove()
    checkpoint.check()
    checkpoint.open()
    if task is not None:
        ds = server_log_task(server, the_task, episodes, length, seed, checkpoint=checkpoint, progress=progress,
                             tokenizer=chat_tokenizer, attrs=None if tokenizer is None else {"tokenizer": tokenizer})
    else:
        ds = server_log_prompts(server, prompt_list, column_list, checkpoint=checkpoint, progress=progress)
    write_log(ds, out)
    checkpoint.remove()
    return out
