"""The embedding model: densities by hand, the minibatch ELBO's unbiasedness, feature preparation and recovery."""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Trace_ELBO
from scipy.special import softmax
from scipy.stats import dirichlet

from bayesmatrix.inference.simulate import simulate_embedding, truth_of
from bayesmatrix.models.embedding import (
    apply_features,
    embedding,
    fit_features,
    logit_map,
    num_parameters,
    row_log_density,
    row_means,
)


def _small(rows=40, cols=5, embed_dim=3, rank=2, seed=0):
    ds = simulate_embedding(rows=rows, cols=cols, embed_dim=embed_dim, rank=rank, seed=seed)
    probs = ds["probs"].values[:, :-1]  # the simulator's <other> column is empty
    return ds, probs / probs.sum(axis=1, keepdims=True), ds["embedding"].values


def test_row_log_density_matches_scipy_dirichlet():
    rng = np.random.default_rng(1)
    U, V, b = rng.normal(size=(4, 2)), rng.normal(size=(3, 2)), rng.normal(size=4)
    e = rng.normal(size=(6, 3))
    probs = rng.dirichlet(np.ones(4), size=6)
    got = np.asarray(row_log_density(probs, e, U, V, b, 7.0, epsilon=1e-12))
    means = softmax(b + e @ V @ U.T, axis=1)
    expected = [dirichlet.logpdf(p, 7.0 * m) for p, m in zip(probs, means)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_row_means_broadcast_over_draws():
    rng = np.random.default_rng(2)
    U, V, b = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 4))
    e = rng.normal(size=(7, 5))
    means = np.asarray(row_means(U, V, b, e))
    assert means.shape == (3, 7, 4)
    np.testing.assert_allclose(means[1], softmax(b[1] + e @ V[1] @ U[1].T, axis=1), rtol=1e-5)


def test_logit_map_is_invariant_to_rotation_scale_and_shift():
    rng = np.random.default_rng(3)
    U, V = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    A = rng.normal(size=(2, 2)) + 3 * np.eye(2)
    same = logit_map(U @ A, V @ np.linalg.inv(A).T)
    np.testing.assert_allclose(same, logit_map(U, V), atol=1e-5)
    # A constant added to every column's logit is invisible to the softmax, and to the centred map.
    shifted_U = np.concatenate([U, np.ones((6, 1))], axis=1)
    shifted_V = np.concatenate([V, rng.normal(size=(4, 1))], axis=1)
    np.testing.assert_allclose(logit_map(shifted_U, shifted_V), logit_map(U, V), atol=1e-5)
    assert not np.allclose(logit_map(U @ A, V), logit_map(U, V), atol=1e-3)


def test_prior_predictive_shapes_and_sites():
    _, probs, e = _small()

    @jax.jit  # one compilation instead of one per operation
    def prior_draw(key):
        trace = handlers.trace(handlers.seed(embedding, key)).get_trace(embedding=e, num_cols=5, rank=2)
        return {name: site["value"] for name, site in trace.items()}

    draw = prior_draw(jax.random.PRNGKey(0))
    assert draw["U"].shape == (5, 2)
    np.testing.assert_allclose(draw["U"], draw["U_unit"] / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(draw["V"], draw["V_unit"] / np.sqrt(3), rtol=1e-6)
    assert draw["V"].shape == (3, 2)
    assert draw["b"].shape == (5,)
    assert draw["s"].shape == ()
    assert draw["probs"].shape == (40, 5)
    np.testing.assert_allclose(draw["probs"].sum(axis=1), 1.0, rtol=1e-5)


def test_counts_are_dirichlet_multinomial():
    _, probs, e = _small()
    counts = np.random.default_rng(4).multinomial(10, probs)
    params = {"U_unit": jnp.zeros((5, 2)), "V_unit": jnp.zeros((3, 2)), "b": jnp.zeros(5), "s": jnp.asarray(3.0)}
    model = handlers.substitute(embedding, params)
    trace = handlers.trace(model).get_trace(
        embedding=e, num_cols=5, rank=2, counts=counts, total_count=counts.sum(1), observe=("counts",)
    )
    # Zero map and zero bias: every row's concentration is 3/5 in each column.
    alpha = np.full(5, 3.0 / 5)
    row = counts[0]
    expected = (
        math.lgamma(11) - sum(math.lgamma(n + 1) for n in row)
        + math.lgamma(alpha.sum()) - math.lgamma(alpha.sum() + 10)
        + sum(math.lgamma(a + n) - math.lgamma(a) for a, n in zip(alpha, row))
    )
    assert float(trace["counts"]["fn"].log_prob(counts)[0]) == pytest.approx(expected, rel=1e-5)


def test_subsample_takes_a_minibatch_and_scales_it():
    _, probs, e = _small()
    trace = handlers.trace(handlers.seed(embedding, 1)).get_trace(
        embedding=e, num_cols=5, rank=2, probs=probs, batch_size=8
    )
    assert trace["probs"]["value"].shape == (8, 5)
    assert trace["probs"]["scale"] == pytest.approx(40 / 8)


def test_minibatch_elbo_is_unbiased():
    """Same guide parameters: the mean of many minibatch ELBOs matches the full-batch ELBO within 4 standard errors.

    The guide is a point mass at fixed values (what ``AutoDelta`` fits), written
    out so that the only randomness is the choice of minibatch.
    """
    _, probs, e = _small(rows=60, seed=5)
    data = dict(embedding=e, num_cols=5, rank=2, probs=probs)
    rng = np.random.default_rng(6)
    point = {"U_unit": rng.normal(size=(5, 2)), "V_unit": rng.normal(size=(3, 2)), "b": rng.normal(size=5), "s": 20.0}

    def point_guide(**_):
        for name, value in point.items():
            # the model samples U_unit and V_unit inside plates (col or feature, by rank): no event axes
            event_dim = 0 if name in ("U_unit", "V_unit") else np.ndim(value)
            numpyro.sample(name, dist.Delta(jnp.asarray(value), event_dim=event_dim))

    elbo = Trace_ELBO()

    @functools.partial(jax.jit, static_argnums=1)  # compiled, not op by op; batch_size fixes the shapes
    def elbo_losses(keys, batch_size):
        return jax.vmap(lambda key: elbo.loss(key, {}, embedding, point_guide, **data, batch_size=batch_size))(keys)

    full = float(elbo_losses(jax.random.split(jax.random.PRNGKey(1), 1), None)[0])
    losses = np.asarray(elbo_losses(jax.random.split(jax.random.PRNGKey(2), 4000), 6))
    standard_error = losses.std(ddof=1) / np.sqrt(len(losses))
    assert losses.std() > 0.01 * abs(full)  # the minibatches really differ
    assert abs(losses.mean() - full) < 4 * standard_error, (losses.mean(), full, standard_error)
    # Power: an unscaled minibatch term (a tenth of the rows' log-likelihood) would miss by far more than this.
    assert standard_error < 0.01 * abs(full)


def test_features_centre_scale_and_keep_geometry():
    rng = np.random.default_rng(7)
    raw = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6)) + 3.0
    features = fit_features(raw, components=None)
    prepared = apply_features(features, raw)
    np.testing.assert_allclose(prepared.mean(axis=0), 0.0, atol=1e-10)
    assert np.sqrt(np.mean(prepared**2)) == pytest.approx(1.0)
    # Every component kept: a rotation and one scale, so distance ratios are those of the raw rows.
    raw_distance = np.linalg.norm(raw[:25] - raw[25:], axis=1)
    prepared_distance = np.linalg.norm(prepared[:25] - prepared[25:], axis=1)
    np.testing.assert_allclose(prepared_distance * features.scale, raw_distance, rtol=1e-8)
    reduced = fit_features(raw, components=2)
    assert apply_features(reduced, raw[:3]).shape == (3, 2)


def test_num_parameters():
    assert num_parameters(num_cols=10, embed_dim=4, rank=3) == 10 * 3 + 4 * 3 + 10 + 1


@pytest.mark.slow
def test_svi_recovers_the_low_rank_map():
    """Simulated low-rank rows: the fitted U V^T spans the true subspaces and scores unseen rows like the truth."""
    from bayesmatrix.analysis.embedding import fit_embedding_model, map_subspace_angles, predictive_log_density

    rank = 2
    ds = simulate_embedding(rows=400, cols=12, embed_dim=6, rank=rank, concentration=50.0, seed=11)
    truth = truth_of(ds)
    probs = ds["probs"].values[:, :-1]
    probs = probs / probs.sum(axis=1, keepdims=True)
    e = ds["embedding"].values
    train, test = slice(0, 300), slice(300, 400)
    fit = fit_embedding_model(
        probs[train], e[train], rank, seed=0, num_samples=100, learning_rate=0.03, max_steps=6000, window=250,
        min_steps=500,
    )
    assert fit.converged, fit.num_steps
    print(f"SVI steps: {fit.num_steps}")
    U_true, V_true, b_true = (np.asarray(truth[name]) for name in ("U", "V", "b"))
    W_true = np.asarray(logit_map(U_true, V_true))
    W_fit = np.asarray(logit_map(fit.U, fit.V)).mean(axis=0)
    column_angles, embedding_angles = map_subspace_angles(W_true, W_fit, rank)
    print(f"principal angles: columns {np.round(column_angles, 2)}, embedding {np.round(embedding_angles, 2)} degrees")
    assert column_angles.max() < 20 and embedding_angles.max() < 20

    fitted = predictive_log_density(fit, probs[test], e[test]).sum()
    true = float(np.asarray(row_log_density(probs[test], e[test], U_true, V_true, b_true, truth["s"])).sum())
    print(f"held-out log density: fitted {fitted:.2f}, true model {true:.2f}")
    assert abs(fitted - true) < 0.02 * abs(true)


def test_initial_values_give_a_finite_density_for_wide_embeddings():
    """NumPyro's default initialisation (uniform in [-2, 2], unconstrained) must not underflow the softmax."""
    from numpyro.infer import init_to_uniform

    rng = np.random.default_rng(8)
    features = rng.normal(size=(30, 64))
    probs = rng.dirichlet(np.ones(50), size=30)

    @jax.jit
    def initial_log_density(key):
        model = handlers.substitute(handlers.seed(embedding, key), substitute_fn=init_to_uniform)
        trace = handlers.trace(model).get_trace(embedding=features, num_cols=50, rank=8, probs=probs)
        return trace["probs"]["fn"].log_prob(trace["probs"]["value"]).sum()

    values = jax.vmap(initial_log_density)(jax.random.split(jax.random.PRNGKey(0), 16))
    assert np.isfinite(np.asarray(values)).all()


def test_prepare_gives_features_rank_and_dims():
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.inference.prepare import prepare

    ds, probs, e = _small(rows=30, cols=4, embed_dim=3)
    prepared = prepare(ds, "embedding", rank=3)
    kwargs = prepared.kwargs
    assert kwargs["rank"] == 3 and kwargs["num_cols"] == 4 and prepared.columns == ["c0", "c1", "c2", "c3"]
    np.testing.assert_allclose(kwargs["probs"], probs)
    features = kwargs["embedding"]
    assert features.shape == (30, 3)
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-10)
    assert np.sqrt(np.mean(features**2)) == pytest.approx(1.0)
    assert prepared.dims["U"] == ["col", "rank"] and prepared.dims["V"] == ["feature", "rank"]
    assert list(prepared.coords["rank"]) == [0, 1, 2]
    with pytest.raises(InputError, match="embeddings"):
        prepare(ds.drop_vars("embedding"), "embedding")
    with pytest.raises(InputError, match="rank"):
        prepare(ds, "embedding", rank=0)


@pytest.mark.long  # the fit command end to end, twice: make test-long
def test_fit_command_with_minibatches_and_nuts(tmp_path):
    """`bayesmatrix fit LOG --model embedding` by minibatch SVI and by NUTS writes run directories diagnose reads."""
    from bayesmatrix.cli import main as cli
    from bayesmatrix.data.llmlog import write_log

    log = write_log(simulate_embedding(rows=60, cols=4, embed_dim=3, rank=1, seed=2), tmp_path / "sim.nc")
    svi_run, nuts_run = tmp_path / "svi", tmp_path / "nuts"
    assert cli(["fit", str(log), "--model", "embedding", "--rank", "1", "--method", "svi", "--batch-size", "16",
                "--max-steps", "3000", "--num-samples", "100", "--out", str(svi_run), "--no-plots", "--quiet"]) == 0
    assert cli(["fit", str(log), "--model", "embedding", "--rank", "1", "--method", "nuts", "--num-warmup", "150",
                "--num-samples", "100", "--num-chains", "1", "--out", str(nuts_run), "--no-plots", "--quiet"]) == 0
    run = json.loads((svi_run / "run.json").read_text())
    assert run["options"]["batch_size"] == 16 and run["options"]["rank"] == 1
    import xarray as xr

    tree = xr.open_datatree(svi_run / "posterior.nc")
    assert tree["log_likelihood"]["probs"].shape == (1, 100, 60)  # evaluated on every row, not a minibatch
    assert tree["posterior"]["U"].shape == (1, 100, 4, 1)
    cli(["diagnose", str(svi_run), str(nuts_run)])  # runs; its verdict on so short a NUTS run is not the point


def test_minibatches_are_refused_where_they_make_no_sense(tmp_path):
    from bayesmatrix.data.errors import InputError
    from bayesmatrix.data.llmlog import write_log
    from bayesmatrix.inference.fit import FitOptions, fit

    log = write_log(simulate_embedding(rows=20, cols=3, embed_dim=2, rank=1, seed=3), tmp_path / "sim.nc")
    with pytest.raises(InputError, match="minibatches"):
        fit(log, FitOptions(model="embedding", method="nuts", batch_size=8), tmp_path / "run")
    with pytest.raises(InputError, match="minibatches"):
        fit(log, FitOptions(model="matrix", method="svi", batch_size=8), tmp_path / "run2")
