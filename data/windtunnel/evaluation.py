"""Scoring a trained wind-tunnel model against the exact posterior predictive, position by position.

At every position ``k`` the score is ``KL(exact || model)`` in bits, where the
model's predictive is its next-token distribution restricted to the category
tokens and renormalised; the mass it puts on other tokens is reported beside it.
Sequences come from the held-out stream (``data.windtunnel.worlds.held_out_rng``),
which no training batch is drawn from.

For a model with a sliding window, ``floor_kl_bits`` is the least KL any model
that sees only its receptive field can reach: the KL from the exact predictive
to the Bayesian predictive from the visible tokens alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bayesmatrix.data.atomic import write_text_atomic
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.closed_forms import kl_bits
from bayesmatrix.data.windtunnel.worlds import HELD_OUT_SEED, held_out_rng


class Evaluation(NamedTuple):
    """Per-position scores of a model; arrays are (positions,), position ``k`` predicts token ``k``."""

    model: str
    world: str
    sequences: int
    seed: int
    train_length: int
    """``K``: positions beyond it were never trained."""
    position: np.ndarray
    kl_bits: np.ndarray
    """Mean over sequences of KL(exact || model), bits."""
    kl_bits_se: np.ndarray
    """Its standard error over sequences."""
    outside_mass: np.ndarray
    """Mean mass the model puts outside the category tokens."""
    floor_kl_bits: np.ndarray | None
    """Least KL reachable with the model's receptive field (sliding-window models), else ``None``."""

    @property
    def mean_kl_bits(self) -> float:
        """Mean KL over all positions."""
        return float(self.kl_bits.mean())

    @property
    def mean_kl_bits_trained(self) -> float:
        """Mean KL over positions 1..K."""
        return float(self.kl_bits[: self.train_length].mean())

    @property
    def mean_kl_bits_beyond(self) -> float | None:
        """Mean KL over positions K+1..L (length generalisation), ``None`` when L <= K."""
        beyond = self.kl_bits[self.train_length :]
        return float(beyond.mean()) if beyond.size else None

    def summary(self) -> dict:
        summary = {
            "model": self.model,
            "world": self.world,
            "sequences": self.sequences,
            "seed": self.seed,
            "length": int(self.position[-1]),
            "train_length": self.train_length,
            "mean_kl_bits": self.mean_kl_bits,
            "mean_kl_bits_trained": self.mean_kl_bits_trained,
            "mean_kl_bits_beyond": self.mean_kl_bits_beyond,
            "mean_outside_mass": float(self.outside_mass.mean()),
        }
        if self.floor_kl_bits is not None:
            summary["mean_floor_kl_bits"] = float(self.floor_kl_bits.mean())
        return summary

    def rows(self) -> list[dict]:
        rows = []
        for i, position in enumerate(self.position):
            row = {
                "position": int(position),
                "kl_bits": float(self.kl_bits[i]),
                "kl_bits_se": float(self.kl_bits_se[i]),
                "outside_mass": float(self.outside_mass[i]),
            }
            if self.floor_kl_bits is not None:
                row["floor_kl_bits"] = float(self.floor_kl_bits[i])
            rows.append(row)
        return rows


def evaluate(
    model_dir: str | os.PathLike, sequences: int = 1000, length: int | None = None, seed: int = HELD_OUT_SEED
) -> Evaluation:
    """Score a trained folder on ``sequences`` held-out sequences of ``length`` tokens (default: its ``K``)."""
    from bayesmatrix.data.windtunnel.modeling import load, model_predictive, receptive_field  # torch

    loaded = load(model_dir)
    train_length = int(loaded.record["options"]["length"])
    length = train_length if length is None else length
    if sequences < 1:
        raise InputError(f"must be at least 1, not {sequences}", field="sequences")
    if length < 1:
        raise InputError(f"must be at least 1, not {length}", field="length")
    max_positions = getattr(loaded.model.config, "n_positions", None)
    if max_positions is not None and length > max_positions:
        raise InputError(
            f"{length} tokens exceed the {max_positions} learned positions of this GPT-2",
            file=str(model_dir),
            field="length",
        )
    world = loaded.world
    tokens = world.sample(held_out_rng(seed), sequences, length).tokens
    exact = world.predictive(tokens)
    predictive, outside = model_predictive(loaded.model, world, tokens)
    kl = kl_bits(exact, predictive)  # (sequences, positions)
    visible = receptive_field(loaded.model.config)
    floor = None
    if visible is not None:
        floor = kl_bits(exact, world.windowed_predictive(tokens, visible)).mean(axis=0)
    return Evaluation(
        model=str(model_dir),
        world=world.name,
        sequences=sequences,
        seed=seed,
        train_length=train_length,
        position=np.arange(1, length + 1),
        kl_bits=kl.mean(axis=0),
        kl_bits_se=kl.std(axis=0, ddof=1) / np.sqrt(sequences) if sequences > 1 else np.full(length, np.nan),
        outside_mass=outside.mean(axis=0),
        floor_kl_bits=floor,
    )


def format_evaluation(evaluation: Evaluation) -> str:
    """The curve by position and the means, as a plain-text table."""
    header = f"{'position':>8}  {'KL bits':>10}  {'± se':>9}  {'outside mass':>12}"
    if evaluation.floor_kl_bits is not None:
        header += f"  {'floor bits':>10}"
    lines = [header]
    for row in evaluation.rows():
        line = f"{row['position']:>8}  {row['kl_bits']:>10.3e}  {row['kl_bits_se']:>9.1e}  {row['outside_mass']:>12.2e}"
        if "floor_kl_bits" in row:
            line += f"  {row['floor_kl_bits']:>10.3e}"
        if row["position"] == evaluation.train_length and len(evaluation.position) > evaluation.train_length:
            line += "   <- training length K"
        lines.append(line)
    summary = evaluation.summary()
    lines.append(
        f"{summary['model']}: world {summary['world']}, "
        f"{summary['sequences']} held-out sequences (seed {summary['seed']})"
    )
    lines.append(f"mean KL over positions 1..{summary['length']}: {summary['mean_kl_bits']:.3e} bits")
    if summary["mean_kl_bits_beyond"] is not None:
        lines.append(
            f"mean KL over positions 1..{summary['train_length']} (trained): {summary['mean_kl_bits_trained']:.3e} bits"
        )
        lines.append(
            f"mean KL over positions {summary['train_length'] + 1}..{summary['length']} (beyond training): "
            f"{summary['mean_kl_bits_beyond']:.3e} bits"
        )
    if "mean_floor_kl_bits" in summary:
        lines.append(f"least mean KL reachable with this receptive field: {summary['mean_floor_kl_bits']:.3e} bits")
    lines.append(f"mean mass outside the category tokens: {summary['mean_outside_mass']:.2e}")
    return "\n".join(lines)


def write_evaluation(evaluation: Evaluation, path: str | os.PathLike) -> Path:
    """Write the per-position curve atomically: ``.json`` (summary + rows) or ``.csv`` (rows)."""
    path = Path(path)
    if path.suffix == ".json":
        text = json.dumps({**evaluation.summary(), "positions": evaluation.rows()}, indent=2) + "\n"
    elif path.suffix == ".csv":
        rows = evaluation.rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        raise InputError("the output must end in .json or .csv", file=str(path), field="out")
    return write_text_atomic(path, text)
