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
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run)


def _run(args) -> int:
    from bayesmatrix.analysis.compare import compare_runs, format_comparison
    from bayesmatrix.data.atomic import check_output_file

    if args.out is not None:  # '' too: refused, not taken for "no output"
        check_output_file(args.out)  # before the work, not after it
    comparison = compare_runs(args.runs, progress=not args.quiet)
    print(format_comparison(comparison))
    if args.out is not None:
        from bayesmatrix.data.atomic import atomic_path

        with atomic_path(args.out) as tmp:
            comparison.table.to_csv(tmp)
        print(f"wrote {args.out} (the comparison table, {len(comparison.table)} runs)")
    return 0
