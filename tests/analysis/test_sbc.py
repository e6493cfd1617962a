"""Simulation-based calibration: the rank machinery on a conjugate model, then the matrix and icl models
on logs the models simulate themselves (``bayesmatrix sbc``)."""

import json
import subprocess
import sys

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayesmatrix.analysis.sbc import sbc, setups, uniformity_pvalue

# Each SBC run yields several p-values; with fixed seeds the outcome is deterministic, and a
# threshold of 1e-3 per p-value keeps the family-wise false alarm rate near 1%.
P_MIN = 1e-3


def beta_binomial(successes=None):
    p = numpyro.sample("p", dist.Beta(2.0, 3.0))
    with numpyro.plate("row", 8):
        numpyro.sample("successes", dist.Binomial(20, p), obs=successes)


def test_uniformity_pvalue_tells_uniform_from_skewed():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, size=(500, 2))
    skewed = np.minimum(rng.integers(0, 100, size=(500,)), rng.integers(0, 100, size=(500,)))
    assert (uniformity_pvalue(uniform, 99) > 0.01).all()
    assert uniformity_pvalue(skewed, 99) < 1e-6


def test_context_counts_are_episodes():
    skeleton = setups()["icl"].skeleton
    counts = skeleton["context_counts"].values
    assert counts.shape == (6 * 9, 4) and np.all(counts[:, -1] == 0)  # <other> never observed
    np.testing.assert_array_equal(counts.sum(axis=1), np.tile(np.arange(9), 6))
    np.testing.assert_array_equal(skeleton["position"].values, np.tile(np.arange(9), 6))


@pytest.mark.slow
def test_sbc_calibrated_on_a_conjugate_model_and_detects_a_wrong_posterior():
    result = sbc(beta_binomial, {}, "successes", ["p"], num_replications=100, num_warmup=200)
    assert uniformity_pvalue(result.ranks["p"], result.num_draws) > P_MIN
    # A posterior that is too narrow (ranks piled at 0 and L) must fail the same test.
    too_narrow = np.where(result.ranks["p"] > result.num_draws // 2, result.num_draws, 0)
    assert uniformity_pvalue(too_narrow, result.num_draws) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("model", ["matrix", "icl"])
def test_sbc_of_the_models(model):
    """100 replications each, in a float64 subprocess (x64 must be set before JAX starts)."""
    completed = subprocess.run(
        [sys.executable, "-m", "bayesmatrix", "sbc", model, "--replications", "100", "--x64"],
        capture_output=True, text=True, timeout=900, check=True,
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["replications"] == 100
    assert report["divergences"] == 0
    for name, pvalues in report["pvalues"].items():
        assert min(pvalues) > P_MIN, (name, pvalues)
