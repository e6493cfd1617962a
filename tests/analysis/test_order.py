"""Order and position: the order variance and the permutation-averaged predictive's KL from Bayes."""

import json

import numpy as np
import pytest

from bayesmatrix.analysis.consistency import permuted_orders, updater_predictive
from bayesmatrix.analysis.metrics import kl_bits
from bayesmatrix.analysis.order import bayes_predictive, order_sensitivity, order_statistics, order_variance
from bayesmatrix.data.tasks import get_task, windtunnel_task
from bayesmatrix.data.windtunnel.worlds import get_world

ALPHA = np.array([2.0, 1.0, 0.5])


@pytest.fixture(scope="module")
def multisets():
    return np.random.default_rng(0).integers(0, 3, size=(12, 9))


def test_an_exact_updater_has_no_order_variance_and_equal_kls(multisets):
    result = order_sensitivity(updater_predictive(ALPHA), bayes_predictive(windtunnel_task("dirichlet")), multisets,
                               num_orders=6, seed=1)  # fmt: skip
    s = result.statistics
    assert result.orders.shape == (12, 6, 9) and result.probs.shape == (12, 6, 3)
    assert s.mean_variance < 1e-30 and s.mean_max_tv < 1e-15
    np.testing.assert_allclose(s.raw_kl, 0.0, atol=1e-12)
    np.testing.assert_allclose(s.averaged_kl, 0.0, atol=1e-12)
    # The same exact updater against another prior: not 0, but the average over orders changes nothing.
    other = order_sensitivity(updater_predictive(ALPHA), updater_predictive(np.ones(3)), multisets, 6, seed=1)
    assert other.statistics.mean_raw_kl > 1e-3
    np.testing.assert_allclose(other.statistics.raw_kl, other.statistics.averaged_kl, rtol=1e-12)


def test_recency_weighting_has_order_variance_and_averaging_brings_it_closer(multisets):
    result = order_sensitivity(updater_predictive(ALPHA, decay=0.7), updater_predictive(ALPHA), multisets, 8, seed=2)
    s = result.statistics
    assert s.mean_variance > 5 * s.se_variance > 0
    # KL is convex in the model's predictive: the average over orders is never further from Bayes.
    assert np.all(s.averaged_kl <= s.raw_kl + 1e-15)
    assert s.mean_kl_reduction > 3 * s.se_kl_reduction


def test_order_statistics_against_their_definitions():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(4), size=(5, 3)) * 0.9  # 10% of the mass outside the categories
    bayes = rng.dirichlet(np.ones(4), size=5)
    s = order_statistics(probs, bayes)
    renormalised = probs / probs.sum(axis=-1, keepdims=True)
    for m in range(5):
        np.testing.assert_allclose(order_variance(probs)[m], np.var(probs[m], axis=0, ddof=1))
        np.testing.assert_allclose(s.variance[m], np.var(renormalised[m], axis=0, ddof=1))
        raw = np.mean([np.sum(bayes[m] * np.log2(bayes[m] / probs[m, p])) for p in range(3)])
        assert s.raw_kl[m] == pytest.approx(raw)
        assert s.averaged_kl[m] == pytest.approx(np.sum(bayes[m] * np.log2(bayes[m] / probs[m].mean(axis=0))))
    # strict = renormalised + log2(1 / 0.9): the mass outside the categories counts against the model
    np.testing.assert_allclose(s.raw_kl - s.raw_kl_renormalised, np.log2(1 / 0.9))
    assert s.mean_outside == pytest.approx(0.1)
    assert s.mean_variance == pytest.approx(s.variance.mean())
    assert s.se_variance == pytest.approx(s.variance.mean(axis=1).std(ddof=1) / np.sqrt(5))
    with pytest.raises(ValueError, match="P >= 2"):
        order_statistics(probs[:, :1], bayes)


def test_bayes_predictive_is_the_worlds_closed_form():
    world = get_world("mixture")
    tokens = np.random.default_rng(5).integers(0, 3, size=(6, 8))
    # world.predictive at position 8 predicts the 8th token after the first 7
    expected = world.predictive(tokens)[:, 7]
    np.testing.assert_allclose(bayes_predictive(windtunnel_task(world))(tokens[:, :7]), expected, rtol=1e-12)
    coin = bayes_predictive(get_task("coin"))(np.array([[0, 0, 1]]))  # the coin task states a uniform prior
    np.testing.assert_allclose(coin, [[3 / 5, 2 / 5]])
    np.testing.assert_allclose(kl_bits(expected, expected), 0.0)


def test_permuted_orders_keep_each_multiset(multisets):
    orders = permuted_orders(multisets, 5, seed=3)
    np.testing.assert_array_equal(orders[:, 0], multisets)
    np.testing.assert_array_equal(np.sort(orders, axis=-1), np.repeat(np.sort(multisets, axis=-1)[:, None], 5, 1))
    assert np.any(orders[:, 1] != multisets)
    kept = permuted_orders(multisets, 5, seed=3, keep_last=True)
    np.testing.assert_array_equal(kept[:, :, -1], np.repeat(multisets[:, -1:], 5, 1))
    np.testing.assert_array_equal(np.sort(kept[..., :-1], axis=-1),
                                  np.repeat(np.sort(multisets[:, :-1], axis=-1)[:, None], 5, 1))  # fmt: skip
    assert np.any(kept[:, 1] != multisets)


# ---------------------------------------------------------------- positions in the wind-tunnel models


def _last_predictive(model, inputs):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.as_tensor(inputs)).logits[:, -1].double().softmax(-1).numpy()


@pytest.mark.llm
def test_without_positions_one_layer_is_exchangeable_and_two_are_not():
    """The nope model sees no position index; only the causal mask carries order.

    With one layer the output at the last input depends on that input and on the
    set of inputs before it, so permuting those leaves it exactly as it was (up
    to float error); a rotary or learned-position model moves. With two layers
    the first layer's outputs at earlier positions depend on their prefixes, so
    even the nope model moves.
    """
    import torch

    from bayesmatrix.data.windtunnel.modeling import build_model

    world = get_world("dirichlet")
    rng = np.random.default_rng(6)
    context = rng.integers(3, 6, size=(8, 12))  # token ids of the categories
    permuted = context.copy()
    permuted[:, :-1] = rng.permuted(context[:, :-1], axis=1)  # the last input, which predicts, stays
    bos = np.ones((8, 1), dtype=np.int64)
    inputs, permuted_inputs = np.concatenate([bos, context], 1), np.concatenate([bos, permuted], 1)
    moved = {}
    for arch in ("nope", "llama", "gpt2"):
        for layers in (1, 2):
            model = build_model(world, arch, None, max_positions=64, seed=0, num_layers=layers).eval()
            moved[arch, layers] = np.abs(_last_predictive(model, inputs) - _last_predictive(model, permuted_inputs))
    assert moved["nope", 1].max() < 1e-6
    assert moved["llama", 1].max() > 1e-5 and moved["gpt2", 1].max() > 1e-5
    assert moved["nope", 2].max() > 1e-5
    # No position index at any depth: any position ids give the same logits.
    model = build_model(world, "nope", None, max_positions=64, seed=0)
    shuffled = torch.as_tensor(rng.permutation(13)[None].repeat(8, 0))
    with torch.no_grad():
        plain = model(input_ids=torch.as_tensor(inputs)).logits
        np.testing.assert_array_equal(model(input_ids=torch.as_tensor(inputs), position_ids=shuffled).logits, plain)


@pytest.mark.llm
def test_order_command_writes_the_table(tmp_path, capsys):
    from bayesmatrix.cli import main

    out = tmp_path / "order.json"
    args = ["order", "windtunnel:dirichlet", "windtunnel:dirichlet-gpt2", "--multisets", "3", "--orders", "3",
            "--examples", "4", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "rotary" in printed and "learned absolute" in printed
    record = json.loads(out.read_text())
    assert record["command"].startswith("bayesmatrix order windtunnel:dirichlet windtunnel:dirichlet-gpt2 ")
    rows = {row["model"]: row for row in record["rows"]}
    assert rows["windtunnel:dirichlet"]["task"] == "windtunnel-dirichlet"
    assert rows["windtunnel:dirichlet"]["reference"] == "stated Dir(2, 1, 0.5)"
    for row in rows.values():
        assert row["averaged_strict_kl_bits"] <= row["raw_strict_kl_bits"] and row["order_variance"] > 0
    kept = tmp_path / "kept.csv"
    assert main(["order", "windtunnel:dirichlet-nope", "--multisets", "3", "--orders", "3", "--keep-last",
                 "--out", str(kept)]) == 0  # fmt: skip
    assert "(the last example kept last)" in capsys.readouterr().out
    assert "keep_last" in kept.read_text().splitlines()[0] and ",True," in kept.read_text().splitlines()[1]
    assert main(["order", "windtunnel:dirichlet", "--orders", "1"]) == 2
    assert "--orders" in capsys.readouterr().err


@pytest.mark.long
@pytest.mark.llm
def test_the_shipped_table_reproduces_for_the_wind_tunnels(tmp_path):
    """The wind-tunnel rows of data/shipped/windtunnel/order/order.json, rerun from the command stored in it."""
    import shlex
    from pathlib import Path

    from bayesmatrix.cli import main

    shipped = json.loads((Path(__file__).resolve().parents[2] / "data/shipped/windtunnel/order/order.json").read_text())
    words = shlex.split(shipped["command"])
    assert words[:2] == ["bayesmatrix", "order"]
    out = tmp_path / "order.json"
    # the same command without the LLM (minutes to load and run on two cores), into a file of its own
    args = [word for word in words[1 : words.index("--out")] if word != "smollm2"]  # "order", its models, settings
    assert main([*args, "--out", str(out)]) == 0
    rerun = {row["model"]: row for row in json.loads(out.read_text())["rows"]}
    expected = {row["model"]: row for row in shipped["rows"] if row["model"].startswith("windtunnel:")}
    assert set(rerun) == set(expected) and len(expected) == 3
    for name, row in expected.items():
        for key, value in row.items():
            if isinstance(value, float):
                assert rerun[name][key] == pytest.approx(value, rel=1e-4, abs=1e-12), (name, key)
            else:
                assert rerun[name][key] == value, (name, key)
