"""The shared priors: the quantiles their docstrings promise, and draws whose moments match (z < 4 in MCSE)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import stats

from bayesmatrix.models import priors

DRAWS = 20_000


def _draws(prior, seed: int) -> np.ndarray:
    return np.asarray(prior.sample(jax.random.PRNGKey(seed), (DRAWS,)), dtype=np.float64)


@pytest.mark.parametrize(
    "make, loc, scale, low, high",
    [
        (priors.strength_prior, math.log(2.0), 1.5, 0.1, 38.0),  # "95% between 0.1 and 38"
        (priors.tau_prior, math.log(10.0), 3.0, 0.03, 3600.0),  # "spans 0.03 to 3600"
        (priors.temperature_prior, 0.0, 0.5, 0.38, 2.7),  # "95% in 0.38-2.7"
        (priors.pseudocount_prior, math.log(0.1), 2.0, None, None),
    ],
)
def test_log_normal_priors_have_the_stated_location_scale_and_interval(make, loc, scale, low, high):
    prior = make()
    assert float(prior.loc) == pytest.approx(loc) and float(prior.scale) == pytest.approx(scale)
    if low is not None:
        central = np.exp(loc + np.array([-1, 1]) * stats.norm.ppf(0.975) * scale)
        np.testing.assert_allclose(central, [low, high], rtol=0.1)
    logs = np.log(_draws(prior, 0))
    # log of a log-normal draw is normal(loc, scale): mean and variance against their MCSE
    assert abs(logs.mean() - loc) / (scale / math.sqrt(DRAWS)) < 4
    variance_se = scale**2 * math.sqrt(2.0 / (DRAWS - 1))
    assert abs(logs.var(ddof=1) - scale**2) / variance_se < 4


def test_decay_prior_is_beta_3_1_with_its_stated_median():
    prior = priors.decay_prior()
    assert (float(prior.concentration1), float(prior.concentration0)) == (3.0, 1.0)
    assert 0.5 ** (1 / 3) == pytest.approx(0.79, abs=0.005)  # the docstring's median
    draws = _draws(prior, 1)
    mean, variance = 3 / 4, 3 * 1 / (4**2 * 5)
    assert abs(draws.mean() - mean) / math.sqrt(variance / DRAWS) < 4
    assert abs(np.median(draws) - 0.5 ** (1 / 3)) < 0.01
    # the density rises all the way to 1 (exact Bayes): 3 d^2 on (0, 1)
    assert float(prior.log_prob(0.99)) > float(prior.log_prob(0.9)) > float(prior.log_prob(0.5))


def test_priors_are_fresh_distributions_each_call():
    assert priors.strength_prior() is not priors.strength_prior()
