"""Wind-tunnel transformers: the word-level tokenizer, the model configurations and loading.

Three architectures, all about 100k parameters at the default size (2 layers,
64 dimensions, 4 heads; ``build_model`` takes others, as the size sweep does):

- ``llama``: rotary position embeddings. Attention scores depend on relative
  positions only, and the exact Bayesian update can be written without any
  position at all (attend to ``<bos>`` with weight ``sum(alpha) / (sum(alpha) + k)``
  and to each token with weight ``1 / (sum(alpha) + k)``), so it can carry past
  the training length. The default.
- ``gpt2``: learned absolute position embeddings; rows beyond the training
  length are never trained, so it is expected not to extrapolate.
- ``nope``: no positional encoding, the Llama with its rotary embedding left
  out of every layer (``SmolLM3ForCausalLM`` with ``no_rope_layers`` all zero,
  otherwise the Llama's configuration and parameter count). Attention sees no
  position index; only the causal mask tells a token how many came before it.
  The first layer's output at a position depends on the input there and on the
  set of inputs before it; with two or more layers the later ones read those
  outputs, each of its own prefix, so the predictive can still depend on order.

A sliding attention window ``W`` (each token attends to itself and the ``W - 1``
tokens before it) turns the Llama into ``MistralForCausalLM``, which is the same
architecture with ``sliding_window`` in its saved config, honoured by every
attention implementation of ``transformers``; so the restriction holds wherever
the folder is loaded. With ``L`` layers a prediction sees the last
``L (W - 1) + 1`` inputs. ``W = 1`` leaves attention nothing but the token
itself: the capacity-matched baseline that cannot attend across positions.

A trained folder is a regular local ``transformers`` model (``config.json``,
``model.safetensors``, ``tokenizer.json``) plus ``training.json``, the record
of how it was made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from bayesmatrix.data.catalog import WINDTUNNEL_DIR, WINDTUNNEL_RECORD, resolve, windtunnel_model
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.windtunnel.worlds import BOS, PAD, SPECIAL_TOKENS, UNK, World

ARCHITECTURES = ("llama", "gpt2", "nope")
HIDDEN_SIZE = 64
NUM_LAYERS = 2
NUM_HEADS = 4
# The gated Llama MLP has three matrices where GPT-2's has two of width 4 x 64;
# 172 makes the two architectures' parameter counts about equal.
LLAMA_INTERMEDIATE_SIZE = 172
# Other widths keep that ratio (172 / 64): the MLP grows with the width, as in the default.
LLAMA_INTERMEDIATE_RATIO = LLAMA_INTERMEDIATE_SIZE / HIDDEN_SIZE
TRAINING_RECORD = WINDTUNNEL_RECORD
SHIPPED_DIR = WINDTUNNEL_DIR


def vocabulary(world: World) -> dict[str, int]:
    """Token ids: the special tokens first, then one token per category."""
    return {token: index for index, token in enumerate((*SPECIAL_TOKENS, *world.categories))}


def build_tokenizer(world: World):
    """A word-level tokenizer (``tokenizers`` WordLevel in ``PreTrainedTokenizerFast``).

    It adds no special tokens itself: prompts carry their ``<bos>`` as text, so
    encoding with or without ``add_special_tokens`` gives the same ids.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocabulary(world), unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # without a decoder, decoding joins with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, pad_token=PAD, unk_token=UNK, padding_side="right"
    )


def llama_intermediate_size(hidden_size: int) -> int:
    """The Llama MLP width for a hidden size: 172 at the default 64, in proportion elsewhere."""
    return max(1, round(hidden_size * LLAMA_INTERMEDIATE_RATIO))


def check_size(hidden_size: int, num_layers: int, num_heads: int) -> None:
    """Refuse a size no attention can have (an :class:`InputError` names the field)."""
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("num_heads", num_heads)):
        if value < 1:
            raise InputError(f"must be at least 1, not {value}", field=name)
    if hidden_size % num_heads:
        raise InputError(f"{num_heads} heads do not divide the hidden size {hidden_size}", field="num_heads")


def build_model(
    world: World,
    arch: str,
    window: int | None,
    max_positions: int,
    seed: int,
    *,
    hidden_size: int = HIDDEN_SIZE,
    num_layers: int = NUM_LAYERS,
    num_heads: int = NUM_HEADS,
):
    """A freshly initialised model (float32); ``torch.manual_seed(seed)`` fixes its weights.

    The size defaults to the shipped models' (64 dimensions, 2 layers, 4 heads);
    the Llama MLP width follows the hidden size (:func:`llama_intermediate_size`).
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig
    from transformers import MistralForCausalLM, SmolLM3Config, SmolLM3ForCausalLM

    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}", field="arch")
    if window is not None and window < 1:
        raise InputError(f"must be a positive number of positions, not {window}", field="window")
    if window is not None and arch != "llama":
        raise InputError("a sliding window needs the llama architecture (GPT-2 has no sliding-window attention)",
                         field="window")
    check_size(hidden_size, num_layers, num_heads)
    ids = vocabulary(world)
    common = dict(vocab_size=len(ids), bos_token_id=ids[BOS], pad_token_id=ids[PAD], eos_token_id=None)
    torch.manual_seed(seed)
    if arch == "gpt2":
        config = GPT2Config(
            n_embd=hidden_size, n_layer=num_layers, n_head=num_heads, n_positions=max_positions,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common,
        )  # fmt: skip
        return GPT2LMHeadModel(config)
    llama = dict(
        hidden_size=hidden_size,
        intermediate_size=llama_intermediate_size(hidden_size),
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        **common,
    )
    if arch == "nope":
        # SmolLM3 is the Llama with rotary embeddings switchable per layer (0 = none); the
        # epsilon is the Llama's, so nope and llama differ in the positions alone.
        no_rope = dict(no_rope_layers=[0] * llama["num_hidden_layers"], rms_norm_eps=LlamaConfig().rms_norm_eps)
        return SmolLM3ForCausalLM(SmolLM3Config(**no_rope, **llama))
    if window is None:
        return LlamaForCausalLM(LlamaConfig(**llama))
    return MistralForCausalLM(MistralConfig(sliding_window=window, **llama))


def receptive_field(config) -> int | None:
    """How many inputs a prediction can see, ``L (W - 1) + 1``; ``None`` without a window."""
    window = getattr(config, "sliding_window", None)
    if window is None:
        return None
    return config.num_hidden_layers * (window - 1) + 1


def count_parameters(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


class WindTunnelModel(NamedTuple):
    """A trained wind-tunnel model loaded from its folder."""

    model: Any
    """The ``transformers`` causal LM, in eval mode."""
    tokenizer: Any
    """Its ``PreTrainedTokenizerFast``."""
    world: World
    """The world it was trained on."""
    record: dict
    """``training.json``: options, command, timings, final evaluation."""
    path: Path


def load(model_dir: str | os.PathLike) -> WindTunnelModel:
    """Load a trained wind-tunnel folder (``AutoModelForCausalLM`` + ``AutoTokenizer`` + ``training.json``).

    ``model_dir`` is a folder or a shipped model's name, ``"windtunnel:dirichlet"`` (``bayesmatrix.data.catalog``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(resolve(model_dir, field="model"))
    record_path = path / TRAINING_RECORD
    if not path.is_dir():
        raise InputError("no such folder (expected a trained wind-tunnel model)", file=str(path))
    if not record_path.is_file():
        unfinished = (path / "checkpoint.pt").is_file()
        why = "training has not finished (only a checkpoint)" if unfinished else f"no {TRAINING_RECORD}"
        raise InputError(f"not a trained wind-tunnel model: {why}", file=str(path))
    try:
        record = json.loads(record_path.read_text())
        world = World.from_json(record["world"])
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"unreadable training record ({error})", file=str(record_path)) from None
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return WindTunnelModel(model=model, tokenizer=tokenizer, world=world, record=record, path=path)


def input_ids(tokens: np.ndarray, world: World) -> torch.Tensor:
    """Model inputs for predicting every token of ``tokens`` (sequences, L): ``<bos> y_1 .. y_(L-1)``."""
    ids = vocabulary(world)
    category_ids = np.array([ids[c] for c in world.categories])
    tokens = np.asarray(tokens)
    inputs = np.empty(tokens.shape, dtype=np.int64)
    inputs[:, 0] = ids[BOS]
    inputs[:, 1:] = category_ids[tokens[:, :-1]]
    return torch.from_numpy(inputs)


def category_ids(world: World) -> list[int]:
    ids = vocabulary(world)
    return [ids[c] for c in world.categories]


@torch.no_grad()
def model_category_probs(model, world: World, tokens: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """The model's probabilities of the category tokens at positions 1..L, as they are (not renormalised).

    (sequences, L, categories), float64, the softmax over the whole vocabulary
    read at the category columns: a row sums to one minus the mass the model
    puts on ``<bos>``, ``<pad>`` and ``<unk>``.
    """
    inputs = input_ids(tokens, world)
    columns = category_ids(world)
    probs = []
    for start in range(0, inputs.shape[0], batch_size):
        logits = model(input_ids=inputs[start : start + batch_size]).logits.double()
        probs.append(torch.softmax(logits, dim=-1)[..., columns].numpy())
    return np.concatenate(probs)


def renormalised(category_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(predictive, outside)``: the category probabilities renormalised, and the mass outside them."""
    mass = category_probs.sum(axis=-1)
    return category_probs / mass[..., None], 1.0 - mass


def model_predictive(model, world: World, tokens: np.ndarray, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """The model's predictive at positions 1..L of each sequence.

    Returns ``(predictive, outside)``: ``predictive`` (sequences, L, categories)
    is the model's next-token distribution restricted to the category tokens and
    renormalised; ``outside`` (sequences, L) is the mass it puts on other tokens
    (``<bos>``, ``<pad>``, ``<unk>``) before renormalising. The probabilities as
    they are: :func:`model_category_probs`.
    """
    return renormalised(model_category_probs(model, world, tokens, batch_size))


def shipped_model(name: str) -> Path:
    """The folder of a shipped model, e.g. ``shipped_model("dirichlet")`` (the name ``windtunnel:dirichlet``)."""
    return windtunnel_model(name)
