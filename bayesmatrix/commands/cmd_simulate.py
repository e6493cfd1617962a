"""``bayesmatrix simulate KIND``: write a synthetic LLM log drawn from known parameters."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Draw a synthetic LLM log from known parameters; the parameters are stored as
JSON in the log's 'truth' attribute. The rows are drawn by the registered
NumPyro models themselves at those parameters. Vectors are comma-separated
("1,2,3"), per-component tables separate components with ';' ("1,2,3;4,5,6").
The generative stories are in README.md ("Simulate") and in the docstring of
bayesmatrix.inference.simulate.
"""

# Options holding a vector ("1,2,3") or a per-component table ("1,2;3,4"), by dest.
VECTORS = ("alpha_mean", "weights", "alpha", "world_alpha", "world_weights")
TABLES = ("alphas", "world_alphas", "framing_alphas")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="write a synthetic LLM log from known parameters (matrix, icl, icl-mixture, embedding)",
        description=DESCRIPTION,
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True

    matrix = kinds.add_parser("matrix", help="rows pi_r ~ Dirichlet(alpha) or a Dirichlet mixture")
    matrix.add_argument("--rows", type=int, required=True)
    matrix.add_argument("--cols", type=int, help="number of columns C (not counting <other>)")
    matrix.add_argument("--alpha-mean", help="mean m1,..,mC of alpha (normalised to sum 1); default uniform")
    matrix.add_argument("--concentration", type=float, help="s = sum(alpha); default C")
    matrix.add_argument("--components", type=int, help="K, checked against --alphas")
    matrix.add_argument("--weights", help="mixture weights w1,..,wK (normalised; default uniform)")
    matrix.add_argument("--alphas", help='per-component alphas, "a,b,c;d,e,f"')
    matrix.add_argument("--counts-per-row", type=int, default=0, help="N > 0 adds counts ~ Multinomial(N, pi_r)")
    matrix.add_argument(
        "--probs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store pi_r as probs (default); --no-probs stores counts/N instead",
    )

    icl = kinds.add_parser("icl", help="ICL episodes read by a generalised Bayesian updater")
    _episode_options(icl)
    icl.add_argument("--alpha", help="the updater's prior a1,..,aC (required unless --framing-alphas)")
    icl.add_argument(
        "--framing-alphas",
        help='one prior per framing level, "a,b;c,d;...": episode e is under level e mod levels, read by '
        "icl-framed (the log gets framing and framing_levels); decay and temperature stay 1",
    )
    icl.add_argument(
        "--world-alpha", help="the world's Dirichlet b1,..,bC (default: --alpha; all ones with --framing-alphas)"
    )
    _updater_options(icl)

    mixture = kinds.add_parser("icl-mixture", help="ICL episodes read by an updater with a Dirichlet-mixture prior")
    _episode_options(mixture)
    mixture.add_argument("--components", type=int, help="K, checked against --alphas")
    mixture.add_argument("--weights", help="prior weights w1,..,wK (normalised; default uniform)")
    mixture.add_argument("--alphas", required=True, help='per-component alphas, "a,b,c;d,e,f"')
    mixture.add_argument("--world-weights", help="the world's mixture weights (default: --weights)")
    mixture.add_argument("--world-alphas", help="the world's per-component alphas (default: --alphas)")
    _updater_options(mixture)

    embedding = kinds.add_parser("embedding", help="rows Dirichlet(s * softmax(b + U V^T e_r)) from embeddings e_r")
    embedding.add_argument("--rows", type=int, required=True)
    embedding.add_argument("--cols", type=int, required=True)
    embedding.add_argument("--embed-dim", type=int, required=True)
    embedding.add_argument("--rank", type=int, required=True)
    embedding.add_argument("--concentration", type=float, default=50.0, help="s")
    embedding.add_argument("--counts-per-row", type=int, default=0)

    for kind in (matrix, icl, mixture, embedding):
        kind.add_argument("--out", required=True, help="the log to write (netCDF)")
        kind.add_argument("--seed", type=int, default=0)
        kind.set_defaults(run=_run)


def _episode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--length", type=int, required=True, help="K in-context observations per episode")


def _updater_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decay", type=float, default=1.0, help="in (0, 1]; 1 = exchangeable (default)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=200.0, help="precision of the reported distribution")
    p.add_argument("--other-mass", type=float, default=0.0, help="mass on <other>, in [0, 1)")


def parse_table(text: str, field: str) -> tuple[tuple[float, ...], ...]:
    """``"a,b,c;d,e,f"`` -> one tuple per component (rows separated by ';'), all of one length."""
    from bayesmatrix.commands.parsing import parse_floats
    from bayesmatrix.data.errors import InputError

    rows = tuple(parse_floats(part, field) for part in text.split(";"))
    if len({len(row) for row in rows}) != 1:
        lengths = ", ".join(str(len(row)) for row in rows)
        raise InputError(f"rows have different lengths ({lengths}); each component needs one value per column", field=field)
    return rows


def typed_options(args: argparse.Namespace) -> dict:
    """The subcommand's options as the typed values :func:`bayesmatrix.inference.simulate.simulate` takes."""
    from bayesmatrix.commands.parsing import parse_floats

    options = {key: value for key, value in vars(args).items()
               if key not in ("command", "kind", "run", "out") and not key.startswith("_")}
    for name, value in options.items():
        if value is not None and name in VECTORS:
            options[name] = parse_floats(value, name)
        elif value is not None and name in TABLES:
            options[name] = parse_table(value, name)
    return options


def _run(args: argparse.Namespace) -> int:
    from bayesmatrix.data.atomic import check_output_file
    from bayesmatrix.data.llmlog import write_log
    from bayesmatrix.inference.simulate import simulate

    check_output_file(args.out)  # before the work, not after it
    log = simulate(args.kind, **typed_options(args))
    written = write_log(log, args.out)
    print(f"wrote {written}: {log.sizes['row']} rows x {log.sizes['col']} columns ({args.kind}, seed {args.seed})")
    return 0
