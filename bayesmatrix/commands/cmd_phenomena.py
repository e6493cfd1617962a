"""``bayesmatrix phenomena``: chain of thought, long contexts and hallucination, each a study on one LLM."""

from __future__ import annotations

import argparse
import shlex
import sys

DESCRIPTION = """\
The paper's other phenomena on a real LLM (README.md, "Phenomena on SmolLM2"), each
written as a JSON file (and, for long-context, its logs and runs) into --out, which
`bayesmatrix report --phenomena DIR` turns into a report section with a figure:

  cot            two-step arithmetic questions answered directly and step by step
                 (greedy); the entropy in bits of every next-token row along each
                 answer and the accuracy of the final number
  long-context   coin-flip episodes with unrelated text (the corpus's documentation
                 sentences) inserted before the episode or between its flips; excess
                 bits per step against exact Bayes and icl-general's fitted decay, by
                 inserted length
  hallucination  the corpus's fact prompts (capitals, chemical symbols, birth years)
                 against the shipped answer key; the AUROC with DeLong's interval of
                 the answer row's entropy as a signal of a wrong answer
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "phenomena",
        help="chain of thought, long contexts and hallucination on one LLM",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    studies = p.add_subparsers(dest="study", metavar="STUDY", parser_class=type(p))
    studies.required = True

    cot = studies.add_parser("cot", help="entropy along step-by-step against direct answers, and their accuracy")
    _common(cot)
    cot.add_argument("--prompts", type=int, default=40, help="arithmetic questions")
    cot.add_argument("--direct-tokens", type=int, default=16, help="most tokens of a direct answer")
    cot.add_argument("--cot-tokens", type=int, default=160, help="most tokens of a step-by-step answer")
    cot.add_argument("--seed", type=int, default=0, help="seed of the questions")
    cot.add_argument("--batch-size", type=int, default=8, help="questions generated together")
    cot.set_defaults(run=_cot)

    long = studies.add_parser("long-context", help="excess bits and decay of the coin task by inserted text")
    _common(long)
    long.add_argument("--inserted", default="0,64,256,1024", metavar="N,N,...",
                      help="lengths in tokens of the inserted text (0: the plain episode)")
    long.add_argument("--placements", default="before,inside", metavar="WHERE,...",
                      help="before the episode, inside it (between the flips at the middle), or both")
    long.add_argument("--episodes", type=int, default=16, help="episodes per condition")
    long.add_argument("--length", type=int, default=20, help="coin flips per episode")
    long.add_argument("--num-warmup", type=int, default=200, help="icl-general NUTS warm-up steps per chain")
    long.add_argument("--num-samples", type=int, default=200, help="icl-general NUTS draws per chain")
    long.add_argument("--num-chains", type=int, default=2)
    long.add_argument("--seed", type=int, default=0, help="seed of the episodes and of the fits")
    long.add_argument("--batch-size", type=int, default=4, help="episodes per forward pass")
    long.set_defaults(run=_long_context)

    hallucination = studies.add_parser("hallucination", help="AUROC of the answer row's entropy for a wrong answer")
    _common(hallucination)
    hallucination.add_argument("--groups", default="capital,element,born", metavar="GROUP,...",
                               help="the corpus's fact groups (each must be in the answer key)")
    hallucination.add_argument("--answers", metavar="JSONL",
                               help="the answer key (default: the shipped data/shipped/corpus/answers.jsonl)")
    hallucination.add_argument("--max-tokens", type=int, default=8, help="tokens of each greedy completion")
    hallucination.add_argument("--limit", type=int, help="at most this many prompts per group (default: all)")
    hallucination.add_argument("--batch-size", type=int, default=16, help="prompts generated together")
    hallucination.set_defaults(run=_hallucination)


def _common(p) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write the study's results into")
    p.add_argument("--model", default="smollm2",
                   help="the LLM: a shipped name, a local folder, a .gguf file or a hub id")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _command(study: str) -> str:
    return shlex.join(["bayesmatrix", "phenomena", study, *sys.argv[3:]]) if sys.argv[1:3] == ["phenomena", study] \
        else f"bayesmatrix phenomena {study}"


def _load(args):
    import torch

    from bayesmatrix.data.llm.loading import load_model

    torch.set_num_threads(args.threads)
    return load_model(args.model)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _progress(args):
    return None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def _cot(args) -> int:
    from bayesmatrix.workflows.phenomena import CotSettings, run_cot

    settings = CotSettings(prompts=args.prompts, direct_tokens=args.direct_tokens, cot_tokens=args.cot_tokens,
                           seed=args.seed, batch_size=args.batch_size)  # fmt: skip
    result = run_cot(_load(args), settings, args.out, command=_command("cot"), progress=_progress(args))
    for mode in ("direct", "cot"):
        s = result["summary"][mode]
        a = s["accuracy"]
        print(f"{mode:6s}  accuracy {a['mean']:.2f} [{a['low']:.2f}, {a['high']:.2f}] of {a['n']}  "
              f"mean entropy {s['mean_entropy_bits']:.2f} ± {s['mean_entropy_se']:.2f} bits/token  "
              f"first row {s['first_row_entropy_bits']:.2f} bits  {s['mean_tokens']:.0f} tokens")  # fmt: skip
    print(f"wrote {args.out}")
    return 0


def _long_context(args) -> int:
    from bayesmatrix.workflows.phenomena import LongContextSettings, run_long_context

    from bayesmatrix.commands.parsing import parse_floats

    inserted = parse_floats(args.inserted, "inserted")
    if any(n != int(n) for n in inserted):
        from bayesmatrix.data.errors import InputError

        raise InputError("must be whole numbers of tokens", field="inserted")
    settings = LongContextSettings(
        inserted=tuple(int(n) for n in inserted), placements=_names(args.placements),
        episodes=args.episodes, length=args.length, num_warmup=args.num_warmup, num_samples=args.num_samples,
        num_chains=args.num_chains, seed=args.seed, batch_size=args.batch_size,
    )  # fmt: skip
    result = run_long_context(_load(args), settings, args.out, command=_command("long-context"),
                              progress=_progress(args))  # fmt: skip
    for c in result["conditions"]:
        d = c["decay"]
        print(f"{c['placement']:7s} {c['inserted_tokens']:5d} tokens  excess {c['stated_excess_bits']:.3f} "
              f"± {c['stated_excess_se']:.3f} bits/step (renormalised {c['stated_excess_renormalised_bits']:.3f})  "
              f"decay {d['mean']:.2f} [{d['low']:.2f}, {d['high']:.2f}]")  # fmt: skip
    print(f"wrote {args.out}")
    return 0


def _hallucination(args) -> int:
    from bayesmatrix.workflows.phenomena import SHIPPED_ANSWERS, HallucinationSettings, run_hallucination

    settings = HallucinationSettings(groups=_names(args.groups), max_tokens=args.max_tokens,
                                     batch_size=args.batch_size, limit=args.limit)  # fmt: skip
    result = run_hallucination(_load(args), settings, args.out, command=_command("hallucination"),
                               answers=args.answers or SHIPPED_ANSWERS, progress=_progress(args))  # fmt: skip
    for group, s in result["summary"].items():
        a, area = s["accuracy"], s["auroc_wrong"]
        auroc = "AUROC -" if area is None else f"AUROC {area['auroc']:.2f} [{area['low']:.2f}, {area['high']:.2f}]"
        print(f"{group:8s} {s['prompts']:4d} prompts  accuracy {a['mean']:.2f} [{a['low']:.2f}, {a['high']:.2f}]  "
              f"{auroc}")  # fmt: skip
    print(f"wrote {args.out}")
    return 0
