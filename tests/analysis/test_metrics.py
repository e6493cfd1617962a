"""KL, entropy and total variation against hand computations and their defining properties."""

import numpy as np
import pytest

from bayesmatrix.analysis.metrics import (
    entropy_bits,
    kl_bits,
    max_pairwise_total_variation,
    mean_and_mcse,
    renormalise,
    total_variation,
)


def test_kl_bits_against_hand_computation():
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    expected = 0.5 * np.log2(0.5 / 0.25) + 0.5 * np.log2(0.5 / 0.75)
    assert kl_bits(p, q) == pytest.approx(expected, rel=1e-12)


def test_kl_bits_is_zero_on_equal_rows_and_positive_otherwise():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=50)
    q = rng.dirichlet(np.ones(4), size=50)
    assert np.allclose(kl_bits(p, p), 0.0, atol=1e-14)
    assert np.all(kl_bits(p, q) > 0)


def test_kl_bits_zero_terms_and_infinite_support_mismatch():
    assert kl_bits([1.0, 0.0], [0.5, 0.5]) == pytest.approx(1.0)
    with np.errstate(divide="ignore"):
        assert np.isinf(kl_bits([0.5, 0.5], [1.0, 0.0]))


def test_entropy_bits_of_uniform_and_point_mass():
    assert entropy_bits(np.full(8, 1 / 8)) == pytest.approx(3.0)
    assert entropy_bits([0.0, 1.0, 0.0]) == 0.0
    assert np.allclose(entropy_bits(np.array([[0.5, 0.5], [0.25, 0.75]])), [1.0, 0.8112781244591328])


def test_total_variation_is_half_l1_and_bounded():
    assert total_variation([1.0, 0.0], [0.0, 1.0]) == 1.0
    assert total_variation([0.2, 0.3, 0.5], [0.3, 0.3, 0.4]) == pytest.approx(0.1)


def test_max_pairwise_total_variation_takes_the_farthest_pair():
    rows = np.array([[[0.5, 0.5], [0.6, 0.4], [0.2, 0.8]]])
    assert max_pairwise_total_variation(rows) == pytest.approx([0.4])


def test_renormalise_and_mean_and_mcse():
    assert np.allclose(renormalise([[1.0, 3.0]]), [[0.25, 0.75]])
    mean, mcse = mean_and_mcse(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and mcse == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
