"""Benchmark of logging a task whose categories are several tokens each (bayesmatrix.data.llm), both sides in one run.

The task is the shipped ``weather`` (four categories, two tokens each with
SmolLM2), K = 32 observations per episode.

(a) The logger (one pass per batch: the observed category from the episode
    itself, every other category's continuations packed after it under a 4D
    attention mask) against brute force: a forward pass per category per read
    position, over the row's prompt and that category's tokens (all of a
    category's factors come from its one pass). Both sides one episode at a
    time. Goal: the logger at least 10x faster.
(b) The logger's token throughput (everything included: drawing episodes,
    tokenising, checking the rendering, packing the alternatives, building the
    mask, reading rows and building the log) against a bare batched forward
    pass over the same tokens, alternatives included (right-padded with a 2D
    mask, the same positions through the LM head). Goal: ratio at least 0.8.

Each timing is the best of ``--repeats`` runs (the brute-force side runs once).
Run from the repository root: ``python -m benchmarks.multitoken``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks import print_table
from benchmarks.llm_logging import best_time
from bayesmatrix.data.llm import (
    episode_tokens,
    load_model,
    log_task,
    pack_alternatives,
    task_category_tokens,
)
from bayesmatrix.data.tasks import draw_episode, get_task


def packed_inputs(loaded, task, episodes: int, length: int, seed: int):
    """Each episode's own tokens and the episode with its alternatives packed after it, as the logger lays it out."""
    categories = task_category_tokens(loaded.tokenizer, task)
    placed = [episode_tokens(loaded, task, draw_episode(task, length, seed, e), categories) for e in range(episodes)]
    return [(episode, pack_alternatives(episode, categories)) for episode in placed]


def brute_force(loaded, ds, tokens) -> np.ndarray:
    """Category probabilities (rows, categories): a full forward pass per category per row."""
    probs = np.zeros((ds.sizes["row"], len(tokens)))
    for row, prompt in enumerate(ds["prompt"].values):
        prefix = loaded.tokenizer(str(prompt))["input_ids"]
        for c, category in enumerate(tokens):
            sequence = prefix + list(category)
            reads = list(range(len(prefix) - 1, len(sequence) - 1))
            ids = torch.as_tensor([sequence])
            with torch.inference_mode():
                logits = loaded.model(input_ids=ids, use_cache=False).logits[0, reads]
            logprobs = torch.log_softmax(logits.double(), dim=-1)
            probs[row, c] = np.exp(float(logprobs[torch.arange(len(category)), torch.as_tensor(category)].sum()))
    return probs


def bare_forward(loaded, packed, batch_size: int) -> None:
    """Right-padded batched forward passes over the packed tokens, causal 2D mask, no logging around them."""
    model = loaded.model
    for start in range(0, len(packed), batch_size):
        batch = packed[start : start + batch_size]
        width = max(len(p.token_ids) for p in batch)
        reads = max(len(p.sources) for p in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, p in enumerate(batch):
            input_ids[b, : len(p.token_ids)] = torch.as_tensor(p.token_ids)
            attention_mask[b, : len(p.token_ids)] = 1
        keep = torch.as_tensor([p.sources + [p.sources[0]] * (reads - len(p.sources)) for p in batch])
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    loaded = load_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - start:.1f} s; torch threads: {args.threads}")
    task = get_task(args.task)
    categories = task_category_tokens(loaded.tokenizer, task)
    print(f"task {task.name}: {categories.rule}, tokens per category {[len(t) for t in categories.tokens]}")

    # (a) the logger against a pass per category per read position, one episode at a time on both sides
    one_pass = best_time(
        lambda: log_task(loaded, task, args.prefix_episodes, args.length, args.seed, batch_size=1), args.repeats
    )
    ds = log_task(loaded, task, args.prefix_episodes, args.length, args.seed, batch_size=1)
    tokens = [tuple(t) for t in json.loads(ds.attrs["category_tokens"])]
    start = time.perf_counter()
    reference = brute_force(loaded, ds, tokens)  # the slow side: once is enough to time it
    brute = time.perf_counter() - start
    agreement = np.abs(reference - ds["probs"].values[:, :-1]).max()
    passes = ds.sizes["row"] * len(tokens)

    # (b) logger throughput against a bare batched forward pass over the same tokens
    inputs = packed_inputs(loaded, task, args.episodes, args.length, args.seed)
    packed = [p for _, p in inputs]
    total = sum(len(p.token_ids) for p in packed)
    alternatives = total - sum(len(episode.token_ids) for episode, _ in inputs)
    logger = best_time(
        lambda: log_task(loaded, task, args.episodes, args.length, args.seed, batch_size=args.batch_size),
        args.repeats,
    )
    bare = best_time(lambda: bare_forward(loaded, packed, args.batch_size), args.repeats)
    heads = sum(len(p.sources) for p in packed)

    rows = [
        (f"(a) logger vs a pass per category per position ({passes} passes), {args.prefix_episodes} episodes, "
         f"K={args.length}", f"{one_pass:.2f} s", f"{brute:.2f} s", brute / one_pass, ">= 10"),
        (f"(b) logger vs bare batched forward, {args.episodes} episodes, batch {args.batch_size}",
         f"{total / logger:.0f} tok/s", f"{total / bare:.0f} tok/s", bare / logger, ">= 0.8"),
    ]  # fmt: skip
    print(f"max |logger - brute force| on category probabilities: {agreement:.1e}")
    print(f"tokens in (b): {total}, {alternatives} of them alternatives; {heads} positions through the LM head")
    print_table(("comparison", "ours", "other", "ratio", "goal"), rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="weather", help="a task name or task file (categories of several tokens)")
    parser.add_argument("--length", type=int, default=32, help="observations per episode (K)")
    parser.add_argument("--prefix-episodes", type=int, default=2, help="episodes for (a)")
    parser.add_argument("--episodes", type=int, default=32, help="episodes for (b)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
