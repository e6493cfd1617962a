"""``bayesmatrix diagnose``: convergence diagnostics of run directories."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "diagnose",
        help="R-hat, ESS, divergences, E-BFMI (NUTS) or the ELBO trace (SVI) of run directories",
        description="Print the diagnostics table of each RUN_DIR and flag what fails common thresholds "
        "(R-hat > 1.01, bulk or tail ESS < 100 per chain, any divergence, E-BFMI < 0.3, SVI without an "
        "ELBO plateau). Exit status 1 when a check fails.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.set_defaults(run=_run)


def _run(args) -> int:
    from bayesmatrix.analysis.diagnostics import diagnose, format_diagnosis

    failed = False
    for path in args.runs:
        diagnosis = diagnose(path)
        print(format_diagnosis(diagnosis, title=f"== {path}"))
        failed = failed or bool(diagnosis.flags)
    return 1 if failed else 0
