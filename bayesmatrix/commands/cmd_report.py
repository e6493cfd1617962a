"""``bayesmatrix report``: one self-contained HTML report of run directories (and the logs they were fitted to)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write one self-contained HTML report of run directories",
        description="Write one HTML file (figures embedded, no external resources) with the diagnostics of "
        "each RUN_DIR (failed checks flagged), a PSIS-LOO comparison of runs fitted to the same log, and, "
        "with --log, the pictures of the log: the instrumented LLM, its predictive against the fitted "
        "updaters, KL from exact Bayes and entropy by position, the excess code length by step, and a "
        "posterior predictive check; with --phenomena, the studies of `bayesmatrix phenomena`.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories written by `fit`")
    p.add_argument("--out", required=True, metavar="HTML", help="the report file to write")
    p.add_argument("--log", action="append", default=[], metavar="LOG",
                   help="an LLM log the runs were fitted to (repeatable)")
    p.add_argument("--title", default="bayesmatrix report")
    p.add_argument("--model", metavar="NAME",
                   help="the model whose tokenizer names each log's top-k token ids in the instrumented-LLM "
                   "picture (a shipped name such as smollm2, a folder, a .gguf file or a hub id; only the "
                   "tokenizer is loaded); default: each log's own model, where this machine has it")
    p.add_argument("--stated-alpha", metavar="A,B,...",
                   help="the stated prior of every ICL log's excess code length (default: each log's task alpha)")
    p.add_argument("--phenomena", metavar="DIR",
                   help="a folder `bayesmatrix phenomena` wrote: a section with a figure for each of its studies "
                   "(chain of thought, long contexts, hallucination)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run)


def _run(args) -> int:
    from bayesmatrix.analysis.report import build_report
    from bayesmatrix.data.catalog import resolve

    from bayesmatrix.commands.parsing import parse_floats

    logs = [resolve(log, field="log") for log in args.log]  # a shipped log by name, e.g. corpus:smollm2
    stated_alpha = None if args.stated_alpha is None else parse_floats(args.stated_alpha, "stated_alpha")
    result = build_report(args.runs, args.out, logs, title=args.title, model=args.model, progress=not args.quiet,
                          stated_alpha=stated_alpha, phenomena=args.phenomena)  # fmt: skip
    print(f"wrote {result.path}")
    return 0
