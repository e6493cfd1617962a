"""The ``bayesmatrix`` command: parse options, call one function, turn bad input into one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

import bayesmatrix.commands as _commands
from data.errors import InputError

# Order of the subcommands in --help; a module not listed here comes last.
ORDER = ["log", "import", "simulate", "fit", "diagnose", "compare", "report", "windtunnel", "demo"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _command_modules() -> list[str]:
    found = [info.name.removeprefix("cmd_") for info in pkgutil.iter_modules(_commands.__path__)]
    return sorted(found, key=lambda name: (ORDER.index(name) if name in ORDER else len(ORDER), name))


def build_parser(prog: str = "bayesmatrix", only: Sequence[str] | None = None) -> argparse.ArgumentParser:
    from bayesmatrix import __version__

    parser = OneLineParser(
        prog=prog,
        description="Model an LLM as a Bayesian stand-in for one enormous matrix: log it, fit it, diagnose it.",
    )
    parser.add_argument("--version", action="version", version=f"bayesmatrix {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for name in _command_modules():
        if only is not None and name not in only:
            continue
        module = importlib.import_module(f"bayesmatrix.commands.cmd_{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "bayesmatrix", only: Sequence[str] | None = None) -> int:
    parser = build_parser(prog, only)
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except InputError as error:
        sys.stderr.write(f"{prog} {args.command}: error: {error}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog} {args.command}: interrupted\n")
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
