"""``python -m analysis``: diagnostics, comparison and the report."""

import sys

from bayesmatrix.cli import main

sys.exit(main(prog="python -m analysis", only=["diagnose", "compare", "report"]))
