"""Scoring a trained wind-tunnel model against the exact posterior predictive, position by position.

At every position ``k`` the headline score is the strict KL in bits,
``sum_c q_c log2(q_c / p_c)`` with ``q`` the exact predictive and ``p_c`` the
model's probabilities of the category tokens as they are, read from its softmax
over the whole vocabulary: they sum to less than one when the model puts mass
on ``<bos>``, ``<pad>`` or ``<unk>``, and that mass counts against it (for a
small outside mass ``m`` the strict KL is about the renormalised one plus
``m / ln 2``). Beside it: the KL with ``p`` renormalised over the categories,
``KL(exact || model)`` proper, and the outside mass ``m`` itself.
Sequences come from the held-out stream (``data.windtunnel.worlds.held_out_rng``),
which no training batch is drawn from.

For a model with a sliding window, ``floor_kl_bits`` is the least KL any model
that sees only its receptive field can reach: the KL from the exact predictive
to the Bayesian predictive from the visible tokens alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bayesmatrix.data.atomic import write_rows_atomic
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
    strict_kl_bits: np.ndarray
    """Mean over sequences of ``sum_c q_c log2(q_c / p_c)``, ``p`` not renormalised: the headline, bits."""
    strict_kl_bits_se: np.ndarray
    """Its standard error over sequences."""
    kl_bits: np.ndarray
    """Mean over sequences of KL(exact || model), the model's category probabilities renormalised, bits."""
    kl_bits_se: np.ndarray
    """Its standard error over sequences."""
    outside_mass: np.ndarray
    """Mean mass the model puts outside the category tokens."""
    floor_kl_bits: np.ndarray | None
    """Least KL reachable with the model's receptive field (sliding-window models), else ``None``."""
    context_length: int | None
    """The most positions the model can be scored at (GPT-2's learned positions), ``None`` without a limit."""
    mean_strict_kl_bits_trained_se: float
    """Standard error of ``mean_strict_kl_bits_trained``, from the per-sequence means over 1..K
    (sequences are independent; the positions of one sequence are not)."""

    @property
    def mean_strict_kl_bits(self) -> float:
        """Mean strict KL over all positions."""
        return float(self.strict_kl_bits.mean())

    @property
    def mean_strict_kl_bits_trained(self) -> float:
        """Mean strict KL over positions 1..K: the headline number."""
        return float(self.strict_kl_bits[: self.train_length].mean())

    @property
    def mean_strict_kl_bits_beyond(self) -> float | None:
        """Mean strict KL over positions K+1..L (length generalisation), ``None`` when L <= K."""
        beyond = self.strict_kl_bits[self.train_length :]
        return float(beyond.mean()) if beyond.size else None

    @property
    def mean_kl_bits(self) -> float:
        """Mean renormalised KL over all positions."""
        return float(self.kl_bits.mean())

    @property
    def mean_kl_bits_trained(self) -> float:
        """Mean renormalised KL over positions 1..K."""
        return float(self.kl_bits[: self.train_length].mean())

    @property
    def mean_kl_bits_beyond(self) -> float | None:
        """Mean renormalised KL over positions K+1..L, ``None`` when L <= K."""
        beyond = self.kl_bits[self.train_length :]
        return float(beyond.mean()) if beyond.size else None

    def summary(self) -> dict:
        trained = slice(0, self.train_length)
        summary = {
            "model": self.model,
            "world": self.world,
            "sequences": self.sequences,
            "seed": self.seed,
            "length": int(self.position[-1]),
            "train_length": self.train_length,
            "context_length": self.context_length,
            "mean_strict_kl_bits": self.mean_strict_kl_bits,
            "mean_strict_kl_bits_trained": self.mean_strict_kl_bits_trained,
            "mean_strict_kl_bits_trained_se": self.mean_strict_kl_bits_trained_se,
            "mean_strict_kl_bits_beyond": self.mean_strict_kl_bits_beyond,
            "mean_kl_bits": self.mean_kl_bits,
            "mean_kl_bits_trained": self.mean_kl_bits_trained,
            "mean_kl_bits_beyond": self.mean_kl_bits_beyond,
            "mean_outside_mass": float(self.outside_mass.mean()),
            "mean_outside_mass_trained": float(self.outside_mass[trained].mean()),
        }
        if self.floor_kl_bits is not None:
            summary["mean_floor_kl_bits"] = float(self.floor_kl_bits.mean())
        return summary

    def rows(self) -> list[dict]:
        rows = []
        for i, position in enumerate(self.position):
            row = {
                "position": int(position),
                "strict_kl_bits": float(self.strict_kl_bits[i]),
                "strict_kl_bits_se": float(self.strict_kl_bits_se[i]),
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
    """Score a trained folder on ``sequences`` held-out sequences of ``length`` tokens (default: its ``K``).

    ``length`` may exceed ``K`` (positions never trained) up to the model's
    context: GPT-2's learned positions; a rotary Llama has no hard limit.
    """
    from bayesmatrix.data.windtunnel.modeling import load, model_category_probs, receptive_field, renormalised  # torch

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
    probs = model_category_probs(loaded.model, world, tokens)  # (sequences, positions, categories), not renormalised
    predictive, outside = renormalised(probs)
    strict = kl_bits(exact, probs)  # (sequences, positions)
    kl = kl_bits(exact, predictive)
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
        strict_kl_bits=strict.mean(axis=0),
        strict_kl_bits_se=_standard_error(strict),
        kl_bits=kl.mean(axis=0),
        kl_bits_se=_standard_error(kl),
        outside_mass=outside.mean(axis=0),
        floor_kl_bits=floor,
        context_length=max_positions,
        mean_strict_kl_bits_trained_se=float(_standard_error(strict[:, :train_length].mean(axis=1))),
    )


def _standard_error(per_sequence: np.ndarray) -> np.ndarray:
    """Standard error over the first axis (sequences); NaN with one sequence."""
    if per_sequence.shape[0] < 2:
        return np.full(per_sequence.shape[1:], np.nan)
    return per_sequence.std(axis=0, ddof=1) / np.sqrt(per_sequence.shape[0])


def format_evaluation(evaluation: Evaluation) -> str:
    """The curve by position and the means, as a plain-text table; the strict KL first."""
    header = f"{'position':>8}  {'strict KL':>10}  {'± se':>9}  {'renorm KL':>10}  {'outside mass':>12}"
    if evaluation.floor_kl_bits is not None:
        header += f"  {'floor bits':>10}"
    lines = [header]
    for row in evaluation.rows():
        line = (
            f"{row['position']:>8}  {row['strict_kl_bits']:>10.3e}  {row['strict_kl_bits_se']:>9.1e}  "
            f"{row['kl_bits']:>10.3e}  {row['outside_mass']:>12.2e}"
        )
        if "floor_kl_bits" in row:
            line += f"  {row['floor_kl_bits']:>10.3e}"
        if row["position"] == evaluation.train_length and len(evaluation.position) > evaluation.train_length:
            line += "   <- training length K"
        lines.append(line)
    summary = evaluation.summary()
    k, length = summary["train_length"], summary["length"]
    lines.append(
        f"{summary['model']}: world {summary['world']}, "
        f"{summary['sequences']} held-out sequences (seed {summary['seed']}); KL in bits from the exact predictive"
    )
    lines.append(
        f"strict mean KL over positions 1..{k} (category probabilities as they are): "
        f"{summary['mean_strict_kl_bits_trained']:.3e} ± {summary['mean_strict_kl_bits_trained_se']:.1e}"
    )
    lines.append(f"  renormalised over the categories: {summary['mean_kl_bits_trained']:.3e}")
    lines.append(f"  mass outside the category tokens: {summary['mean_outside_mass_trained']:.2e}")
    if summary["mean_strict_kl_bits_beyond"] is not None:
        lines.append(
            f"strict mean KL over positions {k + 1}..{length} (beyond training): "
            f"{summary['mean_strict_kl_bits_beyond']:.3e} (renormalised {summary['mean_kl_bits_beyond']:.3e})"
        )
    elif summary["context_length"] is None:
        lines.append(f"positions beyond K = {k}: score them with a longer length (this model has no position limit)")
    elif summary["context_length"] > k:
        lines.append(
            f"positions beyond K = {k}: score them with a length up to {summary['context_length']} "
            "(this model's learned positions)"
        )
    if "mean_floor_kl_bits" in summary:
        lines.append(f"least mean KL reachable with this receptive field: {summary['mean_floor_kl_bits']:.3e} bits")
    return "\n".join(lines)


def write_evaluation(evaluation: Evaluation, path: str | os.PathLike) -> Path:
    """Write the per-position curve atomically: ``.json`` (summary + rows) or ``.csv`` (rows)."""
    return write_rows_atomic(path, evaluation.rows(), evaluation.summary(), key="positions")
