"""``bayesmatrix fit``: fit a model to an LLM log by NUTS or SVI into a run directory."""

from __future__ import annotations

from pathlib import Path

MODEL_HELP = ("a registered model (README, \"Models\": matrix, mixture, embedding, icl, icl-general, ...) or "
              "MODULE:ATTRIBUTE naming a ModelSpec in an importable module (README, \"Add your own model\")")


DEVICES = ("cpu", "gpu", "cuda", "rocm", "tpu")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit a model to an LLM log (NUTS or SVI) and write a run directory",
        description="Fit a NumPyro model to an LLM log and write RUN_DIR (posterior.nc, run.json, "
        "summary.csv, plots/). The models are listed in README, \"Models\"; a model of your own is "
        "fitted as --model MODULE:ATTRIBUTE.",
    )
    p.add_argument("log", metavar="LOG", help="LLM log (netCDF) from `log`, `import` or `simulate`, or the "
                   "shipped corpus:smollm2")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--method", choices=("nuts", "svi"), default="nuts")
    p.add_argument("--sampler", choices=("numpyro", "compiled"), default="numpyro",
                   help="NUTS sampler: NumPyro's, or NUTS compiled as one loop, for models whose gradient costs "
                   "microseconds (README, \"Fit, diagnose, compare\"; BENCHMARKS.md, \"Sampler overhead\")")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    p.add_argument("--force", action="store_true", help="replace RUN_DIR if it exists")
    p.add_argument("--components", type=int, default=2, metavar="K", help="mixture components (mixture models)")
    p.add_argument("--rank", type=int, default=4, metavar="R", help="rank of U V^T (embedding model)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="SVI minibatch rows (embedding model; default: every row)")
    p.add_argument("--observe", default="probs", metavar="SITES",
                   help="what a row's data are: probs, counts, or probs,counts (models that take them; "
                   "matrix with counts alone is fitted through their sufficient statistic)")
    p.add_argument("--keep-other", action="store_true", help="keep the <other> column as a category (ICL models)")
    p.add_argument("--num-samples", type=int, default=1000, help="draws per chain (NUTS) or from the guide (SVI)")
    p.add_argument("--num-warmup", type=int, default=1000)
    p.add_argument("--num-chains", type=int, default=4)
    p.add_argument("--target-accept", dest="target_accept_prob", type=float, default=0.9,
                   help="NUTS target acceptance probability")
    p.add_argument("--guide", choices=("normal", "mvn", "delta"), default="normal", help="SVI autoguide")
    p.add_argument("--learning-rate", type=float, default=0.01, help="SVI Adam step size")
    p.add_argument("--max-steps", type=int, default=20000, help="SVI step limit (stops earlier at an ELBO plateau)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--x64", action="store_true", help="compute in float64")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="JAX platform (gpu: CUDA or ROCm, whichever JAX has)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures in RUN_DIR/plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run)


def parse_sites(text: str) -> tuple[str, ...]:
    """``"probs,counts"`` as ``("probs", "counts")``; an empty name is an error naming the option."""
    from bayesmatrix.data.errors import InputError

    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise InputError(f"is {text!r}; name one or more sites, comma-separated (probs, counts or probs,counts)",
                         field="observe")  # fmt: skip
    return names


def check_device(device: str) -> str:
    """The JAX platform of ``device`` (``gpu``: CUDA or ROCm, whichever has a device here), or an
    :class:`InputError` on ``device`` when JAX finds none; before the log is read.

    Asking JAX starts it, which is harmless off the CPU: only the CPU's host device count
    must be set before JAX starts (``configure``).
    """
    if device == "cpu":
        return device
    import jax

    from bayesmatrix.data.errors import InputError

    for platform in ("cuda", "rocm") if device == "gpu" else (device,):
        try:
            jax.devices(platform)
        except RuntimeError:  # no plugin for the platform, or no device of it
            continue
        return platform
    found = sorted({d.platform for d in jax.devices()})
    raise InputError(f"is {device!r}, but JAX finds no such device on this machine (only {', '.join(found)})",
                     field="device")  # fmt: skip


def _run(args) -> int:
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.inference.fit import FitOptions

    # Every option is checked (FitOptions) before JAX starts or anything is read.
    options = FitOptions(
        model=args.model,
        method=args.method,
        sampler=args.sampler,
        components=args.components,
        keep_other=args.keep_other,
        num_samples=args.num_samples,
        num_warmup=args.num_warmup,
        num_chains=args.num_chains,
        seed=args.seed,
        target_accept_prob=args.target_accept_prob,
        guide=args.guide,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps,
        progress_bar=not args.quiet,
        rank=args.rank,
        batch_size=args.batch_size,
        observe=parse_sites(args.observe),
    )
    if Path(args.out).exists() and not args.force:
        raise InputError("already exists; choose another --out or pass --force to replace it", file=args.out)
    from bayesmatrix.data.atomic import check_input_file
    from bayesmatrix.data.catalog import resolve
    from bayesmatrix.inference.rundir import check_destination

    args.log = resolve(args.log, field="log")  # a shipped log by name, e.g. corpus:smollm2
    check_input_file(args.log)
    check_destination(args.out, args.force, inputs=(args.log,))  # /proc/x, --force onto '.': now, not after sampling

    from bayesmatrix.inference.runtime import configure

    platform = check_device(args.device)
    configure(num_chains=args.num_chains if args.method == "nuts" else 1, x64=args.x64, device=platform)

    from bayesmatrix.analysis.diagnostics import diagnose_datatree, format_diagnosis
    from bayesmatrix.analysis.plots import run_figures
    from bayesmatrix.inference.fit import fit

    result = fit(args.log, options, args.out, force=args.force, figures=None if args.no_plots else run_figures)
    diagnosis = diagnose_datatree(result.datatree, args.method, result.info.get("converged"))
    print(format_diagnosis(diagnosis, title=f"{args.model} by {args.method}: {result.path}"))
    if diagnosis.flags and args.method == "nuts" and not args.x64:
        print("hint: this fit ran in float32; a precise log (a large fitted tau or strength) needs --x64")
    print(f"wrote {result.path} (posterior.nc, run.json, summary.csv{'' if args.no_plots else ', plots/'})")
    return 0
