"""Forward passes: logits at chosen positions of right-padded batches, read into log rows.

Batches are right-padded with an attention mask: real tokens never attend to
the padding that follows them and keep positions ``0..L-1``, so a batched row
equals its unbatched self to float tolerance.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple, Sequence

import numpy as np
import torch

from bayesmatrix.data.llm.loading import LoadedModel

# samples use spawn keys (1, ...) under the user's seed; episodes use (0, episode) (data.tasks)
_SAMPLE_STREAM = 1


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


def _forward(
    loaded: LoadedModel,
    sequences: Sequence[Sequence[int]],
    read_at: Sequence[Sequence[int]],
    hidden: bool,
    packed: Sequence[tuple[Sequence[int], np.ndarray]] | None = None,
):
    """Logits (batch, reads, vocab) at ``read_at[b]`` of each sequence, and the LM head's input there.

    Every sequence has the same number of read positions. Sequences are
    right-padded; real tokens keep positions 0..L-1 and never see the padding.
    ``packed`` gives each sequence its own ``(position_ids, allowed)`` instead,
    ``allowed`` (L, L) saying which tokens each token attends to: several
    continuations of one prefix then share one pass (README.md, "Logging").
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
    inputs = dict(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False)
    if packed is not None:
        inputs.update(_packed_inputs(packed, width, next(model.parameters()).dtype, device))
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


def _packed_inputs(packed, width: int, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    """Position ids (batch, width) and an additive 4D attention mask (batch, 1, width, width) for ``_forward``.

    A 4D mask goes to the attention as it is (transformers' masking_utils
    returns it unchanged). Masked entries take the dtype's lowest value, not
    -inf, so that a padding row attending to nothing stays finite.
    """
    position_ids = torch.zeros((len(packed), width), dtype=torch.long)
    allowed = torch.eye(width, dtype=torch.bool).repeat(len(packed), 1, 1)  # padding rows see themselves
    for b, (positions, sequence_allowed) in enumerate(packed):
        length = len(positions)
        position_ids[b, :length] = torch.as_tensor(list(positions), dtype=torch.long)
        allowed[b, :length, :length] = torch.as_tensor(sequence_allowed)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return {"position_ids": position_ids.to(device), "attention_mask": mask[:, None].to(device)}


def _takes_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def next_token_logprobs(loaded: LoadedModel, prompt: str | Sequence[int]) -> np.ndarray:
    """The log-probabilities (vocab,) of the token after one prompt (text or token ids), one forward pass.

    The plain reference the batched, one-pass loggers are checked against.
    """
    ids = loaded.tokenizer(prompt)["input_ids"] if isinstance(prompt, str) else list(prompt)
    logits, _ = _forward(loaded, [ids], [[len(ids) - 1]], hidden=False)
    return torch.log_softmax(logits[0, 0].double(), dim=-1).numpy()


def category_probs(logits: torch.Tensor, factors: Sequence[Sequence[Sequence[tuple[int, int]]]]) -> np.ndarray:
    """Category probabilities (rows, categories) as products of next-token probabilities.

    ``logits`` (sources, vocab) are read at the tokens whose next-token
    distribution a factor needs; ``factors[row][c]`` lists category ``c``'s
    ``(source, token)`` pairs: the probability of ``token`` after ``source``.
    The product is a sum of float64 log-probabilities.
    """
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    sources, tokens, cells = [], [], []
    for r, row in enumerate(factors):
        for c, pairs in enumerate(row):
            for source, token in pairs:
                sources.append(source)
                tokens.append(token)
                cells.append(r * len(row) + c)
    picked = logprobs[torch.as_tensor(sources), torch.as_tensor(tokens)]
    n_categories = len(factors[0])
    total = torch.zeros(len(factors) * n_categories, dtype=torch.float64).index_add_(0, torch.as_tensor(cells), picked)
    return total.exp().reshape(len(factors), n_categories).numpy()


def _read_rows(
    logits: torch.Tensor,
    embedding: torch.Tensor | None,
    column_ids: Sequence[int],
    options: RowOptions,
    sample_keys: Sequence[tuple[int, ...]],
    column_probs: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Row arrays from logits (rows, vocab): probs over the columns plus ``<other>``, and the options' extras.

    ``column_probs`` (rows, columns) replace the columns' next-token
    probabilities (categories of several tokens, :func:`category_probs`);
    samples then have no meaning and must be off.
    """
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    if column_probs is None:
        ids = torch.as_tensor(list(column_ids), dtype=torch.long)
        column_probs = logprobs[:, ids].exp().numpy()
    elif options.samples:
        raise ValueError("samples count single next tokens; they do not apply to categories of several tokens")
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
