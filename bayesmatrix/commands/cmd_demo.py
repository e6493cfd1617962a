"""``bayesmatrix demo``: a placeholder demo that logs SmolLM2 on coin flips and checks the log it wrote."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the pipeline end to end on the default LLM (for now: the logging stage)",
        description="Log SmolLM2's predictives on coin-flip episodes, read the log back and check it. "
        "For now the demo covers the logging stage only.",
    )
    p.add_argument("--out", default="demo-out", help="folder for the demo's files (default demo-out)")
    p.add_argument("--episodes", type=int, default=8, help="coin-flip episodes (default 8)")
    p.add_argument("--length", type=int, default=16, help="flips per episode (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from data.llm import run_log
    from data.llmlog import read_log

    path = run_log(
        Path(args.out) / "coin.nc", task="coin", episodes=args.episodes, length=args.length, seed=args.seed
    )
    log = read_log(path)  # validates the file as any later stage would
    mass = log["probs"].values[:, :-1].sum(axis=1).mean()
    tokens = [str(token) for token in log["col"].values[:-1]]
    shape = f"{args.episodes} episodes x {args.length + 1} positions"
    print(f"logged {log.sizes['row']} rows ({shape}) of {log.attrs['model']}")
    print(f"mean probability on the coin's tokens {tokens}: {mass:.2f}")
    print(f"wrote {path}")
    return 0
