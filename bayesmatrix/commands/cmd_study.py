"""``bayesmatrix study``: one ICL task over a list of models, their Bayesian-ness in one table and one figure."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Log one ICL task on each of a list of models, fit icl (exact Bayes), icl-general
(recency decay and temperature) and the non-Bayesian icl-none and icl-frequency
to each log by NUTS, check exchangeability and the martingale property on each
model, and write one table (OUT/study.csv, printed) and one figure
(OUT/study.png) of the measures against parameter count: decay, temperature,
prior strength with intervals, excess bits per step, LOO of Bayes against
non-Bayes, order spread and martingale gap (README.md, "Studies").

Models: shipped names (smollm2, windtunnel:dirichlet, ...), transformers
folders, GGUF files or hub ids, as bayesmatrix log takes them. Each model has
its folder OUT/models/NAME; rerunning the same command skips the finished
models and resumes an interrupted one.
"""


def register(subparsers) -> None:
    from bayesmatrix.workflows.study import OBSERVE, StudySettings

    p = subparsers.add_parser(
        "study",
        help="one ICL task over a list of models: a table and a figure of Bayesian-ness against parameters",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, metavar="NAME|FILE",
                   help="an ICL task: a TOML task file, or coin, die, labels, coin-words, weather, "
                   "windtunnel-dirichlet, windtunnel-mixture")
    p.add_argument("--models", required=True, nargs="+", metavar="MODEL",
                   help="the models: smollm2, windtunnel:NAME, local folders, .gguf files or hub ids")
    p.add_argument("--out", default="study-out", metavar="DIR",
                   help="the study folder (default study-out); a study of the same task and settings is resumed")
    defaults = StudySettings()
    p.add_argument("--episodes", type=int, default=defaults.episodes, help="episodes logged per model")
    p.add_argument("--length", type=int, default=defaults.length, help="observations per episode")
    p.add_argument("--samples", type=int, default=defaults.samples, metavar="M",
                   help="tokens sampled from each row into the log's counts")
    p.add_argument("--observe", choices=OBSERVE, default=defaults.observe,
                   help="what the ICL models observe: the sampled tokens or the rows themselves")
    p.add_argument("--num-chains", type=int, default=defaults.num_chains)
    p.add_argument("--num-warmup", type=int, default=defaults.num_warmup)
    p.add_argument("--num-samples", type=int, default=defaults.num_samples)
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the episodes, samples, fits and checks")
    p.add_argument("--multisets", type=int, default=defaults.multisets,
                   help="exchangeability: multisets of examples, each shown in --orders orders")
    p.add_argument("--orders", type=int, default=defaults.orders)
    p.add_argument("--paths", type=int, default=defaults.paths,
                   help="martingale: paths drawn from the model itself, --path-length observations each")
    p.add_argument("--path-length", type=int, default=defaults.path_length)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="episodes per forward pass")
    p.add_argument("--device", default=defaults.device, help="torch device of the models")
    p.add_argument("--x64", action="store_true", help="fit in float64 (for --observe probs of a near-exact model)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from bayesmatrix.inference.runtime import configure

    configure(num_chains=args.num_chains, x64=args.x64)  # before JAX starts: one host device per chain

    from bayesmatrix.workflows.study import run_study

    result = run_study(
        args.models, args.task, args.out, episodes=args.episodes, length=args.length, samples=args.samples,
        observe=args.observe, num_chains=args.num_chains, num_warmup=args.num_warmup, num_samples=args.num_samples,
        seed=args.seed, multisets=args.multisets, orders=args.orders, paths=args.paths,
        path_length=args.path_length, batch_size=args.batch_size, device=args.device,
    )
    print(result.summary)
    reused = f" ({len(result.reused)} of {len(result.rows)} models finished earlier)" if result.reused else ""
    print(f"wrote {result.table} and {result.figure}{reused}")
    return 0
