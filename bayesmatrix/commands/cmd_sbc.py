"""``bayesmatrix sbc MODEL``: simulation-based calibration of a model on logs it simulates itself."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Simulation-based calibration (Talts et al. 2018): each replication draws the
model's parameters from its prior, simulates a log from them with the model
itself (as `bayesmatrix simulate` does), prepares it as `fit` does and fits it
with NUTS; the ranks of the true parameters among the posterior draws are then
uniform when the inference is right. Prints one JSON object with a chi-square
p-value per parameter component. See README.md, "Simulate".
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sbc",
        help="simulation-based calibration of the matrix or icl model (slow)",
        description=DESCRIPTION,
    )
    p.add_argument("model", metavar="MODEL", choices=("matrix", "icl"), help="matrix or icl")
    p.add_argument("--replications", type=int, default=100, help="simulated logs, each fitted once")
    p.add_argument("--num-warmup", type=int, default=300, help="NUTS warm-up steps per fit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--epsilon",
        type=float,
        default=1e-300,
        help="clip of the observed probabilities; the models' default 1e-6 changes data drawn from "
        "extreme priors, so calibration of the inference itself is checked with a negligible clip",
    )
    p.add_argument("--x64", action="store_true", help="float64, so a negligible clip does not underflow")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from bayesmatrix.data.errors import InputError
    from bayesmatrix.inference.runtime import configure

    if args.replications < 1:
        raise InputError(f"is {args.replications}; SBC needs at least one replication", field="replications")
    if args.num_warmup < 1:
        raise InputError(f"is {args.num_warmup}; NUTS needs warm-up steps", field="num_warmup")
    configure(x64=args.x64)

    from bayesmatrix.analysis.sbc import report, sbc_model

    result = sbc_model(
        args.model, num_replications=args.replications, num_warmup=args.num_warmup, epsilon=args.epsilon,
        seed=args.seed,
    )
    print(json.dumps(report(args.model, result, args.replications)))
    return 0
