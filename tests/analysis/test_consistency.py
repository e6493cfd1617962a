"""Exchangeability and martingale checks: zero for an exact Bayesian, clearly positive for a non-Bayesian."""

import numpy as np
import pytest

from bayesmatrix.analysis.consistency import (
    check,
    consistency_table,
    exchangeability,
    martingale,
    martingale_gap,
    order_spread,
    updater_predictive,
)

ALPHA = np.array([2.0, 1.0, 0.5])


@pytest.fixture(scope="module")
def multisets():
    rng = np.random.default_rng(3)
    return rng.integers(0, 3, size=(12, 10))


def test_exact_bayes_is_exchangeable(multisets):
    result = exchangeability(updater_predictive(ALPHA), multisets, num_orders=6, seed=1)
    assert result.predictive.shape == (12, 6, 3)
    assert result.mean_max_tv < 1e-12 and result.mean_sd < 1e-12
    # every order really is a permutation of its multiset
    assert np.array_equal(np.sort(result.orders, axis=-1), np.broadcast_to(np.sort(multisets)[:, None], result.orders.shape))


def test_recency_decay_breaks_exchangeability(multisets):
    result = exchangeability(updater_predictive(ALPHA, decay=0.7), multisets, num_orders=6, seed=1)
    # clearly positive: many standard errors above zero
    assert result.mean_max_tv > 0.05
    assert result.mean_max_tv / result.mcse_max_tv > 5


def test_exact_bayes_is_a_martingale():
    result = martingale(updater_predictive(ALPHA), 3, num_paths=10, length=8, seed=2)
    assert result.gap.shape == (10, 8) and result.predictive.shape == (10, 9, 3)
    assert result.mean_gap < 1e-12
    assert np.allclose(result.expected_next, result.predictive[:, :-1], atol=1e-12)


@pytest.mark.parametrize("decay, temperature", [(0.6, 1.0), (1.0, 1.8)])
def test_decay_or_temperature_breaks_the_martingale(decay, temperature):
    result = martingale(updater_predictive(ALPHA, decay, temperature), 3, num_paths=20, length=8, seed=2)
    assert result.mean_gap > 1e-3  # far above float error (exact Bayes: < 1e-12)
    assert result.mean_gap / result.mcse_gap > 5


def test_martingale_paths_follow_the_predictive():
    # a fixed predictive: the path frequencies estimate it
    fixed = np.array([0.7, 0.2, 0.1])

    def constant(observations):
        return np.broadcast_to(fixed, (len(observations), 3))

    result = martingale(constant, 3, num_paths=400, length=5, seed=0)
    assert result.mean_gap == 0.0
    frequency = np.bincount(result.paths.ravel(), minlength=3) / result.paths.size
    se = np.sqrt(fixed * (1 - fixed) / result.paths.size)
    assert np.all(np.abs(frequency - fixed) < 4 * se)


def test_array_functions_by_hand():
    by_order = np.array([[[0.5, 0.5], [0.7, 0.3]], [[0.1, 0.9], [0.1, 0.9]]])
    max_tv, sd = order_spread(by_order)
    assert np.allclose(max_tv, [0.2, 0.0]) and np.allclose(sd, [[0.1, 0.1], [0.0, 0.0]])
    current = np.array([0.5, 0.5])
    next_by_category = np.array([[0.9, 0.1], [0.3, 0.7]])  # expectation (0.6, 0.4)
    assert martingale_gap(current, next_by_category) == pytest.approx(0.1)


def test_check_and_table(multisets):
    results = [
        check("exact", updater_predictive(ALPHA), "abc", multisets, num_orders=3, num_paths=4, length=3),
        check("decayed", updater_predictive(ALPHA, 0.5), "abc", multisets, num_orders=3, num_paths=4, length=3),
    ]
    table = consistency_table(results)
    assert list(table.index) == ["exact", "decayed"]
    assert table.loc["exact", "martingale gap"] < 1e-12 < table.loc["decayed", "martingale gap"]


@pytest.fixture(scope="module")
def windtunnel():
    """The shipped wind-tunnel transformer (100k parameters) as a loaded model, with its task rendering."""
    from bayesmatrix.data.llm import LoadedModel
    from bayesmatrix.data.tasks import Task
    from bayesmatrix.data.windtunnel.modeling import load, shipped_model
    from bayesmatrix.data.windtunnel.worlds import PROMPT_HEADER, PROMPT_OBSERVATION

    trained = load(shipped_model("dirichlet"))
    task = Task("dirichlet world", trained.world.categories, PROMPT_HEADER, PROMPT_OBSERVATION,
                alpha=tuple(trained.world.alphas[0]))
    return LoadedModel(trained.model, trained.tokenizer, str(trained.path), None), task, trained


@pytest.mark.llm  # runs an LLM (torch): the llm extra
@pytest.mark.slow
def test_task_predictive_reads_what_the_logger_and_the_wind_tunnel_read(windtunnel):
    from bayesmatrix.analysis.consistency import task_predictive
    from bayesmatrix.analysis.metrics import kl_bits
    from bayesmatrix.data.llm import log_task
    from bayesmatrix.data.windtunnel.modeling import model_predictive

    loaded, task, trained = windtunnel
    predictive = task_predictive(loaded, task)
    # the logger's rows of two episodes, renormalised over the categories
    ds = log_task(loaded, task, episodes=2, length=6, seed=4)
    observations = np.diff(ds["context_counts"].values[:7, :-1], axis=0).argmax(axis=1)
    logged = ds["probs"].values[:7, :-1] / ds["probs"].values[:7, :-1].sum(axis=1, keepdims=True)
    ours = np.concatenate([predictive(observations[None, :k]) for k in range(7)])
    assert np.allclose(ours, logged, atol=1e-5)
    # the wind tunnel's own reading, and the exact posterior predictive it was trained to match
    tokens = np.random.default_rng(0).integers(0, 3, size=(20, 9))
    theirs, _ = model_predictive(trained.model, trained.world, tokens)
    assert np.allclose(predictive(tokens[:, :8]), theirs[:, 8], atol=1e-5)
    exact = trained.world.predictive(tokens)[:, 8]
    assert kl_bits(exact, theirs[:, 8]).mean() < 0.01


@pytest.mark.llm  # runs an LLM (torch): the llm extra
@pytest.mark.slow
def test_wind_tunnel_is_nearly_bayesian_on_both_checks(windtunnel):
    from bayesmatrix.analysis.consistency import task_multisets, task_predictive

    loaded, task, _ = windtunnel
    result = check("wind tunnel", task_predictive(loaded, task), task.categories, task_multisets(task, 8, 10),
                   num_orders=4, num_paths=8, length=6)
    # a transformer trained to 1e-4 bits of the exact predictive: far below SmolLM2's 0.28 and 0.05
    assert result.exchangeability.mean_max_tv < 0.03
    assert result.martingale.mean_gap < 0.01
