"""The effective prior per framing level: icl-framed on a simulated log with known per-framing priors.

``simulate_icl_framed`` poses episode e under level e mod F with the prior
``framing_alphas[f]``; the per-framing fit must recover each level's prior
mean and strength inside its 94% interval, with coordinates named by the
log's ``framing_levels``.
"""

import json

import numpy as np
import pytest

from bayesmatrix.data.errors import InputError
from bayesmatrix.inference.nuts import nuts
from bayesmatrix.inference.prepare import framing_labels, prepare
from bayesmatrix.inference.simulate import simulate, simulate_icl_framed, truth_of
from bayesmatrix.models import MODELS

FRAMING_ALPHAS = [[8.0, 2.0], [2.0, 8.0], [3.0, 3.0]]


@pytest.fixture(scope="module")
def framed_log():
    return simulate_icl_framed(30, 12, FRAMING_ALPHAS, seed=1)


def test_simulated_log_records_each_episodes_level(framed_log):
    framing = np.asarray(framed_log["framing"].values)
    episode = np.asarray(framed_log["episode"].values)
    assert np.array_equal(framing, episode % 3)
    assert json.loads(framed_log.attrs["framing_levels"]) == [{"alpha": "8,2"}, {"alpha": "2,8"}, {"alpha": "3,3"}]
    truth = truth_of(framed_log)
    assert truth["model"] == "icl-framed"
    np.testing.assert_allclose(truth["m"], [[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]])


def test_prepare_names_the_framing_axis_by_its_levels(framed_log):
    model_input = prepare(framed_log, "icl-framed")
    assert model_input.kwargs["num_framings"] == 3
    assert model_input.dims["m"] == ["framing", "col"] and model_input.dims["s"] == ["framing"]
    assert list(model_input.coords["framing"]) == framing_labels(framed_log) == ["alpha=8,2", "alpha=2,8", "alpha=3,3"]


def test_the_framed_updater_is_exact_bayes_under_each_levels_prior(framed_log):
    from numpyro import handlers
    import jax

    model_input = prepare(framed_log, "icl-framed")
    alphas = np.asarray(FRAMING_ALPHAS)
    strengths = alphas.sum(axis=1)
    values = {"m": alphas / strengths[:, None], "s": strengths, "tau": 50.0}
    model = handlers.substitute(handlers.seed(MODELS["icl-framed"].function, jax.random.PRNGKey(0)), data=values)
    site = handlers.trace(model).get_trace(**model_input.kwargs)["probs"]
    concentration = np.asarray(site["fn"].concentration)
    counts = model_input.kwargs["context_counts"]
    chosen = alphas[model_input.kwargs["framing"]]
    np.testing.assert_allclose(concentration / 50.0, (chosen + counts) / (chosen + counts).sum(axis=1, keepdims=True),
                               rtol=1e-5)


def test_a_log_without_framing_cannot_feed_icl_framed():
    plain = simulate("icl", episodes=2, length=3, alpha=[1.0, 1.0])
    with pytest.raises(InputError, match="framing"):
        prepare(plain, "icl-framed")


def test_framed_simulation_refuses_decay_and_one_alpha():
    with pytest.raises(InputError) as caught:
        simulate("icl", episodes=2, length=3, framing_alphas=[[1.0, 1.0]], decay=0.5)
    assert caught.value.field == "decay"
    with pytest.raises(InputError) as caught:
        simulate("icl", episodes=2, length=3, framing_alphas=[[1.0, 1.0]], alpha=[1.0, 1.0])
    assert caught.value.field == "alpha"


@pytest.mark.slow
def test_per_framing_fit_recovers_each_prior(framed_log):
    model_input = prepare(framed_log, "icl-framed")
    result = nuts(
        MODELS["icl-framed"].function, model_input.kwargs, num_samples=300, num_warmup=300, num_chains=2, seed=0,
        coords=model_input.coords, dims=model_input.dims, progress_bar=False,
    )
    assert result.num_divergences == 0
    truth = truth_of(framed_log)
    posterior = result.datatree["posterior"]
    for name in ("m", "s"):
        draws = np.asarray(posterior[name]).reshape(-1, *posterior[name].shape[2:])
        low, high = np.quantile(draws, 0.03, axis=0), np.quantile(draws, 0.97, axis=0)
        assert np.all((low <= truth[name]) & (truth[name] <= high)), (name, low, high, truth[name])
    assert list(posterior["framing"].values) == ["alpha=8,2", "alpha=2,8", "alpha=3,3"]
