"""``python -m bayesmatrix``: the same command as ``bayesmatrix``."""

import sys

from bayesmatrix.cli import main

sys.exit(main())
