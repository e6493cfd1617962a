"""``python -m data``: the data layer's subcommands (log, import, simulate)."""

import sys

from bayesmatrix.cli import main

sys.exit(main(prog="python -m data", only=["log", "import", "simulate", "windtunnel"]))
