"""Shared test set-up: two host devices for JAX, so parallel chains are exercised on CPU, JAX's compilation
cache in ``.cache/jax``; and the llm rule.

The XLA flag and the cache must be set before JAX initialises, which is why they live here.

The llm rule: a test that needs the ``llm`` extra (torch, transformers, ...) carries
``@pytest.mark.llm``. On a stack without that extra (the second stack of ``make test``:
Python 3.12, ArviZ 1.x, no torch) a test file that cannot even be imported for want
of it is collected as its test functions, each marked ``llm``, so that
``-m "not llm"`` counts them as deselected; run anyway, each fails naming the extra.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
# JAX's persistent compilation cache: the suite compiles the same NUTS and SVI programs in many tests and
# in the commands they run as subprocesses (which inherit this), and compiling is most of a small fit's
# time. Entries are keyed by the program, the flags and the JAX version, so both stacks share the folder.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LLM_EXTRA = ("torch", "transformers", "tokenizers", "gguf", "accelerate")  # pyproject.toml's llm extra
HAVE_LLM_EXTRA = all(importlib.util.find_spec(name) is not None for name in LLM_EXTRA)


def missing_llm_import(path: Path) -> str | None:
    """The first module-level import of a test file that fails for want of the llm extra, or None."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Import):
            names, attributes = [alias.name for alias in node.names], []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names, attributes = [node.module], [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            try:
                module = importlib.import_module(name)
                for attribute in attributes:  # a package's names may load their modules on first use
                    getattr(module, attribute, None)
            except ModuleNotFoundError as error:
                if (error.name or "").split(".")[0] in LLM_EXTRA:
                    return name
                raise
    return None


def test_names(path: Path) -> list[str]:
    """``test_*`` functions of a file, and ``Test*::test_*`` methods, as pytest would name them."""
    names = []
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names += [f"{node.name}::{item.name}" for item in node.body
                      if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test")]
    return names


class NeedsLlmExtra(pytest.Item):
    """A test of a file that imports what the llm extra installs, on a stack without it."""

    def __init__(self, *, needs: str, **kwargs):
        super().__init__(**kwargs)
        self.needs = needs
        self.add_marker(pytest.mark.llm)

    def runtest(self):
        raise RuntimeError(f"{self.path.name} imports {self.needs}, which needs the llm extra: "
                           "pip install 'bayesmatrix[llm]' (or deselect it: -m 'not llm')")

    def reportinfo(self):
        return self.path, None, self.name


class LlmExtraFile(pytest.File):
    """A test file that cannot be imported without the llm extra: its tests, unimported."""

    def __init__(self, *, needs: str, **kwargs):
        super().__init__(**kwargs)
        self.needs = needs

    def collect(self):
        for name in test_names(self.path):
            yield NeedsLlmExtra.from_parent(self, name=name, needs=self.needs)


def pytest_pycollect_makemodule(module_path, parent):
    if HAVE_LLM_EXTRA:
        return None
    needs = missing_llm_import(Path(module_path))
    if needs is None:
        return None
    return LlmExtraFile.from_parent(parent, path=module_path, needs=needs)
