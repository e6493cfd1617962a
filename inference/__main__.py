"""``python -m inference``: fit a model to an LLM log, diagnose and compare runs."""

import sys

from bayesmatrix.cli import main

sys.exit(main(prog="python -m inference", only=["fit", "diagnose", "compare"]))
