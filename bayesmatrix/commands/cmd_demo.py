"""``bayesmatrix demo``: the end-to-end demo on SmolLM2 (log, fit, diagnose, compare, check, report)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the pipeline end to end on SmolLM2 and write an HTML report",
        description="Log SmolLM2-135M-Instruct on coin flips and die rolls, fit the ICL models (icl, "
        "icl-general, icl-mixture and the baselines icl-none, icl-frequency) by NUTS and icl-general by SVI, "
        "diagnose them, compare them by PSIS-LOO, check exchangeability and the martingale property on "
        "SmolLM2 and the shipped wind-tunnel transformer, and write OUT/report.html. Under 10 minutes on "
        "2 CPU cores; --quick is a tiny version (about 2 minutes).",
    )
    p.add_argument("--out", default="demo-out", metavar="DIR",
                   help="folder for the logs, runs, figures and report (default demo-out); "
                   "a previous demo's folder is replaced")
    p.add_argument("--quick", action="store_true", help="a tiny version, for tests (about 2 minutes)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run)


def _run(args) -> int:
    from pathlib import Path

    from bayesmatrix.workflows.demo import FULL, QUICK, check_out

    check_out(Path(args.out))  # before anything slow
    settings = QUICK if args.quick else FULL

    from bayesmatrix.inference.runtime import configure

    configure(num_chains=settings.num_chains)  # before JAX starts: one host device per chain

    from bayesmatrix.workflows.demo import run_demo

    result = run_demo(args.out, quick=args.quick, seed=args.seed)
    print(result.summary)
    return 0
