"""The ``bayesmatrix`` command: parse options, call one function, turn bad input into one line and exit 2."""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import pkgutil
import sys
from typing import Sequence

import bayesmatrix.commands as _commands
from bayesmatrix.data.errors import InputError

TRACEBACK_VARIABLE = "BAYESMATRIX_TRACEBACK"
"""Set (to anything) to see the traceback of an internal error instead of its one line."""

LLM_EXTRA = ("torch", "transformers", "tokenizers", "gguf", "accelerate")
"""The packages of the ``llm`` extra (pyproject.toml), which only the commands that run an LLM need."""

# Order of the subcommands in --help; a module not listed here comes last.
ORDER = ["log", "import", "simulate", "fit", "diagnose", "compare", "report", "sbc", "embedding", "windtunnel", "phenomena", "corpus", "demo"]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows every option's default, unless its help text already speaks of it."""

    def _format_action(self, action):
        if not action.help and action.option_strings and _shows_default(action):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or not action.option_strings or not _shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


class RawDescriptionDefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """A description kept as written (a subcommand's own layout), options with their defaults."""


def _shows_default(action) -> bool:
    hidden = action.default is None or action.default is False or action.default is argparse.SUPPRESS
    return not hidden and action.help is not argparse.SUPPRESS  # ``is``: a default of 0 is shown


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2, and whose help shows defaults."""

    def __init__(self, *args, **kwargs):
        # a subcommand asking for its description as written still gets its defaults shown
        if kwargs.get("formatter_class") is argparse.RawDescriptionHelpFormatter:
            kwargs["formatter_class"] = RawDescriptionDefaultsHelpFormatter
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse's signature
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        # A subcommand's parser runs inside its parent's: the innermost one records itself first.
        if not hasattr(parsed, "_leaf_parser"):
            parsed._leaf_parser = self
        return parsed, rest


def option_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's Python name (its ``dest``) and the flag a user types for it."""
    flags = {}
    for action in parser._actions:
        long_forms = [option for option in action.option_strings if option.startswith("--")]
        if long_forms:
            flags[action.dest] = long_forms[0]
    return flags


def user_facing(error: InputError, parser: argparse.ArgumentParser) -> InputError:
    """``error`` with a field that is one of the command's options named by its flag.

    Library code raises :class:`InputError` with Python names (``field="num_samples"``);
    only here, at the command line, does a field become ``--num-samples``. Fields of a
    file (``file=`` set) keep their names: they are variables or keys of that file.
    """
    if error.file is None and error.field is not None:
        flag = option_flags(parser).get(error.field)
        if flag is not None:
            return error.renamed(flag)
    return error


def _command_modules() -> list[str]:
    # cmd_NAME modules are subcommands; other modules there (shared option parsing) are not
    modules = pkgutil.iter_modules(_commands.__path__)
    found = [info.name.removeprefix("cmd_") for info in modules if info.name.startswith("cmd_")]
    return sorted(found, key=lambda name: (ORDER.index(name) if name in ORDER else len(ORDER), name))


def build_parser(prog: str = "bayesmatrix") -> argparse.ArgumentParser:
    from bayesmatrix import __version__

    parser = OneLineParser(
        prog=prog,
        description="Model an LLM as a Bayesian stand-in for one enormous matrix: log it, fit it, diagnose it.",
    )
    parser.add_argument("--version", action="version", version=f"bayesmatrix {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for name in _command_modules():
        module = importlib.import_module(f"bayesmatrix.commands.cmd_{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "bayesmatrix") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except InputError as error:
        shown = user_facing(error, getattr(args, "_leaf_parser", parser))
        sys.stderr.write(f"{prog} {args.command}: error: {shown}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog} {args.command}: interrupted\n")
        return 130
    except OSError as error:  # the machine, not the input: a full disk, a permission, a vanished file
        where = f"{error.filename}: " if error.filename else ""
        sys.stderr.write(f"{prog} {args.command}: error: {where}{error.strerror or error}\n")
        return 1
    except MemoryError:
        sys.stderr.write(f"{prog} {args.command}: error: out of memory; try smaller settings\n")
        return 1
    except Exception as error:  # a bug of ours: one line, and where to send it
        if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in LLM_EXTRA:
            # not a bug: `pip install bayesmatrix` leaves torch out (README.md, Install)
            sys.stderr.write(f"{prog} {args.command} needs the llm extra: pip install 'bayesmatrix[llm]'\n")
            return 2
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        reason = " ".join(str(error).split())[:300]
        sys.stderr.write(f"{prog} {args.command}: internal error: {type(error).__name__}: {reason} "
                         f"(please report it with the command line; {TRACEBACK_VARIABLE}=1 shows the traceback)\n")
        return 1
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
