"""Training wind-tunnel transformers on fresh sequences from a world, with checkpoints and resume.

Every step draws a new batch from the world (infinite data; batch ``step`` is a
function of ``(seed, step)`` only), and the loss is the next-token
cross-entropy over the whole vocabulary at every position, plus, with
``outside_penalty = lambda > 0``, ``lambda`` times ``-log`` of the mass on the
category tokens. The cross-entropy already contains that term once
(``-log p_y = -log(p_y / m) - log m`` with ``m`` the category mass), but its
gradient through the shared weights is buried under the label noise of the
sampled tokens; weighting it lets the model learn to put (next to) nothing on
``<bos>``, ``<pad>`` and ``<unk>``, which the strict score charges it for. The
penalty needs nothing the data do not say: those tokens never follow. The optimiser is AdamW with a linear warm-up
and a cosine decay to zero. Every ``eval_every`` steps the KL from the exact
posterior predictive is measured on held-out sequences and appended to
``learning_curve.csv`` in the output folder.

A checkpoint (model, optimiser, schedule, torch RNG state, step, learning
curve) is written atomically every ``checkpoint_every`` steps and when the run is
interrupted. Running the same command again continues from it; different
options are an :class:`InputError`. At the end the folder becomes a regular
``transformers`` model (``save_pretrained`` for the model and tokenizer) with
``training.json``, and the checkpoint is removed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from bayesmatrix.data.atomic import atomic_path, write_text_atomic
from bayesmatrix.data.errors import InputError, checked_seed
from bayesmatrix.data.windtunnel.modeling import (
    HIDDEN_SIZE,
    NUM_HEADS,
    NUM_LAYERS,
    TRAINING_RECORD,
    build_model,
    build_tokenizer,
    category_ids,
    check_size,
    count_parameters,
    input_ids,
    model_category_probs,
    receptive_field,
    renormalised,
)
from bayesmatrix.data.closed_forms import kl_bits
from bayesmatrix.data.windtunnel.worlds import get_world, held_out_rng, train_rng

CHECKPOINT = "checkpoint.pt"
LEARNING_CURVE = "learning_curve.csv"
# The learning curve's held-out sequences: their own seed, apart from `evaluate`'s.
CURVE_SEED = 7
CURVE_SEQUENCES = 512
# kl_bits is the category probabilities renormalised, strict_kl_bits taken as they are
# (evaluation.py); learning curves written before strict_kl_bits existed lack it and train_cpu_seconds.
CURVE_FIELDS = (
    "step", "train_seconds", "train_cpu_seconds", "learning_rate", "train_loss",
    "strict_kl_bits", "kl_bits", "kl_bits_last_position", "outside_mass",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything that determines a training run; a resumed run must match it exactly.

    Attributes:
        world: ``"dirichlet"`` or ``"mixture"`` (see ``bayesmatrix.data.windtunnel.worlds.WORLDS``).
        steps: optimiser steps.
        arch: ``"llama"`` (rotary positions) or ``"gpt2"`` (learned absolute positions).
        window: sliding attention window ``W`` (Llama only); ``None`` for full causal attention.
        seed: initial weights and the training data stream.
        length: tokens per training sequence ``K``.
        batch_size: sequences per step.
        learning_rate: peak learning rate.
        warmup_steps: linear warm-up steps; ``None`` means 5% of ``steps``.
        weight_decay: AdamW's decoupled weight decay.
        outside_penalty: weight of the extra ``-log(mass on the category tokens)`` term in the loss.
        eval_every: steps between learning-curve evaluations.
        checkpoint_every: steps between checkpoints.
        hidden_size: the model's width (default the shipped models' 64).
        num_layers: transformer layers (default 2).
        num_heads: attention heads, dividing ``hidden_size`` (default 4).
    """

    world: str
    steps: int
    arch: str = "llama"
    window: int | None = None
    seed: int = 0
    length: int = 32
    batch_size: int = 256
    learning_rate: float = 3e-3
    warmup_steps: int | None = None
    weight_decay: float = 0.01
    outside_penalty: float = 0.0
    eval_every: int = 100
    checkpoint_every: int = 200
    hidden_size: int = HIDDEN_SIZE
    num_layers: int = NUM_LAYERS
    num_heads: int = NUM_HEADS

    def __post_init__(self):
        get_world(self.world)
        check_size(self.hidden_size, self.num_layers, self.num_heads)
        checked_seed(self.seed)
        positive = ("steps", "length", "batch_size", "eval_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise InputError(f"must be at least 1, not {getattr(self, name)}", field=name)
        if not self.learning_rate > 0:
            raise InputError(f"must be positive, not {self.learning_rate}", field="learning_rate")
        if not self.outside_penalty >= 0:
            raise InputError(f"must be zero or more, not {self.outside_penalty}", field="outside_penalty")

    @property
    def resolved_warmup_steps(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 20)


class TrainResult(NamedTuple):
    """What a training run produced."""

    path: Path
    """The trained model's folder."""
    record: dict
    """Its ``training.json``: options, command, parameter count, timings, final learning-curve row."""
    curve: list[dict]
    """The learning curve, one dict per evaluation (fields ``CURVE_FIELDS``)."""
    resumed_from: int
    """The step this invocation started at (0 for a fresh run; ``steps`` if it was already complete)."""


def train(
    options: TrainOptions,
    out: str | os.PathLike,
    *,
    threads: int = 1,
    progress: bool = True,
    command: str | None = None,
) -> TrainResult:
    """Train (or resume, or find already trained) a wind-tunnel model into the folder ``out``.

    ``command`` is recorded in ``training.json`` as the way to reproduce the run
    (``bayesmatrix windtunnel train`` records its own command line).
    """
    out_path = Path(out)
    world = get_world(options.world)
    done = _finished_record(out_path, options)
    if done is not None:
        return TrainResult(out_path, done, _read_curve(out_path), options.steps)
    checkpoint = _matching_checkpoint(out_path, options)
    out_path.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)

    max_positions = 4 * options.length  # room to evaluate length generalisation
    model = build_model(world, options.arch, options.window, max_positions, options.seed,
                        hidden_size=options.hidden_size, num_layers=options.num_layers, num_heads=options.num_heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    scheduler = _cosine_with_warmup(optimizer, options.resolved_warmup_steps, options.steps)
    step, curve, train_seconds, cpu_seconds = 0, [], 0.0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        step, curve, train_seconds = checkpoint["step"], checkpoint["curve"], checkpoint["train_seconds"]
        cpu_seconds = checkpoint.get("train_cpu_seconds", 0.0)
    resumed_from = step

    columns = torch.tensor(category_ids(world))
    curve_sequences = world.sample(held_out_rng(CURVE_SEED), CURVE_SEQUENCES, options.length).tokens
    curve_exact = world.predictive(curve_sequences)

    def save_checkpoint():
        state = {
            "options": dataclasses.asdict(options),
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "curve": curve,
            "train_seconds": train_seconds,
            "train_cpu_seconds": cpu_seconds,
        }
        with atomic_path(out_path / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    bar = _progress_bar(options, step, progress)
    losses: list[float] = []
    model.train()
    try:
        with _deferred_interrupts() as interrupted:
            while step < options.steps:
                if interrupted:
                    # Only between steps, so the checkpoint is one consistent state.
                    save_checkpoint()
                    raise KeyboardInterrupt
                started, cpu_started = time.perf_counter(), time.process_time()
                batch = world.sample(train_rng(options.seed, step), options.batch_size, options.length)
                log_probs = torch.log_softmax(model(input_ids=input_ids(batch.tokens, world)).logits, dim=-1)
                labels = columns[torch.from_numpy(batch.tokens)]
                loss = -log_probs.gather(-1, labels[..., None]).mean()
                if options.outside_penalty:
                    loss = loss - options.outside_penalty * torch.logsumexp(log_probs[..., columns], dim=-1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                train_seconds += time.perf_counter() - started
                cpu_seconds += time.process_time() - cpu_started
                losses.append(loss.item())
                bar.update(1)
                if step % options.eval_every == 0 or step == options.steps:
                    row = _curve_row(model, world, curve_sequences, curve_exact, scheduler, losses,
                                     step=step, train_seconds=train_seconds, train_cpu_seconds=cpu_seconds)
                    curve.append(row)
                    losses = []
                    _write_curve(out_path, curve)
                    bar.set_postfix(loss=f"{row['train_loss']:.4f}", kl_bits=f"{row['kl_bits']:.2e}")
                if step % options.checkpoint_every == 0 and step < options.steps:
                    save_checkpoint()
    finally:
        bar.close()

    model.eval()
    model.save_pretrained(out_path)
    build_tokenizer(world).save_pretrained(out_path)
    record = {
        "options": dataclasses.asdict(options),
        "command": command,
        "world": world.to_json(),
        "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
        "parameters": count_parameters(model),
        "receptive_field": receptive_field(model.config),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "threads": threads,
        "torch_version": torch.__version__,
        "final": curve[-1],
    }
    write_text_atomic(out_path / TRAINING_RECORD, json.dumps(record, indent=2) + "\n")
    (out_path / CHECKPOINT).unlink(missing_ok=True)
    return TrainResult(out_path, record, curve, resumed_from)


@contextlib.contextmanager
def _deferred_interrupts():
    """Turn Ctrl-C and SIGTERM into a flag the training loop checks between steps."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be set from the main thread
        return
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _finished_record(out: Path, options: TrainOptions) -> dict | None:
    record_path = out / TRAINING_RECORD
    if not record_path.is_file():
        if out.is_dir() and any(out.iterdir()) and not (out / CHECKPOINT).is_file():
            raise InputError("exists and is neither empty nor a wind-tunnel training folder", file=str(out))
        return None
    record = json.loads(record_path.read_text())
    _check_same_options(record["options"], options, str(record_path))
    return record


def _matching_checkpoint(out: Path, options: TrainOptions) -> dict | None:
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, pickle errors, EOFError...
        raise InputError(f"unreadable checkpoint ({type(error).__name__}); remove it to start over", file=str(path))
    _check_same_options(checkpoint["options"], options, str(path))
    return checkpoint


def _check_same_options(saved: dict, options: TrainOptions, file: str) -> None:
    # An option added after a folder was trained is absent from its record and took its default.
    defaults = {field.name: field.default for field in dataclasses.fields(TrainOptions)}
    wanted = dataclasses.asdict(options)
    for name, value in wanted.items():
        if saved.get(name, defaults[name]) != value:
            raise InputError(
                f"this folder was trained with {name} = {saved.get(name)!r}, the command asks for {value!r}; "
                "rerun with the same options to continue, or train into another folder",
                file=file,
                field=name,
            )


def _cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int):
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def _progress_bar(options: TrainOptions, step: int, progress: bool):
    from tqdm import tqdm

    label = options.world + (f" W={options.window}" if options.window is not None else "")
    return tqdm(
        total=options.steps, initial=step, desc=f"train {options.arch} {label}", unit="step",
        file=sys.stderr, disable=not progress, dynamic_ncols=True,
    )  # fmt: skip


@torch.no_grad()
def _curve_row(model, world, sequences, exact, scheduler, losses, *, step, train_seconds, train_cpu_seconds):
    model.eval()
    probs = model_category_probs(model, world, sequences)
    model.train()
    predictive, outside = renormalised(probs)
    kl = kl_bits(exact, predictive)  # (sequences, positions)
    return {
        "step": step,
        "train_seconds": round(train_seconds, 2),
        "train_cpu_seconds": round(train_cpu_seconds, 2),
        "learning_rate": scheduler.get_last_lr()[0],
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "strict_kl_bits": float(kl_bits(exact, probs).mean()),
        "kl_bits": float(kl.mean()),
        "kl_bits_last_position": float(kl[:, -1].mean()),
        "outside_mass": float(outside.mean()),
    }


def _write_curve(out: Path, curve: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(curve)
    write_text_atomic(out / LEARNING_CURVE, buffer.getvalue())


def _read_curve(out: Path) -> list[dict]:
    path = out / LEARNING_CURVE
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
