"""bayesmatrix: an LLM as a Bayesian stand-in for one enormous matrix.

One import name holds the layers (docs/architecture.md): ``bayesmatrix.data``
(the LLM log, logging LLMs, importers), ``bayesmatrix.models`` (NumPyro
models), ``bayesmatrix.inference`` (NUTS, SVI, run directories),
``bayesmatrix.analysis`` (diagnostics, comparison, the report),
``bayesmatrix.workflows`` (end-to-end pipelines) and ``bayesmatrix.commands``
(the command line). Importing this package loads none of them.
"""

from importlib import metadata as _metadata


def _version() -> str:
    try:
        return _metadata.version("bayesmatrix")
    except _metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


__version__ = _version()
