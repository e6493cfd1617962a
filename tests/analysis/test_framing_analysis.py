"""The framing analysis against closed forms: stated distributions, the exact Bayesian predictive with the
stated prior, Gupta et al.'s TVD by level and number of observations, and the report's framing section."""

import json

import numpy as np
import pytest

from bayesmatrix.analysis.framing import (
    distance_by_position,
    framing_analysis,
    framing_table,
    stated_bayes_predictive,
    stated_distribution,
)
from bayesmatrix.analysis.plots import framing_figure
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log
from tests.analysis.test_figures import overlapping_texts

LEVELS = [{"bias": "10"}, {"bias": "70"}]
TASK = {"name": "coin-words", "categories": ["heads", "tails"], "alpha": [1.0, 1.0],
        "template": {"header": "Here are the results:", "observation": " {},", "stated": {"bias": "heads"}}}


def framed_log(strength: float, episodes: int = 4, length: int = 5, other_mass: float = 0.1):
    """A log whose LLM is exactly Bayesian with the stated prior of ``strength``, ``other_mass`` on <other>."""
    rng = np.random.default_rng(0)
    stated = np.array([[0.1, 0.9], [0.7, 0.3]])
    rows, counts, framing, episode = [], [], [], []
    for e in range(episodes):
        level = e % 2
        flips = rng.integers(0, 2, size=length)
        n = np.zeros(2)
        for k in range(length + 1):
            rows.append((strength * stated[level] + n) / (strength + n.sum()))
            counts.append(np.r_[n, 0.0])
            framing.append(level)
            episode.append(e)
            if k < length:
                n[flips[k]] += 1
    probs = np.column_stack([(1 - other_mass) * np.asarray(rows), np.full(len(rows), other_mass)])
    return make_log(probs, [" heads", " tails", OTHER], model="exact", task=TASK, context_counts=np.asarray(counts),
                    episode=np.asarray(episode), framing=np.asarray(framing), framing_levels=json.dumps(LEVELS))


def test_stated_distribution_gives_the_rest_to_the_other_categories():
    np.testing.assert_allclose(stated_distribution(LEVELS, {"bias": 0}, 2), [[0.1, 0.9], [0.7, 0.3]])
    np.testing.assert_allclose(stated_distribution([{"p": "40"}], {"p": 2}, 3), [[0.3, 0.3, 0.4]])
    with pytest.raises(InputError, match=r"not in \[0, 100\]"):
        stated_distribution([{"bias": "130"}], {"bias": 0}, 2)
    with pytest.raises(InputError, match="not a percentage"):
        stated_distribution([{"bias": "fair"}], {"bias": 0}, 2)


def test_stated_bayes_predictive_is_the_beta_posterior_mean():
    stated = np.array([[0.3, 0.7]])
    counts = np.array([[4.0, 1.0]])
    np.testing.assert_allclose(stated_bayes_predictive(stated, counts, 10.0), [[(3 + 4) / 15, (7 + 1) / 15]])


def test_distance_by_position_averages_within_level_and_position():
    llm = np.array([[0.5, 0.5], [0.9, 0.1], [0.7, 0.3], [0.5, 0.5]])
    reference = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    result = distance_by_position(llm, reference, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), 2)
    np.testing.assert_allclose(result.mean, [[0.0, 0.4], [0.2, 0.0]])


def test_an_exactly_bayesian_llm_is_at_zero_tvd_from_bayes_and_drifts_from_the_statement():
    ds = framed_log(strength=3.0)
    analysis = framing_analysis(ds, reference_strength=3.0)
    assert analysis.labels == ["bias=10", "bias=70"] and analysis.stated_category == " heads"
    np.testing.assert_allclose(analysis.stated, [0.1, 0.7])
    np.testing.assert_allclose(analysis.tvd_bayes.mean, 0.0, atol=1e-12)  # <other> dropped and renormalised
    np.testing.assert_allclose(analysis.tvd_stated.mean[:, 0], 0.0, atol=1e-12)  # before any observation
    assert np.all(analysis.tvd_stated.mean[:, -1] > 0.05)
    other = framing_analysis(ds, reference_strength=30.0)
    assert np.all(other.tvd_bayes.mean[:, -1] > 0.05)  # a wrong strength is visible
    table = framing_table(analysis)
    assert [row["level"] for row in table] == ["bias=10", "bias=70"]
    np.testing.assert_allclose([row["llm_at_0"] for row in table], [0.1, 0.7])
    figure = framing_figure(analysis, title="smollm2 on coin-words")
    assert len(figure.axes) == 2
    assert overlapping_texts(figure) == []


def test_a_log_without_a_stated_table_is_one_line():
    ds = framed_log(strength=3.0)
    task = json.loads(ds.attrs["task"])
    del task["template"]["stated"]
    ds.attrs["task"] = json.dumps(task)
    with pytest.raises(InputError) as caught:
        framing_analysis(ds)
    assert caught.value.field == "stated"
