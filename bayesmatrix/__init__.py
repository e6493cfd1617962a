"""bayesmatrix: an LLM as a Bayesian stand-in for one enormous matrix.

The library lives in the top-level packages ``data``, ``models``, ``inference``
and ``analysis``; this package holds the one command, ``bayesmatrix``, that
wires them together.
"""

from data.llmlog import software_version

__version__ = software_version()
