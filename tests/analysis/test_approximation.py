"""The Dirichlet-mixture approximation: densities against closed forms, and more components fit better."""

import numpy as np
import pytest
from scipy.stats import dirichlet

from bayesmatrix.analysis.approximation import (
    approximation_curve,
    logistic_normal_log_density,
    logistic_normal_rows,
    mixture_log_density,
)


def test_one_component_mixture_is_the_dirichlet_density():
    rows = np.random.default_rng(0).dirichlet([2.0, 3.0, 1.5], size=20)
    expected = [dirichlet.logpdf(row, [2.0, 3.0, 1.5]) for row in rows]
    assert np.allclose(mixture_log_density([1.0], [[2.0, 3.0, 1.5]], rows), expected, rtol=1e-6)


def test_two_component_mixture_is_the_weighted_sum():
    rows = np.random.default_rng(1).dirichlet([1.0, 1.0, 1.0], size=10)
    a, b = [4.0, 1.0, 1.0], [1.0, 1.0, 6.0]
    expected = np.log(0.3 * dirichlet.pdf(rows.T, a) + 0.7 * dirichlet.pdf(rows.T, b))
    assert np.allclose(mixture_log_density([0.3, 0.7], [a, b], rows), expected, rtol=1e-6)


def test_logistic_normal_density_integrates_to_one():
    # E_q[p(x) / q(x)] = 1 with q a Dirichlet(1,1,1) (uniform, density 2 on the simplex)
    rows = np.random.default_rng(2).dirichlet([1.0, 1.0, 1.0], size=200_000)
    ratio = np.exp(logistic_normal_log_density(rows)) / 2.0
    assert abs(ratio.mean() - 1.0) < 4 * ratio.std() / np.sqrt(len(ratio))


def test_logistic_normal_rows_are_on_the_simplex():
    rows = logistic_normal_rows(50, seed=3)
    assert rows.shape == (50, 3) and np.allclose(rows.sum(axis=1), 1.0) and (rows > 0).all()


@pytest.mark.slow
def test_three_components_beat_one_on_held_out_rows():
    curve = approximation_curve(components=(1, 3), num_rows=600, steps=1500)
    gain = curve.held_out[1] - curve.held_out[0]
    assert gain > 5 * max(curve.held_out_se)
    assert curve.held_out[1] < curve.reference + 3 * curve.held_out_se[1]  # no fit beats the true prior
