"""One module per subcommand of ``bayesmatrix``.

Each module defines ``register(subparsers)``, which adds its parser and sets
``run`` (a function of the parsed arguments returning an exit status or None).
Modules import their heavy dependencies inside ``run`` so that ``--help`` is fast.
"""
