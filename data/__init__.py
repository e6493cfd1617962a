"""The data layer: the LLM log format, logging real LLMs, importers and task files.

Depends on nothing else of ours (docs/architecture.md). Importing the package is
light: the log functions (which need xarray) load on first use, so the command
line can name :class:`InputError` without loading xarray.
"""

from bayesmatrix.data.errors import InputError

_LOG_NAMES = ("OTHER", "SCHEMA", "make_log", "read_log", "validate_log", "write_log")

__all__ = ["InputError", *_LOG_NAMES]


def __getattr__(name: str):
    if name in _LOG_NAMES:
        from bayesmatrix.data import llmlog

        return getattr(llmlog, name)
    raise AttributeError(f"module 'bayesmatrix.data' has no attribute {name!r}")
