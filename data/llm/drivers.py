"""The logging drivers: ICL task episodes and prompts into an LLM log, and the checked, resumable run.

- **ICL task** (:func:`log_task`): episodes of a task from :mod:`bayesmatrix.data.tasks`;
  each episode draws ``pi ~ Dirichlet(alpha)``, samples ``K`` observations,
  renders them into one prompt and reads the predictive after 0, 1, ..., K
  observations from a single forward pass, giving ``K + 1`` rows;
- **prompts** (:func:`log_prompts`): one row per prompt, the distribution of
  the token after it, over a fixed set of columns (from a column file) or the
  union of every row's top-K tokens.

:func:`run_log` checks every input before the slow model load and adds crash
safety for long runs (:mod:`bayesmatrix.data.llm.checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from bayesmatrix.data.columns import read_columns, read_prompts
from bayesmatrix.data.errors import InputError, checked_seed
from bayesmatrix.data.llm.checkpoint import DEFAULT_CHECKPOINT_EVERY, PARTIAL_SUFFIX, Checkpoint, _run_chunks, _stack
from bayesmatrix.data.llm.forward import RowOptions, _forward, _read_rows, category_probs
from bayesmatrix.data.llm.loading import DEFAULT_MODEL, DTYPES, LoadedModel, _context_limit, load_model
from bayesmatrix.data.llm.rendering import (
    SINGLE_TOKEN,
    _column_labels,
    _token_labels,
    column_token_ids,
    episode_tokens,
    pack_alternatives,
    prompt_tokens,
    task_category_tokens,
)
from bayesmatrix.data.llmlog import OTHER, make_log, write_log
from bayesmatrix.data.tasks import Task, draw_episode, get_task


def log_task(
    loaded: LoadedModel,
    task: Task,
    episodes: int,
    length: int,
    seed: int = 0,
    batch_size: int = 8,
    *,
    options: RowOptions | None = None,
    checkpoint: Checkpoint | None = None,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Log ``episodes`` ICL episodes of ``task``, ``length`` observations each, ``(length + 1)`` rows per episode.

    Rows of an episode are consecutive, ``position`` 0..length, with
    ``context_counts`` the category counts among the observations before the
    row (``<other>`` always 0), so consecutive differences give the sequence
    back, and ``prompt`` the exact text the row's predictive was read after.
    Column ``i`` is category ``i`` as its tokens decode (``" H"`` for the
    category ``"H"`` with SmolLM2), then ``<other>``. A category of several
    tokens has the product of their next-token probabilities, every one read
    in the same pass as the episode (:func:`~bayesmatrix.data.llm.rendering.pack_alternatives`);
    the ``category_rule`` and ``category_tokens`` attributes say how.
    ``options`` adds samples (single-token categories only), embeddings or
    raw top tokens at the read position (samples of row (episode e, position
    k) depend only on (seed, e, k)). ``checkpoint`` resumes from and saves to a
    :class:`Checkpoint`; ``attrs`` are added to the log's attributes. A task
    with a ``framing`` poses episode ``e`` under level ``e % levels``
    (:meth:`~bayesmatrix.data.tasks.Task.framings`): the ``framing`` variable
    holds each row's level, the ``framing_levels`` attribute each level's values.
    """
    _check_episodes(episodes, length, batch_size)
    options = (options or RowOptions())._replace(seed=seed)
    categories = task_category_tokens(loaded.tokenizer, task)
    single = categories.rule == SINGLE_TOKEN
    _check_samples(task, categories, options.samples)
    column_ids = [tokens[0] if len(tokens) == 1 else -1 for tokens in categories.own]
    n_categories = len(column_ids)
    limit = _context_limit(loaded)
    levels = task.framings()  # episode e is posed under framing level e % len(levels)

    def compute(start: int, stop: int, advance: Callable[[int], None]) -> dict[str, np.ndarray]:
        parts = []
        for batch_start in range(start, stop, batch_size):
            batch = range(batch_start, min(batch_start + batch_size, stop))
            observations = [draw_episode(task, length, seed, e) for e in batch]
            placed = [episode_tokens(loaded, levels[e % len(levels)], obs, categories)
                      for e, obs in zip(batch, observations)]
            if limit is not None and max(len(episode.token_ids) for episode in placed) > limit:
                raise InputError(f"episodes of length {length} do not fit the model's context of {limit} tokens",
                                 field="length")
            keys = [(e, k) for e in batch for k in range(length + 1)]
            if single:
                logits, embedding = _forward(loaded, [p.token_ids for p in placed], [p.read_at for p in placed],
                                             options.embeddings)
                column_probs = None
            else:
                logits, embedding, column_probs = _forward_packed(loaded, placed, categories, options.embeddings)
            rows = _read_rows(
                logits[:, : length + 1].reshape(-1, logits.shape[-1]),
                None if embedding is None else embedding[:, : length + 1].reshape(-1, embedding.shape[-1]),
                [tokens[0] for tokens in categories.tokens],
                options,
                keys,
                column_probs,
            )
            context = np.zeros((len(batch), length + 1, n_categories + 1), dtype=np.int64)
            for b, obs in enumerate(observations):
                onehot = np.eye(n_categories + 1, dtype=np.int64)[obs]
                context[b, 1:] = np.cumsum(onehot, axis=0)
            rows["context_counts"] = context.reshape(-1, n_categories + 1)
            rows["episode"] = np.repeat(np.asarray(batch, dtype=np.int64), length + 1)
            rows["prompt"] = np.asarray([prompt for p in placed for prompt in p.prompts], dtype=str)
            if task.framing:
                rows["framing"] = np.repeat(np.asarray(batch, dtype=np.int64) % len(levels), length + 1)
            parts.append(rows)
            advance(len(batch))
        return _stack(parts)

    rows = _run_chunks(compute, episodes, batch_size, checkpoint, "episodes", progress, "episode")
    task_json = {**task.to_json(), "length": length, "episodes": episodes}
    framing = rows.pop("framing", None)
    ds = make_log(
        rows.pop("probs"),
        _token_labels(loaded.tokenizer, categories.own) + [OTHER],
        column_ids + [-1],
        model=loaded.name,
        task=task_json,
        prompt=[str(prompt) for prompt in rows.pop("prompt")],
        **rows,
        **_reproducibility_attrs(loaded, seed, batch_size, options, mode="task"),
        category_rule=categories.rule,
        category_tokens=json.dumps([list(tokens) for tokens in categories.tokens]),
        framing_levels=json.dumps([dict(level.values) for level in levels]) if task.framing else None,
        **(attrs or {}),
    )
    return ds if framing is None else ds.assign(framing=("row", framing))


def _forward_packed(loaded: LoadedModel, placed, categories, hidden: bool):
    """One pass over a batch of episodes with their alternative continuations packed after them.

    Returns the logits and LM-head inputs at every episode's sources (reads
    first) and the category probabilities (rows, categories), rows in episode
    order.
    """
    packed = [pack_alternatives(episode, categories) for episode in placed]
    width = max(len(p.sources) for p in packed)
    # every sequence reads the same number of sources: pad with its first read, then ignore it
    sources = [p.sources + [p.sources[0]] * (width - len(p.sources)) for p in packed]
    logits, embedding = _forward(loaded, [p.token_ids for p in packed], sources, hidden,
                                 packed=[(p.position_ids, p.allowed) for p in packed])
    offsets = np.arange(len(packed)) * width
    factors = [
        [[(int(offset) + slot, token) for slot, token in pairs] for pairs in row]
        for offset, p in zip(offsets, packed)
        for row in p.factors
    ]
    return logits, embedding, category_probs(logits.reshape(-1, logits.shape[-1]), factors)


# ----------------------------------------------------------------------------- prompts


def log_prompts(
    loaded: LoadedModel,
    prompts: Sequence[str],
    columns: Sequence[str] | None = None,
    topk: int | None = None,
    *,
    seed: int = 0,
    batch_size: int = 8,
    options: RowOptions | None = None,
    checkpoint: Checkpoint | None = None,
    progress: bool = False,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Log the next-token distribution after each prompt, one row per prompt.

    Give exactly one of ``columns`` (strings that each encode to one token) or
    ``topk`` (columns = the union of every row's top-``topk`` tokens, ordered by
    their summed probability in those top lists, ties by token id; this costs a
    first pass to find them). The last column is ``<other>``. ``options``,
    ``checkpoint``, ``attrs``: as in :func:`log_task`; samples of row ``r``
    depend only on (seed, r).
    """
    if (columns is None) == (topk is None):
        raise InputError("give exactly one of columns or topk", field="columns")
    _check_at_least(1, batch_size=batch_size)
    options = (options or RowOptions())._replace(seed=seed)
    tokenized = prompt_tokens(loaded, prompts)
    if columns is not None:
        column_ids = column_token_ids(loaded.tokenizer, [(None, c) for c in columns])
        labels = list(columns)
    else:
        column_ids = _topk_columns(loaded, tokenized, topk, batch_size, checkpoint, progress)
        labels = _column_labels(loaded.tokenizer, column_ids)

    def compute(start: int, stop: int, advance: Callable[[int], None]) -> dict[str, np.ndarray]:
        parts = []
        for batch_start in range(start, stop, batch_size):
            batch = range(batch_start, min(batch_start + batch_size, stop))
            sequences = [tokenized[r] for r in batch]
            logits, embedding = _forward(loaded, sequences, [[len(s) - 1] for s in sequences], options.embeddings)
            parts.append(
                _read_rows(logits[:, 0], None if embedding is None else embedding[:, 0], column_ids, options,
                           [(r,) for r in batch])
            )
            advance(len(batch))
        return _stack(parts)

    rows = _run_chunks(compute, len(tokenized), batch_size, checkpoint, "prompts", progress, "prompt")
    return make_log(
        rows.pop("probs"),
        labels + [OTHER],
        list(column_ids) + [-1],
        model=loaded.name,
        prompt=list(prompts),
        **rows,
        **_reproducibility_attrs(loaded, seed, batch_size, options, mode="prompts"),
        topk_columns=topk,
        **(attrs or {}),
    )


def _topk_columns(loaded, tokenized, topk, batch_size, checkpoint, progress) -> list[int]:
    _check_at_least(1, topk=topk)

    def compute(start: int, stop: int, advance: Callable[[int], None]) -> dict[str, np.ndarray]:
        ids, probs = [], []
        for batch_start in range(start, stop, batch_size):
            sequences = tokenized[batch_start : min(batch_start + batch_size, stop)]
            logits, _ = _forward(loaded, sequences, [[len(s) - 1] for s in sequences], hidden=False)
            top = torch.topk(torch.softmax(logits[:, 0].double(), dim=-1), topk, dim=-1)
            ids.append(top.indices.numpy())
            probs.append(top.values.numpy())
            advance(len(sequences))
        return {"ids": np.concatenate(ids), "probs": np.concatenate(probs)}

    found = _run_chunks(compute, len(tokenized), batch_size, checkpoint, "topk-columns", progress, "prompt")
    mass: dict[int, float] = {}
    for token, p in zip(found["ids"].ravel().tolist(), found["probs"].ravel().tolist()):
        mass[token] = mass.get(token, 0.0) + p
    return sorted(mass, key=lambda token: (-mass[token], token))


def _reproducibility_attrs(loaded: LoadedModel, seed: int, batch_size: int, options: RowOptions, mode: str):
    return {
        "mode": mode,
        "model_sha256": loaded.file_hash,
        "seed": seed,
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "device": str(next(loaded.model.parameters()).device),
        "batch_size": batch_size,
        "samples": options.samples,
        "temperature": options.temperature,
        "topk_store": options.topk_store,
    }


# ----------------------------------------------------------------------------- checks


def _check_at_least(minimum: int, **values: int) -> None:
    """An :class:`InputError` on the first of ``values`` (keyword = field) below ``minimum``."""
    for field, value in values.items():
        if value < minimum:
            raise InputError(f"must be at least {minimum}, not {value}", field=field)


def _check_samples(task: Task, categories, samples: int) -> None:
    if samples and categories.rule != SINGLE_TOKEN:
        raise InputError(f"samples count single next tokens, and task {task.name!r} has categories of several "
                         "tokens", field="samples")


def _check_episodes(episodes: int, length: int, batch_size: int) -> None:
    _check_at_least(1, episodes=episodes, batch_size=batch_size)
    _check_at_least(0, length=length)


# ----------------------------------------------------------------------------- the run


def run_log(
    out: os.PathLike | str,
    *,
    model: str = DEFAULT_MODEL,
    prompts: os.PathLike | str | None = None,
    columns: os.PathLike | str | None = None,
    topk: int | None = None,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    alpha: Sequence[float] | None = None,
    framing: Mapping[str, Sequence[str]] | None = None,
    episodes: int = 64,
    length: int = 16,
    seed: int = 0,
    batch_size: int = 8,
    samples: int = 0,
    temperature: float = 1.0,
    embeddings: bool = False,
    topk_store: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    restart: bool = False,
    progress: bool = True,
) -> Path:
    """Check the inputs, load the model, log with checkpoints and write ``out`` atomically (``bayesmatrix log``).

    Prompts mode: ``prompts`` (a file, see :func:`read_prompts`) with exactly
    one of ``columns`` (a file, see :func:`bayesmatrix.data.columns.read_columns`)
    or ``topk``. Task mode: ``task`` (a name :func:`bayesmatrix.data.tasks.get_task`
    knows, or a task file), ``labels`` (the categories of a task without them),
    ``alpha`` (the prior's concentration, one value per category), ``framing``
    (placeholder -> levels, replacing the task's own), ``episodes``, ``length``.
    Every input is checked before the slow model load; a bad one is an
    :class:`InputError` whose field is the argument's name. Finished chunks of
    ``checkpoint_every`` episodes or prompts go to ``out.partial/``; a rerun with
    the same arguments resumes from them, other arguments are an error
    (:class:`~bayesmatrix.data.llm.checkpoint.UnfinishedRunError`) unless
    ``restart`` (which discards them).
    """
    out = Path(out)
    if (task is None) == (prompts is None):
        raise InputError("give either task (an ICL task) or prompts (a prompt file)", field="task")
    _check_at_least(0, samples=samples, topk_store=topk_store)
    _check_at_least(1, batch_size=batch_size, checkpoint_every=checkpoint_every)
    checked_seed(seed)
    if not (math.isfinite(temperature) and temperature > 0):
        raise InputError("must be positive", field="temperature")
    if dtype not in DTYPES:
        raise InputError(f"{dtype!r} is not one of {', '.join(DTYPES)}", field="dtype")
    options = RowOptions(samples, temperature, embeddings, topk_store, seed)
    manifest: dict[str, Any] = {
        "model": model, "seed": seed, "batch_size": batch_size, "dtype": dtype, "device": device,
        "checkpoint_every": checkpoint_every, **options._asdict(),
    }
    if task is not None:
        if columns is not None or topk is not None:
            raise InputError("columns and topk belong to prompts mode, not to a task", field="columns")
        _check_episodes(episodes, length, batch_size)
        the_task = get_task(task, labels, alpha)
        if framing:
            the_task = the_task.with_framing(framing)
        manifest.update(task=the_task.to_json(), episodes=episodes, length=length)
    else:
        if labels is not None or alpha is not None or framing:
            raise InputError("labels, alpha and framing belong to task mode, not to prompts", field="labels")
        if (columns is None) == (topk is None):
            raise InputError("prompts mode needs exactly one of columns (a column file) or topk", field="columns")
        if topk is not None:
            _check_at_least(1, topk=topk)
        prompt_list = read_prompts(prompts)
        column_lines = read_columns(columns) if columns is not None else None
        manifest.update(
            prompts_sha256=hashlib.sha256(json.dumps(prompt_list).encode()).hexdigest(),
            columns=column_lines and [c for _, c in column_lines],
            topk=topk,
        )
    checkpoint = Checkpoint(Path(f"{out}{PARTIAL_SUFFIX}"), manifest, checkpoint_every)
    if restart:
        checkpoint.remove()
    checkpoint.check()  # before the slow model load

    loaded = load_model(model, dtype, device)
    if task is not None:
        # a task this tokenizer cannot render fails before any output
        _check_samples(the_task, task_category_tokens(loaded.tokenizer, the_task), samples)
        limit = _context_limit(loaded)
        if limit is not None and length > limit:  # each observation is a token at least: no need to render one
            raise InputError(f"episodes of length {length} do not fit the model's context of {limit} tokens",
                             field="length")  # fmt: skip
    else:
        if column_lines is not None:
            column_token_ids(loaded.tokenizer, column_lines, file=str(columns))
        prompt_tokens(loaded, prompt_list, file=str(prompts))
    checkpoint.manifest["model_sha256"] = loaded.file_hash
    checkpoint.open()

    if task is not None:
        ds = log_task(loaded, the_task, episodes, length, seed, batch_size, options=options, checkpoint=checkpoint,
                      progress=progress)
    else:
        ds = log_prompts(loaded, prompt_list, [c for _, c in column_lines] if column_lines else None, topk, seed=seed,
                         batch_size=batch_size, options=options, checkpoint=checkpoint, progress=progress)
    write_log(ds, out)
    checkpoint.remove()
    return out
