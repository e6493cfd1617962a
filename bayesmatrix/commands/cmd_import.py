"""``bayesmatrix import``: turn an OpenAI, vLLM or llama.cpp logprob log into an LLM log."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Read a JSONL file of OpenAI-compatible responses with logprobs (chat
completions, legacy completions with or without echo=true, the Responses API,
or vLLM with prompt_logprobs), one response per line, optionally wrapped as
{"request": ..., "response": ...}, or a server-sent-event log of streamed chat
completions or responses, and write an LLM log. By default each response gives
one row: its first generated token. A column missing from a row's reported
top-k gets 0 and its mass goes to <other> = 1 - sum(columns); each row's
reported_mass says how much probability the server reported, and the summary
line how much the top-k left unaccounted. Details: README.md, section Import.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("import", help="import OpenAI / vLLM logprob JSONL as an LLM log", description=DESCRIPTION)
    p.add_argument("file", metavar="FILE.jsonl", help="one response per line, or a server-sent-event log (data: lines)")
    p.add_argument("--format", choices=["auto", "openai-chat", "openai-completions", "openai-responses", "vllm"],
                   default="auto",
                   help="the responses' shape (default: auto, decided per line)")
    columns = p.add_mutually_exclusive_group()
    columns.add_argument("--columns", metavar="FILE",
                         help='column labels, one per line, verbatim; a line starting with " is a JSON string')
    columns.add_argument("--topk", type=int, metavar="K",
                         help="columns: the union of every row's K most probable tokens (default: all reported)")
    p.add_argument("--all-positions", action="store_true", help="every generated position is a row, not just the first")
    p.add_argument("--prompt-positions", action="store_true",
                   help="prompt positions (vLLM's prompt_logprobs, an echoed prompt) become rows too")
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
    mass = log["reported_mass"].values
    print(f"reported mass: mean {mass.mean():.4f}, min {mass.min():.4f} (row {int(mass.argmin())}): the top-k left "
          f"{1.0 - mass.mean():.4f} of the probability unaccounted on average, {1.0 - mass.min():.4f} at most; "
          "it is in <other>")  # fmt: skip
    print(f"wrote {written}: {log.sizes['row']} rows x {log.sizes['col']} columns")
    return 0
