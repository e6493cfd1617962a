"""``bayesmatrix embedding``: the embedding study of a log with embeddings (held-out density, rank, continuity)."""

from __future__ import annotations

# The study's defaults (bayesmatrix.analysis.embedding.study.RANKS), repeated so `--help` imports nothing heavy.
RANKS = "1,2,4,8,16,32,64"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embedding",
        help="embedding compression and continuity of a log with embeddings",
        description="Embedding compression and continuity of an LLM log with embeddings: held-out density "
        "against a global Dirichlet and nearest neighbours, the rank, the compression ratio and a continuity "
        "plot (README, \"Embedding compression\"). With --shrink, write the log with only the study's columns "
        "instead.",
    )
    p.add_argument("log", metavar="LOG", help="LLM log with 'embedding' (bayesmatrix log --embeddings), or "
                   "corpus:smollm2, the shipped log of SmolLM2 on the corpus")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="folder for the tables, summary.json and the plot")
    target.add_argument("--shrink", metavar="FILE",
                        help="instead of the study, write LOG with only the study's --columns (the rest folded "
                        "into <other>) to FILE")
    p.add_argument("--ranks", default=RANKS, help="ranks to try, e.g. 1,2,4,8")
    p.add_argument("--columns", dest="num_columns", type=int, default=256, metavar="N",
                   help="keep the N columns of largest mean probability, fold the rest into <other> "
                   "(0: all columns, <other> dropped)")
    p.add_argument("--features", type=int, default=64,
                   help="principal components of the embedding kept")
    p.add_argument("--pairs", dest="num_pairs", type=int, default=20000, metavar="N",
                   help="random prompt pairs for continuity")
    p.add_argument("--batch-size", type=int, default=0, help="SVI minibatch rows (0: full batch)")
    p.add_argument("--num-samples", type=int, default=200, help="draws from the fitted guide")
    p.add_argument("--max-steps", type=int, default=20000, help="SVI steps at most")
    p.add_argument("--learning-rate", type=float, default=0.01, help="Adam step size")
    p.add_argument("--seed", type=int, default=0, help="split, pairs and SVI seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run)


def parse_ranks(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; anything else is an InputError naming the ranks."""
    from bayesmatrix.data.errors import InputError

    try:
        return tuple(int(rank) for rank in text.split(","))
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list of integers", field="ranks") from None


def _run(args) -> int:
    from bayesmatrix.data.catalog import resolve
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.data.llmlog import OTHER, read_log

    ranks = parse_ranks(args.ranks)
    ds = read_log(resolve(args.log, field="log"))
    if args.shrink is not None:
        from bayesmatrix.analysis.embedding.study import shrink_log
        from bayesmatrix.data.llmlog import write_log

        if not args.num_columns:
            raise InputError("must be a positive number of columns to keep", field="num_columns")
        write_log(shrink_log(ds, args.num_columns, args.seed), args.shrink)
        print(f"wrote {args.shrink}: {args.num_columns} columns and {OTHER!r} from {ds.sizes['col']}")
        return 0

    from bayesmatrix.analysis.embedding.study import embedding_study, format_study, write_study

    study = embedding_study(
        ds, ranks=ranks, num_columns=args.num_columns or None, features=args.features, num_pairs=args.num_pairs,
        batch_size=args.batch_size or None, num_samples=args.num_samples, max_steps=args.max_steps,
        learning_rate=args.learning_rate, seed=args.seed, progress_bar=not args.quiet, file=args.log,
    )
    write_study(study, args.out)
    print(format_study(study))
    print(f"\nwritten to {args.out}")
    return 0
