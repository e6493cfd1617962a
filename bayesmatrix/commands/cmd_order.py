"""``bayesmatrix order``: the in-context predictive across orders of the same examples, against exact Bayes."""

from __future__ import annotations

import argparse
import shlex

DESCRIPTION = """\
Order and position (README.md, "Order and position"). Each MODEL reads M multisets
of k examples, drawn from its task's prior as the logger draws episodes, each in P
orders (the first as drawn, the others random permutations). Per model: the order
variance, the variance over orders of each category's predictive probability
(renormalised), averaged over categories and multisets, with its standard error;
the largest total variation between two orders; and the strict KL in bits from the
exact Bayesian predictive of the task's stated prior (the model's category
probabilities as they are) of the raw predictive (one order, averaged over the
orders) against the permutation-averaged predictive, with the renormalised KLs
beside them. A wind-tunnel model (a trained folder or windtunnel:NAME) is read on
its own world's task, whose prior is exact; any other model on --task.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "order",
        help="order variance and the permutation-averaged predictive's distance from Bayes",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="wind-tunnel folders or names (windtunnel:dirichlet, ...), smollm2, a local folder, a "
                   ".gguf file or a hub id")
    p.add_argument("--task", default="coin",
                   help="the task of the models that are not wind tunnels (a registry name or a .toml file)")
    p.add_argument("--multisets", dest="num_multisets", type=int, default=64, metavar="M",
                   help="multisets of examples")
    p.add_argument("--orders", dest="num_orders", type=int, default=16, metavar="P", help="orders of each")
    p.add_argument("--examples", dest="num_examples", type=int, default=16, metavar="K",
                   help="examples in each multiset")
    p.add_argument("--keep-last", action="store_true",
                   help="permute all but the last example, which stays last (the input the prediction is made "
                   "from), so only the order of the others varies")
    p.add_argument("--seed", type=int, default=0, help="seed of the multisets and of the orders")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", metavar="FILE", help="also write the table to FILE (.json with the command, or .csv)")
    p.set_defaults(run=_run)


def _run(args) -> int:
    import sys

    import torch

    from bayesmatrix.analysis.order import check_settings, format_order_table, load_case, measure_case, order_row
    from bayesmatrix.analysis.order import write_order_table
    from bayesmatrix.data.atomic import check_output_file

    check_settings(args.num_multisets, args.num_examples, args.num_orders)  # before loading any model
    if args.out is not None:
        check_output_file(args.out)  # before the work, not after it
    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.models:
        case = load_case(spec, args.task)
        print(f"{spec}: {case.task.name}, {args.num_multisets} x {args.num_orders} prompts", file=sys.stderr)
        result = measure_case(case, args.num_multisets, args.num_examples, args.num_orders, args.seed,
                              batch_size=args.batch_size, keep_last=args.keep_last)
        rows.append(order_row(case, result))
        del case
    print(format_order_table(rows))
    if args.out is not None:
        print(f"wrote {write_order_table(rows, args.out, command=order_command(args))}")
    return 0


def order_command(args) -> str:
    """The ``bayesmatrix order`` command line that reproduces ``args`` (every setting spelled out)."""
    words = ["bayesmatrix", "order", *args.models, "--task", args.task, "--multisets", str(args.num_multisets),
             "--orders", str(args.num_orders), "--examples", str(args.num_examples), "--seed", str(args.seed)]
    if args.keep_last:
        words.append("--keep-last")
    if args.out is not None:
        words += ["--out", str(args.out)]
    return shlex.join(words)
