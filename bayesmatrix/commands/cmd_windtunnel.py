"""``bayesmatrix windtunnel``: train small transformers where the exact posterior is known, and score them."""

from __future__ import annotations

import shlex

DESCRIPTION = """\
The Bayesian wind tunnel (README.md, "Wind tunnel"). `train` fits a small transformer on
fresh sequences from a world whose posterior predictive is known in closed
form (dirichlet: pi ~ Dirichlet(2, 1, 0.5); mixture: 0.6 Dirichlet(4, 2, 1) +
0.4 Dirichlet(0.5, 0.5, 3); tokens A, B, C after <bos>). `eval` scores a
trained folder: KL(exact || model) in bits at every position, strict (the model's
category probabilities not renormalised) and renormalised, on held-out
sequences. The shipped models are named windtunnel:dirichlet, windtunnel:mixture, ...
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "windtunnel", help="train and score transformers on worlds with a known posterior", description=DESCRIPTION
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    train = actions.add_parser(
        "train",
        help="train a wind-tunnel transformer (resumes from OUT's checkpoint)",
        description="Train a small transformer on fresh sequences from a world. Checkpoints go to OUT; "
        "the same command continues an interrupted run. OUT ends as a regular transformers model folder "
        "with training.json and learning_curve.csv.",
    )
    train.add_argument("--world", required=True, help="a world of data.windtunnel.worlds.WORLDS: dirichlet or mixture")
    train.add_argument("--steps", type=int, required=True, help="optimiser steps")
    train.add_argument("--out", required=True, metavar="DIR", help="output folder")
    train.add_argument("--arch", choices=("llama", "gpt2", "nope"), default="llama",
                       help="llama (rotary, default), gpt2 (learned absolute positions) or nope (the llama without "
                       "any positional encoding)")
    train.add_argument("--window", type=int, metavar="W", help="sliding attention window (llama); 1 = self only")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--length", type=int, default=32, metavar="K", help="tokens per sequence")
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--lr", dest="learning_rate", type=float, default=3e-3, help="peak learning rate")
    train.add_argument("--warmup-steps", type=int, help="linear warm-up (default 5%% of --steps)")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--outside-penalty", type=float, default=0.0, metavar="LAMBDA",
                       help="add LAMBDA x -log(mass on the category tokens) to the loss, so the model learns to put "
                       "next to nothing on <bos>, <pad> and <unk> (the strict score charges that mass)")
    train.add_argument("--eval-every", type=int, default=100, help="steps between learning-curve evaluations")
    train.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    train.add_argument("--hidden-size", type=int, default=64, help="model width (the shipped models' 64)")
    train.add_argument("--layers", dest="num_layers", type=int, default=2, help="transformer layers")
    train.add_argument("--heads", dest="num_heads", type=int, default=4, help="attention heads (divide --hidden-size)")
    train.add_argument("--threads", type=int, default=1, help="torch threads")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

    score = actions.add_parser(
        "eval",
        help="score a trained folder: strict KL from the exact posterior predictive by position",
        description="The strict KL in bits at every position and its mean over positions 1..K: "
        "sum_c q_c log2(q_c / p_c), q the exact posterior predictive and p_c the model's probabilities of the "
        "category tokens as they are (mass on <bos>, <pad> or <unk> counts against it). Beside it the KL with p "
        "renormalised over the categories, and the mass outside them. --length beyond the training K scores "
        "positions never trained (up to GPT-2's learned positions; a rotary Llama has no limit). Held-out "
        "sequences come from a stream no training batch is drawn from.",
    )
    score.add_argument("model", metavar="MODEL",
                       help="a trained wind-tunnel folder, or a shipped one by name: windtunnel:dirichlet, ...")
    score.add_argument("--sequences", type=int, default=1000)
    score.add_argument("--length", type=int, metavar="L", help="tokens per sequence (default: the training K)")
    score.add_argument("--seed", type=int, help="held-out seed (default: the fixed evaluation seed)")
    score.add_argument("--out", metavar="FILE", help="write the curve to FILE (.json or .csv)")
    score.add_argument("--threads", type=int, default=1, help="torch threads")
    score.set_defaults(run=_eval)

    _register_loop(actions)
    _register_sweep(actions)


def _train(args) -> int:
    from bayesmatrix.data.windtunnel.training import TrainOptions, train

    options = TrainOptions(
        world=args.world,
        steps=args.steps,
        arch=args.arch,
        window=args.window,
        seed=args.seed,
        length=args.length,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        outside_penalty=args.outside_penalty,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
    )
    result = train(options, args.out, threads=args.threads, progress=not args.quiet,
                   command=train_command(options, args.out))
    final = result.record["final"]
    if result.resumed_from == options.steps:
        print(f"{args.out}: already trained ({options.steps} steps)")
    elif result.resumed_from:
        print(f"{args.out}: resumed at step {result.resumed_from}, finished {options.steps} steps")
    print(
        f"{args.out}: {result.record['parameters']} parameters, {result.record['train_seconds']:.0f} s training; "
        f"held-out mean KL {final['strict_kl_bits']:.3e} bits strict, {final['kl_bits']:.3e} renormalised "
        "(learning curve in learning_curve.csv)"
    )
    return 0


# Options with their own flag besides --world, --steps, --out, --arch and --window, in command-line order.
_TRAIN_FLAGS = {
    "seed": "--seed",
    "length": "--length",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "warmup_steps": "--warmup-steps",
    "weight_decay": "--weight-decay",
    "outside_penalty": "--outside-penalty",
    "eval_every": "--eval-every",
    "checkpoint_every": "--checkpoint-every",
    "hidden_size": "--hidden-size",
    "num_layers": "--layers",
    "num_heads": "--heads",
}


def train_command(options, out) -> str:
    """The ``bayesmatrix windtunnel train`` command line that reproduces ``options`` into ``out``.

    Options at their defaults are left out, except the seed.
    """
    from bayesmatrix.data.windtunnel.training import TrainOptions

    words = ["bayesmatrix", "windtunnel", "train", "--world", options.world, "--steps", str(options.steps)]
    words += ["--out", str(out), "--arch", options.arch]
    if options.window is not None:
        words += ["--window", str(options.window)]
    defaults = TrainOptions(world=options.world, steps=options.steps)
    for field, flag in _TRAIN_FLAGS.items():
        value = getattr(options, field)
        if value != getattr(defaults, field) or field == "seed":
            words += [flag, str(value)]
    return shlex.join(words)


def _eval(args) -> int:
    import torch

    from bayesmatrix.data.windtunnel.evaluation import evaluate, format_evaluation, write_evaluation
    from bayesmatrix.data.windtunnel.worlds import HELD_OUT_SEED

    torch.set_num_threads(args.threads)
    seed = HELD_OUT_SEED if args.seed is None else args.seed
    evaluation = evaluate(args.model, sequences=args.sequences, length=args.length, seed=seed)
    print(format_evaluation(evaluation))
    if args.out:
        print(f"wrote {write_evaluation(evaluation, args.out)}")
    return 0


def _register_loop(actions) -> None:
    # The defaults are those of bayesmatrix.workflows.windtunnel_loop.LoopSettings (a test keeps them equal).
    loop = actions.add_parser(
        "loop",
        help="close the loop: log the shipped models, fit the ICL models, read the prior back",
        description="Log each shipped wind-tunnel model (dirichlet, dirichlet-window4, mixture) with `bayesmatrix "
        "log` on its world's task and fit the ICL models to it with `bayesmatrix fit`, each as its own process, "
        "then print the fitted prior, decay and temperature against the world's alpha_true and the PSIS-LOO "
        "differences (README, \"Closing the loop\").",
    )
    loop.add_argument("out", metavar="DIR", help="folder for the logs and run directories; what it already holds "
                      "is reused, so other settings need another folder")
    loop.add_argument("--observe", choices=("counts", "probs"), default="counts",
                      help="fit the tokens sampled from each row (counts, default) or the rows themselves "
                      "(probs, in float64)")
    loop.add_argument("--episodes", type=int, default=64, help="episodes logged per model")
    loop.add_argument("--num-warmup", type=int, default=200, help="NUTS warm-up steps per chain")
    loop.add_argument("--num-samples", type=int, default=200, help="draws per chain")
    loop.add_argument("--seed", type=int, default=1, help="log and fit seed")
    loop.set_defaults(run=_loop)


def _loop(args) -> int:
    from bayesmatrix.workflows.windtunnel_loop import LoopSettings, run_loop

    settings = LoopSettings(episodes=args.episodes, observe=args.observe, num_warmup=args.num_warmup,
                            num_samples=args.num_samples, seed=args.seed)
    run_loop(args.out, settings)
    return 0


# Sweep flags that override a field of bayesmatrix.workflows.sweep.SweepSettings (the default or --quick recipe).
_SWEEP_OVERRIDES = ("steps", "batch_size", "eval_sequences", "episodes", "num_chains", "num_warmup", "num_samples")


def _register_sweep(actions) -> None:
    sweep = actions.add_parser(
        "sweep",
        help="in-context learning against model size: train and score seven sizes, then study them",
        description="Train wind-tunnel Llamas of seven sizes (about 1e3 to 5e5 parameters, width and depth) on the "
        "dirichlet world with one recipe (the same data stream, steps and batch), score each against the exact "
        "predictive (strict KL by position, beyond the training length too), then study the sizes as `bayesmatrix "
        "study` studies any models (in OUT/study: each logged on the world's task, icl, icl-general, icl-none and "
        "icl-frequency fitted to the sampled tokens, order and martingale checked); then one table (sweep.csv), its "
        "record (sweep.json) and one figure (sweep.png) of the Bayesian-ness measures against parameters, with the "
        "smallest size whose updater reads as exact marked (README, \"In-context learning against size\"). Every "
        "step is reused when OUT already holds it; training resumes from a size's checkpoint.",
    )
    sweep.add_argument("out", metavar="OUT", help="folder for the trained sizes, their scores and the study (reused)")
    sweep.add_argument("--results", metavar="DIR", help="folder for sweep.csv, sweep.json and sweep.png (default OUT)")
    sweep.add_argument("--quick", action="store_true",
                       help="two tiny sizes on a tiny recipe (40 steps, short logs and chains): a few minutes")
    sweep.add_argument("--steps", type=int, help="optimiser steps per size (default 1000; 40 with --quick)")
    sweep.add_argument("--batch-size", type=int, help="sequences per step (default 128; 32 with --quick)")
    sweep.add_argument("--sequences", dest="eval_sequences", type=int,
                       help="held-out sequences each size is scored on (default 2000; 200 with --quick)")
    sweep.add_argument("--episodes", type=int, help="episodes logged per size (default 64; 8 with --quick)")
    sweep.add_argument("--num-chains", type=int, help="chains per fit (default 2)")
    sweep.add_argument("--num-warmup", type=int, help="NUTS warm-up steps per chain (default 200; 150 with --quick)")
    sweep.add_argument("--num-samples", type=int, help="draws per chain (default 200; 150 with --quick)")
    sweep.add_argument("--threads", type=int, default=1, help="torch threads")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.set_defaults(run=_sweep)


def _sweep(args) -> int:
    import dataclasses
    import sys

    import torch

    from bayesmatrix.workflows.sweep import QUICK, SweepSettings, run_sweep

    torch.set_num_threads(args.threads)
    overrides = {name: getattr(args, name) for name in _SWEEP_OVERRIDES if getattr(args, name) is not None}
    settings = dataclasses.replace(QUICK if args.quick else SweepSettings(), **overrides)
    from bayesmatrix.inference.runtime import configure

    configure(num_chains=settings.num_chains)  # before JAX starts: one host device per chain
    run_sweep(args.out, settings, results=args.results, command=shlex.join(["bayesmatrix", *sys.argv[1:]]),
              progress=not args.quiet)
    return 0
