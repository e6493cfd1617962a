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

from bayesmatrix.data.llm.checkpoint import DEFAULT_CHECKPOINT_EVERY, PARTIAL_SUFFIX, Checkpoint, UnfinishedRunError
from bayesmatrix.data.llm.drivers import log_prompts, log_task, read_prompts, run_log
from bayesmatrix.data.llm.forward import RowOptions, category_probs, next_token_logprobs
from bayesmatrix.data.llm.loading import (
    DEFAULT_MODEL,
    DTYPES,
    SMOLLM2_FILE,
    SMOLLM2_PACKAGE,
    LoadedModel,
    files_sha256,
    load_model,
)
from bayesmatrix.data.llm.rendering import (
    CategoryTokens,
    EpisodeTokens,
    PackedEpisode,
    column_token_ids,
    episode_tokens,
    pack_alternatives,
    prompt_tokens,
    task_category_tokens,
    task_column_ids,
)

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
