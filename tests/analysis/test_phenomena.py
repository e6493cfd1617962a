"""The phenomena studies' measures: entropy of rows, final numbers, accepted answers, AUROC and its interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from bayesmatrix.analysis.phenomena import (
    auroc,
    auroc_interval,
    final_number,
    is_accepted,
    mean_by_index,
    proportion_interval,
    roc_curve,
    row_entropy_bits,
)
from bayesmatrix.data.errors import InputError


def test_entropy_of_known_rows():
    vocab = 49152
    assert row_entropy_bits(np.zeros(vocab)) == pytest.approx(math.log2(vocab), rel=1e-12)
    assert row_entropy_bits(np.array([0.0, -np.inf, -np.inf])) == 0.0
    # probabilities 1/4 and 3/4, from logits on any scale
    expected = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    rows = np.array([[0.0, math.log(3.0)], [500.0, 500.0 + math.log(3.0)]])
    np.testing.assert_allclose(row_entropy_bits(rows), [expected, expected], rtol=1e-12)


@pytest.mark.parametrize("text, number", [
    ("So, the answer is 43.", 43),
    ("1. 7 * 4 = 28\n2. 28 + 5 = 33", 33),
    ("Answer: 1,024", 1024),
    ("The answer is 12. Check: 12 + 1 = 13", 12),
    ("So, the answer is 11 + 13 = 24.\n\nSo, the answer is 11 + 13 = 24.", 24),
    ("The answer is (9 + 9) * 6 = 18.", 18),
    ("The answer is 2.5 hours", 2.5),
    ("So, the answer is:\n\n42", 42),
    ("**Answer:** 56", 56),
    (" 7", 7),
    ("-3 is the result", -3),
    ("To solve this problem, we need to", None),
])
def test_final_number(text, number):
    assert final_number(text) == number


@pytest.mark.parametrize("completion, accepted, right", [
    (" Au.\n\nThe gold", ["Au"], True),
    (" AU", ["Au"], False),
    (" Auburn", ["Au"], False),
    (" 1879, and he", ["1879"], True),
    (" 18790", ["1879"], False),
    (' "Paris"', ["Paris"], True),
    (" the city of Paris", ["Paris"], False),
    (" 384 B.C. in", ["384 BC", "384 B.C"], True),
    (" Kiev, the", ["Kyiv", "Kiev"], True),
    ("", ["Kyiv"], False),
])
def test_is_accepted(completion, accepted, right):
    assert is_accepted(completion, accepted) is right


def test_auroc_is_the_pair_count_with_ties_half():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=60).astype(float)  # many ties
    positive = rng.random(60) < 0.4
    pos, neg = scores[positive], scores[~positive]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auroc(scores, positive) == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)
    fpr, tpr = roc_curve(scores, positive)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(scores, positive), abs=1e-12)
    assert auroc(-scores, positive) == pytest.approx(1 - auroc(scores, positive), abs=1e-12)


def test_auroc_of_perfect_separation_and_bad_labels():
    result = auroc_interval([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert (result.auroc, result.se, result.high, result.positives, result.negatives) == (1.0, 0.0, 1.0, 2, 2)
    with pytest.raises(InputError, match="one positive and one negative"):
        auroc([0.1, 0.2], [True, True])


def test_delong_interval_covers_the_true_auroc_at_its_rate():
    """Binormal scores with unit variances and means 0 and 1: AUROC = Phi(1 / sqrt 2). The 94% interval
    covers it in a share of simulations within binomial error of 0.94."""
    rng = np.random.default_rng(7)
    truth = norm.cdf(1 / math.sqrt(2))
    simulations, m, n = 400, 40, 60
    covered = 0
    for _ in range(simulations):
        scores = np.concatenate([rng.normal(1.0, 1.0, m), rng.normal(0.0, 1.0, n)])
        positive = np.arange(m + n) < m
        result = auroc_interval(scores, positive, prob=0.94)
        covered += result.low <= truth <= result.high
    se = math.sqrt(0.94 * 0.06 / simulations)
    assert abs(covered / simulations - 0.94) < 3.5 * se


def test_wilson_interval_known_values():
    half = proportion_interval([True] * 5 + [False] * 5, prob=0.95)
    assert (half.mean, half.n) == (0.5, 10)
    assert half.low == pytest.approx(0.2366, abs=1e-4) and half.high == pytest.approx(0.7634, abs=1e-4)
    none = proportion_interval([False] * 10, prob=0.95)
    assert none.low == 0.0 and none.high == pytest.approx(0.2775, abs=1e-4)


def test_mean_by_index_over_ragged_answers():
    mean, count = mean_by_index([[1.0, 2.0, 3.0], [3.0], [2.0, 4.0]])
    np.testing.assert_allclose(mean, [2.0, 3.0, 3.0])
    assert count.tolist() == [3, 2, 1]
