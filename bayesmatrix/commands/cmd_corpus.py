"""``bayesmatrix corpus``: rebuild the prompt corpus of the embedding study, deterministically."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Build the prompt corpus for embedding compression: every templated factual
prompt plus prefixes of standard-library docstring sentences, drawn with one
seed. The output is JSON Lines (fields prompt, source, group); `bayesmatrix log
--prompts` reads it (the shipped file by its name: `--prompts corpus:prompts`).
The shipped file was built with CPython 3.11.7, whose docstrings it depends on. Details: README.md, section Embedding compression.
"""


def register(subparsers) -> None:
    # standard-library imports only: cheap enough for --help, and the defaults have one home
    from bayesmatrix.data.corpus import DOC_PROMPTS, SEED

    p = subparsers.add_parser(
        "corpus",
        help="rebuild the prompt corpus of the embedding study",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", help="JSON Lines file to write (default: the shipped corpus, corpus:prompts)")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the documentation draw")
    p.add_argument("--doc-prompts", type=int, default=DOC_PROMPTS,
                   help="documentation prefixes to draw")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from bayesmatrix.data.corpus import BUILT_WITH, SHIPPED_CORPUS, read_corpus, write_corpus

    if sys.version_info[:2] != (3, 11):
        print(f"warning: the shipped corpus was built with {BUILT_WITH}; docstrings differ between versions",
              file=sys.stderr)
    path = write_corpus(SHIPPED_CORPUS if args.out is None else args.out, args.seed, args.doc_prompts)
    records = read_corpus(path)
    facts = sum(record.source == "fact" for record in records)
    print(f"{path}: {len(records)} prompts ({facts} templated facts, {len(records) - facts} documentation prefixes)")
    return 0
