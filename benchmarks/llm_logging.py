"""Benchmark of the LLM logger (bayesmatrix.data.llm) on SmolLM2, both sides timed in one run.

(a) One-pass ICL logging against a forward pass per prefix: an episode of K
    observations gives K + 1 predictives; a causal LM's output at a token depends
    only on the tokens before it, so one pass over the episode reads them all.
    Goal: one pass at least 10x faster at K = 32.
(b) The logger's throughput (real tokens per second, everything included:
    drawing episodes, tokenising, checking the rendering, reading rows, building
    the log) against a bare batched forward pass of the same model on the same
    right-padded inputs. Goal: ratio at least 0.9. Two bare passes are timed:
    a plain ``model(...)`` call (logits at every position) and one that projects
    only the read positions through the LM head, as the logger does.

Each timing is the best of ``--repeats`` runs (the slow per-prefix side runs
once), which is what a contended CPU allows. Run from the repository root:
``python -m benchmarks.llm_logging`` (about 2.5 CPU minutes; longer on a busy machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks import print_table
from bayesmatrix.data.llm import episode_tokens, load_model, log_task, next_token_logprobs, task_category_tokens
from bayesmatrix.data.tasks import draw_episode, get_task


def best_time(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def episode_inputs(loaded, task, episodes: int, length: int, seed: int):
    """Token ids and read positions of each episode, as the logger builds them."""
    categories = task_category_tokens(loaded.tokenizer, task)
    placed = [episode_tokens(loaded, task, draw_episode(task, length, seed, e), categories) for e in range(episodes)]
    return [(episode.token_ids, episode.read_at) for episode in placed]


def per_prefix(loaded, inputs) -> np.ndarray:
    """The K + 1 predictives of each episode, one forward pass per prefix."""
    return np.stack([next_token_logprobs(loaded, tokens[: r + 1]) for tokens, read_at in inputs for r in read_at])


def bare_forward(loaded, inputs, batch_size: int, read_only: bool) -> None:
    """Right-padded batched forward passes with no logging around them."""
    model = loaded.model
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        width = max(len(tokens) for tokens, _ in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, (tokens, _) in enumerate(batch):
            input_ids[b, : len(tokens)] = torch.as_tensor(tokens)
            attention_mask[b, : len(tokens)] = 1
        keep = {"logits_to_keep": torch.as_tensor([r for _, r in batch])} if read_only else {}
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **keep)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    loaded = load_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - start:.1f} s; torch threads: {args.threads}")
    task = get_task("coin")

    # (a) one pass against a pass per prefix, one episode at a time on both sides
    inputs = episode_inputs(loaded, task, args.prefix_episodes, args.length, args.seed)
    one_pass = best_time(
        lambda: log_task(loaded, task, args.prefix_episodes, args.length, args.seed, batch_size=1), args.repeats
    )
    prefixes = best_time(lambda: per_prefix(loaded, inputs), 1)  # the slow side: once is enough to time it
    ds = log_task(loaded, task, args.prefix_episodes, args.length, args.seed, batch_size=1)
    reference = per_prefix(loaded, inputs)[:, ds["col_token_id"].values[:-1]]
    agreement = np.abs(np.exp(reference) - ds["probs"].values[:, :-1]).max()

    # (b) logger throughput against bare batched forward passes on the same inputs
    inputs = episode_inputs(loaded, task, args.episodes, args.length, args.seed)
    tokens = sum(len(t) for t, _ in inputs)
    logger = best_time(
        lambda: log_task(loaded, task, args.episodes, args.length, args.seed, batch_size=args.batch_size),
        args.repeats,
    )
    bare_all = best_time(lambda: bare_forward(loaded, inputs, args.batch_size, read_only=False), args.repeats)
    bare_read = best_time(lambda: bare_forward(loaded, inputs, args.batch_size, read_only=True), args.repeats)

    rows = [
        (f"(a) one pass vs per prefix, {args.prefix_episodes} episodes, K={args.length}",
         f"{one_pass:.2f} s", f"{prefixes:.2f} s", prefixes / one_pass, ">= 10"),
        (f"(b) logger vs bare forward (all logits), {args.episodes} episodes, batch {args.batch_size}",
         f"{tokens / logger:.0f} tok/s", f"{tokens / bare_all:.0f} tok/s", bare_all / logger, ">= 0.9"),
        ("(b) logger vs bare forward (read positions' logits only)",
         f"{tokens / logger:.0f} tok/s", f"{tokens / bare_read:.0f} tok/s", bare_read / logger, ">= 0.9"),
    ]  # fmt: skip
    print(f"max |one pass - per prefix| on category probabilities: {agreement:.1e}")
    print_table(("comparison", "ours", "other", "ratio", "goal"), rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--length", type=int, default=32, help="observations per episode (K)")
    parser.add_argument("--prefix-episodes", type=int, default=3, help="episodes for (a)")
    parser.add_argument("--episodes", type=int, default=32, help="episodes for (b)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
