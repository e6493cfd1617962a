"""``bayesmatrix import``: turn an OpenAI or vLLM logprob JSONL file into an LLM log."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Read a JSONL file of OpenAI-compatible responses with logprobs (chat
completions, legacy completions, or vLLM with prompt_logprobs), one response
per line, optionally wrapped as {"request": ..., "response": ...}, and write an
LLM log. By default each response gives one row: its first generated token.
A column missing from a row's reported top-k gets 0 and its mass goes to
<other> = 1 - sum(columns). Details: README.md, section Import.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("import", help="import OpenAI / vLLM logprob JSONL as an LLM log", description=DESCRIPTION)
    p.add_argument("file", metavar="FILE.jsonl", help="one response per line")
    p.add_argument("--format", choices=["auto", "openai-chat", "openai-completions", "vllm"], default="auto",
                   help="the responses' shape (default: auto, decided per line)")
    columns = p.add_mutually_exclusive_group()
    columns.add_argument("--columns", metavar="FILE",
                         help='column labels, one per line, verbatim; a line starting with " is a JSON string')
    columns.add_argument("--topk", type=int, metavar="K",
                         help="columns: the union of every row's K most probable tokens (default: all reported)")
    p.add_argument("--all-positions", action="store_true", help="every generated position is a row, not just the first")
    p.add_argument("--prompt-positions", action="store_true", help="vLLM's prompt_logprobs become rows too")
    p.add_argument("--out", required=True, metavar="LOG.nc", help="the log to write (netCDF)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from bayesmatrix.data.columns import read_columns
    from bayesmatrix.data.importers import import_jsonl
    from bayesmatrix.data.atomic import check_output_file
    from bayesmatrix.data.llmlog import write_log

    check_output_file(args.out)  # before the work, not after it
    columns = None if args.columns is None else [label for _, label in read_columns(args.columns)]
    log = import_jsonl(
        args.file,
        format=args.format,
        columns=columns,
        topk=args.topk,
        all_positions=args.all_positions,
        prompt_positions=args.prompt_positions,
        progress=True,
    )
    written = write_log(log, args.out)
    print(f"wrote {written}: {log.sizes['row']} rows x {log.sizes['col']} columns")
    return 0
