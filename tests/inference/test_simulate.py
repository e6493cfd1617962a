"""Simulators: the rows the models draw against closed forms written out here, and Monte Carlo error.

The closed forms themselves are tested in tests/data/test_closed_forms_agree.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesmatrix.cli import main
from bayesmatrix.data.closed_forms import dirichlet_predictive, mixture_predictive, tempered, weighted_counts
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, read_log, write_log
from bayesmatrix.inference.simulate import (
    draw_rows,
    rows_log,
    simulate_embedding,
    simulate_icl,
    simulate_icl_mixture,
    simulate_matrix,
    truth_of,
)

Z = 5.0  # z-score bound for single Monte Carlo comparisons (two-sided p ~ 6e-7)


def dirichlet_z(observed: np.ndarray, mean: np.ndarray, tau: float) -> np.ndarray:
    """Standardised residuals of Dirichlet(tau * mean) draws: the marginal sd is sqrt(m (1 - m) / (tau + 1))."""
    return (observed - mean) / np.sqrt(mean * (1.0 - mean) / (tau + 1.0))


def observations_from(ds: xr.Dataset) -> np.ndarray:
    """Rebuild each episode's y_1..y_K from consecutive context_counts rows."""
    episodes = int(ds["episode"].max()) + 1
    counts = ds["context_counts"].values[:, :-1].reshape(episodes, -1, ds.sizes["col"] - 1)
    steps = np.diff(counts, axis=1)  # (episodes, K, C)
    assert np.all(steps.sum(axis=-1) == 1) and np.all((steps == 0) | (steps == 1))
    return steps.argmax(axis=-1)


# --- icl ---------------------------------------------------------------------


def test_exact_bayes_icl_rows_follow_the_conjugate_predictive():
    alpha = np.array([1.0, 2.0, 0.5])
    tau = 2000.0
    ds = simulate_icl(30, 8, alpha, tau=tau, seed=3)
    assert ds.sizes["row"] == 30 * 9
    counts = ds["context_counts"].values[:, :-1].astype(float)
    k = ds["position"].values[:, None]
    exact = (alpha + counts) / (alpha.sum() + k)  # written out, independent of the library
    z = dirichlet_z(ds["probs"].values[:, :-1], exact, tau)
    assert np.abs(z).max() < Z + 0.5  # the largest of ~800 draws
    assert abs(z.mean()) < 4.0 / np.sqrt(z.size)
    assert 0.8 < z.std() < 1.2
    np.testing.assert_array_equal(ds["probs"].values[:, -1], 0.0)
    np.testing.assert_array_equal(ds["context_counts"].values[:, -1], 0)


def test_decayed_tempered_rows_rebuild_from_consecutive_context_counts():
    alpha = np.array([0.8, 1.2, 2.0])
    decay, temperature, tau, other = 0.6, 0.7, 5000.0, 0.2
    ds = simulate_icl(20, 6, alpha, decay=decay, temperature=temperature, tau=tau, other_mass=other, seed=11)
    observations = observations_from(ds)  # (20, 6)
    predictive = tempered(dirichlet_predictive(alpha, weighted_counts(observations, 3, decay)), temperature).reshape(-1, 3)
    np.testing.assert_allclose(ds["probs"].values[:, -1], other)
    z = dirichlet_z(ds["probs"].values[:, :-1] / (1 - other), predictive, tau)
    assert np.abs(z).max() < Z + 0.5
    assert abs(z.mean()) < 4.0 / np.sqrt(z.size)
    # the undecayed predictive explains these rows far worse: the decay is in the data
    undecayed = tempered(dirichlet_predictive(alpha, weighted_counts(observations, 3, 1.0)), temperature).reshape(-1, 3)
    assert np.abs(dirichlet_z(ds["probs"].values[:, :-1] / (1 - other), undecayed, tau)).max() > 3 * Z


def test_world_alpha_drives_the_observations():
    # a world that almost always emits c2 while the updater's prior is flat
    ds = simulate_icl(50, 10, [1.0, 1.0, 1.0], world_alpha=[0.05, 0.05, 50.0], seed=5)
    last = ds["context_counts"].values[ds["position"].values == 10]
    assert last[:, 2].sum() > 0.95 * last.sum()
    assert truth_of(ds)["world_alpha"] == [0.05, 0.05, 50.0]


def test_icl_mixture_rows_follow_the_mixture_predictive():
    weights, alphas = np.array([0.4, 0.6]), np.array([[6.0, 1.0, 1.0], [1.0, 1.0, 6.0]])
    tau = 5000.0
    ds = simulate_icl_mixture(25, 7, weights, alphas, decay=0.9, tau=tau, seed=2)
    observations = observations_from(ds)
    predictive = mixture_predictive(weights, alphas, weighted_counts(observations, 3, 0.9)).reshape(-1, 3)
    z = dirichlet_z(ds["probs"].values[:, :-1], predictive, tau)
    assert np.abs(z).max() < Z + 0.5
    assert abs(z.mean()) < 4.0 / np.sqrt(z.size)
    truth = truth_of(ds)
    assert truth["w"] == [0.4, 0.6] and truth["world_alpha"] == alphas.tolist()
    assert len(truth["world_components"]) == 25 and set(truth["world_components"]) <= {0, 1}


def test_each_kind_names_the_model_that_drew_its_rows():
    assert truth_of(simulate_icl(2, 3, [1.0, 2.0], seed=0))["model"] == "icl"
    assert truth_of(simulate_icl(2, 3, [1.0, 2.0], decay=0.9, seed=0))["model"] == "icl-general"
    assert truth_of(simulate_icl_mixture(2, 3, [0.5, 0.5], [[3.0, 1.0], [1.0, 3.0]], seed=0))["model"] == "icl-mixture"
    assert truth_of(simulate_matrix(4, [[2.0, 1.0], [1.0, 2.0]], weights=[1.0, 1.0], seed=0))["model"] == "mixture"


def test_icl_mixture_has_no_temperature_to_draw_with():
    with pytest.raises(InputError, match="no temperature") as error:
        simulate_icl_mixture(2, 3, [0.5, 0.5], [[3.0, 1.0], [1.0, 3.0]], temperature=1.3, seed=0)
    assert error.value.field == "temperature"


def test_draw_rows_substitutes_every_parameter_or_refuses():
    skeleton = rows_log("matrix", 3, rows=5)
    drawn = draw_rows("matrix", skeleton, {"m": [0.2, 0.3, 0.5], "s": 4.0}, seed=1)
    assert drawn.probs.shape == (5, 3) and drawn.counts is None
    np.testing.assert_allclose(drawn.sites["alpha"], [0.8, 1.2, 2.0])  # the model's own deterministic site
    with pytest.raises(ValueError, match="missing: s"):
        draw_rows("matrix", skeleton, {"m": [0.2, 0.3, 0.5]}, seed=1)


def test_extreme_settings_never_give_nan_or_zero():
    ds = simulate_icl(5, 30, [1e-3, 1e-3, 1e-3], temperature=0.01, tau=1e-2, seed=0)
    probs = ds["probs"].values[:, :-1]
    assert np.all(np.isfinite(probs)) and np.all(probs > 0)
    matrix = simulate_matrix(50, [1e-4, 1e-4], seed=0)["probs"].values[:, :-1]
    assert np.all(np.isfinite(matrix)) and np.all(matrix > 0)


# --- matrix and embedding ----------------------------------------------------


def test_matrix_rows_have_the_dirichlet_mean_and_multinomial_counts():
    alpha = np.array([2.0, 5.0, 3.0])
    rows, N = 4000, 25
    ds = simulate_matrix(rows, alpha, counts_per_row=N, seed=7)
    pi = ds["probs"].values[:, :-1]
    mean = alpha / alpha.sum()
    standard_error = np.sqrt(mean * (1 - mean) / (alpha.sum() + 1) / rows)
    assert np.all(np.abs(pi.mean(axis=0) - mean) / standard_error < Z)
    counts = ds["counts"].values
    assert np.all(counts.sum(axis=1) == N) and np.all(counts[:, -1] == 0)
    # counts given pi: residuals of Multinomial(N, pi) have mean 0, variance N pi (1 - pi)
    z = (counts[:, :-1] - N * pi) / np.sqrt(N * pi * (1 - pi))
    assert np.all(np.abs(z.mean(axis=0)) * np.sqrt(rows) < Z)


def test_matrix_mixture_components_are_in_truth_and_explain_the_rows():
    alphas = np.array([[50.0, 1.0], [1.0, 50.0]])
    ds = simulate_matrix(300, alphas, weights=np.array([1.0, 3.0]), seed=1)
    truth = truth_of(ds)
    components = np.array(truth["components"])
    assert truth["w"] == [0.25, 0.75]
    assert abs(components.mean() - 0.75) < Z * np.sqrt(0.75 * 0.25 / 300)
    # with such well-separated components the row tells its component
    np.testing.assert_array_equal(ds["probs"].values[:, 1] > 0.5, components == 1)


def test_no_probs_stores_empirical_frequencies_and_keeps_pi_in_truth():
    ds = simulate_matrix(20, [1.0, 2.0], counts_per_row=8, store_probs=False, seed=4)
    np.testing.assert_array_equal(ds["probs"].values, ds["counts"].values / 8)
    truth = truth_of(ds)
    assert truth["probs_from"] == "counts" and np.array(truth["pi"]).shape == (20, 2)


def test_embedding_rows_scatter_around_the_softmax_map():
    s = 400.0
    ds = simulate_embedding(300, 4, 5, 2, concentration=s, counts_per_row=10, seed=8)
    truth = truth_of(ds)
    U, V, b = (np.array(truth[name]) for name in ("U", "V", "b"))
    assert U.shape == (4, 2) and V.shape == (5, 2) and b.shape == (4,) and truth["s"] == s
    logits = b + ds["embedding"].values @ V @ U.T
    mean = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    z = dirichlet_z(ds["probs"].values[:, :-1], mean, s)
    assert abs(z.mean()) < 4.0 / np.sqrt(z.size) and 0.8 < z.std() < 1.2
    assert ds["counts"].values.sum(axis=1).tolist() == [10] * 300


# --- determinism, truth round trip -------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: simulate_matrix(10, [1.0, 2.0, 3.0], counts_per_row=5, seed=seed),
        lambda seed: simulate_matrix(10, [[1.0, 2.0], [3.0, 1.0]], weights=[0.5, 0.5], seed=seed),
        lambda seed: simulate_icl(3, 4, [1.0, 2.0], decay=0.7, other_mass=0.1, seed=seed),
        lambda seed: simulate_icl_mixture(3, 4, [0.5, 0.5], [[3.0, 1.0], [1.0, 3.0]], seed=seed),
        lambda seed: simulate_embedding(6, 3, 4, 2, counts_per_row=3, seed=seed),
    ],
)
def test_same_seed_same_log_and_truth_round_trips(make, tmp_path):
    first, second, other = make(9), make(9), make(10)
    for ds in (first, second):
        del ds.attrs["created"]
    xr.testing.assert_identical(first, second)
    assert not np.array_equal(first["probs"].values, other["probs"].values)
    path = write_log(make(9), tmp_path / "sim.nc")
    back = read_log(path)
    assert truth_of(back) == truth_of(first)
    assert back.attrs["seed"] == 9 and str(back["col"].values[-1]) == OTHER


# --- command line ------------------------------------------------------------


def test_cli_writes_a_readable_log(tmp_path):
    out = tmp_path / "icl.nc"
    status = main(
        ["simulate", "icl", "--episodes", "3", "--length", "5", "--alpha", "1,2,3", "--decay", "0.9",
         "--seed", "4", "--out", str(out)]
    )
    assert status == 0
    ds = read_log(out)
    assert ds.sizes["row"] == 18 and truth_of(ds)["decay"] == 0.9
    xr.testing.assert_allclose(ds.drop_attrs(), simulate_icl(3, 5, [1.0, 2.0, 3.0], decay=0.9, seed=4).drop_attrs())


def test_cli_matrix_mean_and_concentration(tmp_path):
    out = tmp_path / "m.nc"
    argv = ["simulate", "matrix", "--rows", "4", "--alpha-mean", "1,1,2", "--concentration", "8", "--out", str(out)]
    assert main(argv) == 0
    truth = truth_of(read_log(out))
    assert truth["alpha"] == [2.0, 2.0, 4.0] and truth["s"] == 8.0 and truth["m"] == [0.25, 0.25, 0.5]


@pytest.mark.parametrize(
    "argv, field",
    [
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,two"], "--alpha"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,,2"], "--alpha"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,-2"], "--alpha"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,nan"], "--alpha"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,2", "--decay", "0"], "--decay"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,2", "--decay", "1.5"], "--decay"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,2", "--tau", "-1"], "--tau"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,2", "--other-mass", "1"], "--other-mass"),
        (["icl", "--episodes", "-2", "--length", "3", "--alpha", "1,2"], "--episodes"),
        (["icl", "--episodes", "2", "--length", "3", "--alpha", "1,2", "--world-alpha", "1,2,3"], "--world-alpha"),
        (["icl-mixture", "--episodes", "2", "--length", "3", "--alphas", "1,2;3"], "--alphas"),
        (["icl-mixture", "--episodes", "2", "--length", "3", "--alphas", "1,2;3,4", "--weights", "1,2,3"], "--weights"),
        (["icl-mixture", "--episodes", "2", "--length", "3", "--alphas", "1,2;3,4", "--weights", "1,-1"], "--weights"),
        (["matrix", "--rows", "3", "--cols", "4", "--alpha-mean", "1,2,3"], "--alpha-mean"),
        (["matrix", "--rows", "3", "--alphas", "1,2;3,4", "--components", "3"], "--components"),
        (["matrix", "--rows", "3", "--alphas", "1,2;3,0"], "--alphas"),
        (["matrix", "--rows", "3", "--cols", "2", "--weights", "1,1"], "--weights"),
        (["matrix", "--rows", "3", "--cols", "2", "--no-probs"], "--probs"),
        (["matrix", "--rows", "0", "--cols", "2"], "--rows"),
        (["embedding", "--rows", "3", "--cols", "3", "--embed-dim", "2", "--rank", "0"], "--rank"),
    ],
)
def test_cli_bad_options_are_one_line_and_exit_2(argv, field, tmp_path, capsys):
    out = tmp_path / "bad.nc"
    assert main(["simulate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"field '{field}'" in err, err
    assert not out.exists()


def test_cli_unparseable_number_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "icl", "--episodes", "x", "--length", "3", "--alpha", "1,2", "--out", str(tmp_path / "o.nc")])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1
