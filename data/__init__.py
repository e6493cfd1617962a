"""The data layer: the LLM log format, logging real LLMs, importers and simulators.

Depends on nothing else of ours (DESIGN.md §4).
"""

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, SCHEMA, make_log, read_log, validate_log, write_log

__all__ = ["InputError", "OTHER", "SCHEMA", "make_log", "read_log", "validate_log", "write_log"]
