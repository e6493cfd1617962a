"""The measures of the phenomena studies on a real LLM: entropy of next-token rows, answers and accuracy, AUROC.

README, "Phenomena on SmolLM2". Three studies (``bayesmatrix phenomena``, run
by :mod:`bayesmatrix.workflows.phenomena`) read these:

- *chain of thought*: the entropy in bits of each next-token row along a
  greedy answer (:func:`row_entropy_bits`), step by step against direct, and
  the accuracy of the final number each gives (:func:`final_number`,
  :func:`proportion_interval`);
- *long contexts*: the coin task's excess bits per step
  (:func:`bayesmatrix.analysis.excess.stated_excess`) and the fitted decay as
  unrelated text is inserted;
- *hallucination*: the entropy of the row at the answer position as a score
  for a wrong answer (:func:`is_accepted`), summarised by the AUROC with
  DeLong's interval (:func:`auroc_interval`).

Functions on plain arrays and strings; :func:`read_study` reads a study's
result file back for the report.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from bayesmatrix.analysis.metrics import entropy_bits
from bayesmatrix.data.errors import InputError

STUDIES = ("cot", "long-context", "hallucination")
"""The studies, by the name ``bayesmatrix phenomena`` takes."""

RESULT_FILES = {study: f"{study.replace('-', '_')}.json" for study in STUDIES}
"""Each study's result file inside its output folder (``cot.json``, ``long_context.json``, ``hallucination.json``)."""

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER = re.compile(r"answer", re.IGNORECASE)
# the end of the sentence an answer is stated in: a line break, or a full stop not inside a number
_SENTENCE_END = re.compile(r"\n|\.(?!\d)")
# what may stand before an answer without making it another answer: spaces, quotes, markup
_LEADING = " \t\n\"'`*_(["


def row_entropy_bits(logits) -> np.ndarray:
    """Entropy in bits of the softmax of ``logits`` (..., vocab) along the last axis, computed in float64.

    Logits of ``-inf`` (a token masked out) have probability 0.
    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted)
    return entropy_bits(probs / probs.sum(axis=-1, keepdims=True))


def final_number(text: str) -> float | None:
    """The number an answer ends on: the last number of the sentence after the last "answer"
    (``"So, the answer is 11 + 13 = 24."`` gives 24), else the last number in ``text``; None when it
    has no number. Thousands commas are dropped (``"1,024"`` is 1024)."""
    stated = list(_ANSWER.finditer(text))
    found = []
    if stated:
        rest = text[stated[-1].end() :]
        end = _SENTENCE_END.search(rest)
        found = _NUMBER.findall(rest if end is None else rest[: end.start()])
    found = found or _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:  # a stray comma-only match such as "1,"
        return None


def is_accepted(completion: str, accepted: Sequence[str]) -> bool:
    """Whether a completion starts with one of the ``accepted`` answers, after leading spaces, quotes and
    markup; case-sensitive (``"Au"``, not ``"AU"``), and the answer must end at a word boundary
    (``"1879"`` accepts ``" 1879,"`` but not ``" 18790"``)."""
    text = completion.lstrip(_LEADING)
    for answer in accepted:
        if text.startswith(answer):
            after = text[len(answer) : len(answer) + 1]
            if not after or not (after.isalnum() or after == "_"):
                return True
    return False


class ProportionInterval(NamedTuple):
    """A proportion of successes with its Wilson score interval."""

    mean: float
    low: float
    high: float
    n: int


def proportion_interval(successes, prob: float | None = None) -> ProportionInterval:
    """The share of true values in ``successes`` and its Wilson interval at ``prob``
    (``inference.fit.INTERVAL_PROB`` by default); NaN for none."""
    successes = np.asarray(successes, dtype=bool)
    n = int(successes.size)
    if n == 0:
        return ProportionInterval(math.nan, math.nan, math.nan, 0)
    z = _normal_quantile(prob)
    p = successes.mean()
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return ProportionInterval(float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half)), n)


def _normal_quantile(prob: float | None) -> float:
    from scipy.stats import norm

    from bayesmatrix.inference.fit import INTERVAL_PROB

    prob = INTERVAL_PROB if prob is None else prob
    return float(norm.ppf(0.5 + prob / 2))


def auroc(scores, positive) -> float:
    """The area under the ROC curve of ``scores`` for telling ``positive`` rows from the others:
    the probability that a random positive scores above a random negative, ties counting one half
    (the Mann-Whitney statistic, from mid-ranks)."""
    positives, negatives = _split(scores, positive)
    return float(_placements(positives, negatives)[0].mean())


def _split(scores, positive) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise InputError(f"scores {scores.shape} and labels {positive.shape} must be two equal 1-d arrays",
                         field="scores")  # fmt: skip
    if positive.all() or not positive.any():
        raise InputError("an AUROC needs at least one positive and one negative row", field="positive")
    return scores[positive], scores[~positive]


def _placements(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: for each positive the share of negatives it beats (ties half), and for
    each negative the share of positives that beat it. Both have the AUROC as their mean."""
    from scipy.stats import rankdata

    m, n = len(positives), len(negatives)
    both = np.concatenate([positives, negatives])
    ranks = rankdata(both)  # mid-ranks: a tie counts one half each way
    positive_ranks, negative_ranks = ranks[:m], ranks[m:]
    beats_negatives = (positive_ranks - rankdata(positives)) / n
    beaten_by_positives = 1.0 - (negative_ranks - rankdata(negatives)) / m
    return beats_negatives, beaten_by_positives


def roc_curve(scores, positive) -> tuple[np.ndarray, np.ndarray]:
    """``(false_positive_rate, true_positive_rate)`` of the rule "positive when the score is at least t"
    over every threshold ``t``, from (0, 0) to (1, 1); the trapezoid area under it is :func:`auroc`."""
    positives, negatives = _split(scores, positive)
    thresholds = np.unique(np.concatenate([positives, negatives]))[::-1]
    tpr = np.array([0.0] + [(positives >= t).mean() for t in thresholds])
    fpr = np.array([0.0] + [(negatives >= t).mean() for t in thresholds])
    return fpr, tpr


class AurocInterval(NamedTuple):
    """An AUROC with DeLong's standard error and a normal interval (clipped to [0, 1])."""

    auroc: float
    se: float
    low: float
    high: float
    positives: int
    negatives: int


def auroc_interval(scores, positive, prob: float | None = None) -> AurocInterval:
    """The AUROC (:func:`auroc`) with DeLong et al. (1988)'s standard error and its normal interval at
    ``prob`` (``inference.fit.INTERVAL_PROB`` by default).

    The variance is ``var(V10) / m + var(V01) / n`` over the ``m`` positives' and ``n`` negatives'
    placement values (Sun and Xu 2014's fast form of DeLong's estimator).
    """
    positives, negatives = _split(scores, positive)
    v10, v01 = _placements(positives, negatives)
    area = float(v10.mean())
    m, n = len(v10), len(v01)
    variance = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    se = float(math.sqrt(variance))
    z = _normal_quantile(prob)
    return AurocInterval(area, se, max(0.0, area - z * se), min(1.0, area + z * se), m, n)


def mean_by_index(sequences: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, count)`` at each index of ragged sequences (the entropy along answers of several
    lengths): the mean over the sequences long enough to have that index, and how many do."""
    width = max((len(s) for s in sequences), default=0)
    total, count = np.zeros(width), np.zeros(width, dtype=np.int64)
    for sequence in sequences:
        total[: len(sequence)] += np.asarray(sequence, dtype=np.float64)
        count[: len(sequence)] += 1
    with np.errstate(invalid="ignore"):
        return total / np.maximum(count, 1), count


def read_study(folder: os.PathLike | str, study: str) -> dict:
    """The result file of ``study`` in ``folder`` (:data:`RESULT_FILES`), as written by the workflow."""
    if study not in RESULT_FILES:
        raise InputError(f"{study!r} is not one of {', '.join(STUDIES)}", field="study")
    path = Path(folder) / RESULT_FILES[study]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no {RESULT_FILES[study]} here; run bayesmatrix phenomena {study} first", file=str(folder),
                         field="phenomena") from None  # fmt: skip
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"is not a study's JSON ({type(error).__name__})", file=str(path), field="phenomena") from None


def studies_in(folder: os.PathLike | str) -> list[str]:
    """The studies whose result file ``folder`` holds, in :data:`STUDIES` order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such folder of phenomena results", file=str(folder), field="phenomena")
    return [study for study in STUDIES if (folder / RESULT_FILES[study]).is_file()]
