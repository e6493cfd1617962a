"""``bayesmatrix compare``: PSIS-LOO comparison of run directories."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare run directories fitted to the same log by PSIS-LOO",
        description="Rank RUN_DIRs by expected log predictive density (PSIS-LOO), with the difference to "
        "the best, its standard error, stacking weights and Pareto-k warnings.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", metavar="CSV", help="also write the table as CSV")
    p.add_argument("--log", metavar="LOG",
                   help="the log the runs were fitted to (its hash is checked): for an ICL log, adds each ICL "
                   "run's excess code length, KL(exact Bayes || LLM) in bits per step with its interval (README, "
                   "\"Excess code length\"); needed for LOO of a run that stores no pointwise log-likelihood "
                   "(fit leaves it out past 2^28 rows x draws)")
    p.add_argument("--stated-alpha", metavar="A,B,...",
                   help="with --log, the stated prior of the stated-prior excess (default: the log's task alpha)")
    p.add_argument("--subsample", type=int, metavar="ROWS",
                   help="with --log, estimate every run's LOO on this many rows drawn at random, with the "
                   "estimate's error against full LOO (default for runs without log-likelihoods: 2000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run)


def _run(args) -> int:
    from bayesmatrix.analysis.compare import compare_runs, format_comparison
    from bayesmatrix.analysis.excess import is_icl_log
    from bayesmatrix.commands.parsing import parse_floats
    from bayesmatrix.data.atomic import check_output_file
    from bayesmatrix.data.catalog import resolve
    from bayesmatrix.data.errors import InputError

    if args.out is not None:  # '' too: refused, not taken for "no output"
        check_output_file(args.out)  # before the work, not after it
    stated_alpha = None
    if args.stated_alpha is not None:
        if args.log is None:
            raise InputError("needs --log, the log whose excess it states", field="stated_alpha")
        stated_alpha = parse_floats(args.stated_alpha, "stated_alpha")
    log = None if args.log is None else resolve(args.log, field="log")
    comparison = compare_runs(args.runs, progress=not args.quiet, log=log, subsample=args.subsample)
    print(format_comparison(comparison))
    if log is not None and (stated_alpha is not None or is_icl_log(log)):
        from bayesmatrix.analysis.excess import excess_of_runs, format_excess

        print(format_excess(*excess_of_runs(comparison.paths, log, stated_alpha)))
    if args.out is not None:
        from bayesmatrix.data.atomic import atomic_path

        with atomic_path(args.out) as tmp:
            comparison.table.to_csv(tmp)
        print(f"wrote {args.out} (the comparison table, {len(comparison.table)} runs)")
    return 0
