"""``bayesmatrix diagnose``: convergence diagnostics of run directories."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "diagnose",
        help="R-hat, ESS, divergences, E-BFMI (NUTS) or the ELBO plateau and the guide's Pareto k (SVI) of run directories",
        description="Print the diagnostics table of each RUN_DIR (the intervals of summary.csv) and flag what fails "
        "common thresholds: for NUTS, R-hat > 1.01 or not finite, bulk or tail ESS < 100 per chain, any divergence, "
        "E-BFMI < 0.3; for SVI, whose independent draws have no meaningful R-hat, an ELBO that had not reached a "
        "plateau (relative change of its last 500-step means above 1e-4) and a guide whose importance weights "
        "log p(x, z) - log q(z) have Pareto k above min(1 - 1/log10(S), 0.7). Exit status 1 when a check fails.",
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
