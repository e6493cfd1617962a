"""Logging a transformers causal LM's next-token distributions into an LLM log.

The log is the one of :mod:`bayesmatrix.data.llmlog` (README.md, "The LLM log").
The package is split by what each part does:

- :mod:`~bayesmatrix.data.llm.loading`: loading a model (a shipped one by name,
  :mod:`bayesmatrix.data.catalog`; a folder, a GGUF file or a hub id) and hashing its weights;
- :mod:`~bayesmatrix.data.llm.forward`: batched forward passes, read into rows;
- :mod:`~bayesmatrix.data.llm.rendering`: where an ICL task's observations (and
  the continuations of categories of several tokens) and a log's columns sit
  among the tokens;
- :mod:`~bayesmatrix.data.llm.checkpoint`: the sidecar folder a killed run
  resumes from;
- :mod:`~bayesmatrix.data.llm.drivers`: :func:`log_task`, :func:`log_prompts`
  and :func:`run_log`, the checked, resumable run behind ``bayesmatrix log``.
"""

import importlib

# Each public name and the module it lives in. They load on first use (PEP 562), so the parts that
# need no torch (the checkpoint, the server client, read_prompts) import without it.
_HOMES = {
    "checkpoint": ("DEFAULT_CHECKPOINT_EVERY", "PARTIAL_SUFFIX", "Checkpoint", "UnfinishedRunError"),
    "drivers": ("log_prompts", "log_task", "run_log"),
    "forward": ("RowOptions", "category_probs", "next_token_logprobs"),
    "loading": ("DEFAULT_MODEL", "DTYPES", "SMOLLM2_FILE", "SMOLLM2_PACKAGE", "LoadedModel", "files_sha256",
                "load_model"),
    "rendering": ("CategoryTokens", "EpisodeTokens", "PackedEpisode", "column_token_ids", "episode_tokens",
                  "pack_alternatives", "prompt_tokens", "task_category_tokens", "task_column_ids"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    if name == "read_prompts":
        from bayesmatrix.data.columns import read_prompts

        return read_prompts
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CategoryTokens",
    "Checkpoint",
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_MODEL",
    "DTYPES",
    "EpisodeTokens",
    "LoadedModel",
    "PARTIAL_SUFFIX",
    "PackedEpisode",
    "RowOptions",
    "SMOLLM2_FILE",
    "SMOLLM2_PACKAGE",
    "UnfinishedRunError",
    "category_probs",
    "column_token_ids",
    "episode_tokens",
    "files_sha256",
    "load_model",
    "log_prompts",
    "log_task",
    "next_token_logprobs",
    "pack_alternatives",
    "prompt_tokens",
    "read_prompts",
    "run_log",
    "task_category_tokens",
    "task_column_ids",
]
