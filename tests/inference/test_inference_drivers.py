"""The NUTS and SVI drivers, run directories, diagnostics and LOO comparison on a conjugate toy model.

Beta(2, 3) prior, Binomial likelihood: the posterior is Beta(2 + k, 3 + n - k)
in closed form, so the drivers are checked against it with tolerances scaled
by Monte Carlo standard error.
"""

import json

import arviz_base as azb
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from bayesmatrix.analysis.compare import compare_datatrees
from bayesmatrix.analysis.diagnostics import diagnose_datatree, ebfmi, format_diagnosis
from bayesmatrix.data.errors import InputError
from bayesmatrix.inference.nuts import nuts
from bayesmatrix.inference.rundir import read_run, write_run_dir
from bayesmatrix.inference.svi import plateaued, svi

TRIALS = 20
SUCCESSES = np.array([14, 17, 12, 15, 16, 13, 18, 15])


def beta_binomial(successes=None, trials=TRIALS, a=2.0, b=3.0):
    p = numpyro.sample("p", dist.Beta(a, b))
    with numpyro.plate("row", 8):
        numpyro.sample("successes", dist.Binomial(trials, p), obs=successes)


def fixed_rate(successes=None, trials=TRIALS):
    """A deliberately wrong explanation: a prior pinned near p = 0.3 that the data cannot move."""
    return beta_binomial(successes, trials, a=300.0, b=700.0)


def closed_form():
    a = 2.0 + SUCCESSES.sum()
    b = 3.0 + TRIALS * len(SUCCESSES) - SUCCESSES.sum()
    mean = a / (a + b)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    return mean, sd


@pytest.fixture(scope="module")
def nuts_run():
    return nuts(
        beta_binomial, {"successes": jnp.array(SUCCESSES)}, num_samples=1000, num_warmup=500, num_chains=2, seed=1,
        progress_bar=False,
    )


def test_nuts_matches_conjugate_posterior(nuts_run):
    import arviz_stats as azs

    mean, sd = closed_form()
    draws = np.asarray(nuts_run.datatree["posterior"]["p"])
    mcse = float(azs.mcse(nuts_run.datatree, var_names=["p"])["p"])
    assert abs(draws.mean() - mean) / mcse < 4
    assert abs(draws.std() - sd) / sd < 0.15
    assert nuts_run.num_divergences == 0
    assert nuts_run.chain_method == "parallel"  # two host devices from conftest
    assert set(nuts_run.datatree.children) >= {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    assert nuts_run.datatree["log_likelihood"]["successes"].shape == (2, 1000, 8)
    assert nuts_run.num_gradient_evals >= 2 * 1000


@pytest.fixture(scope="module")
def svi_run():
    return svi(beta_binomial, {"successes": jnp.array(SUCCESSES)}, num_samples=2000, seed=0, progress_bar=False)


def test_svi_matches_conjugate_posterior(svi_run):
    mean, sd = closed_form()
    result = svi_run
    draws = np.asarray(result.datatree["posterior"]["p"])
    assert result.converged
    assert abs(draws.mean() - mean) < 0.25 * sd
    assert abs(draws.std() - sd) / sd < 0.25
    assert result.datatree["posterior"].sizes["chain"] == 1
    assert result.datatree["log_likelihood"]["successes"].shape == (1, 2000, 8)
    assert len(result.losses) == result.num_steps and "elbo" in result.datatree.children


def test_plateau_rule():
    flat = np.full(2000, 10.0)
    falling = np.linspace(100.0, 10.0, 2000)
    assert plateaued(flat, window=500, tolerance=1e-4)
    assert not plateaued(falling, window=500, tolerance=1e-4)
    assert not plateaued(flat[:900], window=500, tolerance=1e-4)


def test_ebfmi_against_its_definition():
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(2, 4000))  # E[(dE)^2] = 2 Var(E): E-BFMI near 2
    random_walk = np.cumsum(rng.normal(size=(2, 4000)), axis=1)  # sticky energies: E-BFMI near 0
    np.testing.assert_allclose(ebfmi(independent), 2.0, atol=0.15)
    assert (ebfmi(random_walk) < 0.05).all()


def test_diagnose_flags_chains_that_disagree():
    rng = np.random.default_rng(0)
    draws = np.stack([rng.normal(0.0, 1.0, 400), rng.normal(3.0, 1.0, 400)])
    energy = np.stack([rng.normal(size=400), np.cumsum(rng.normal(size=400))])
    tree = azb.from_dict(
        {
            "posterior": {"mu": draws},
            "sample_stats": {"energy": energy, "diverging": np.zeros((2, 400), bool) | (np.arange(400) == 7)},
        }
    )
    diagnosis = diagnose_datatree(tree, "nuts")
    text = "\n".join(diagnosis.flags)
    assert "r_hat" in text and "divergent" in text and "chain 1: E-BFMI" in text
    assert diagnosis.num_divergences == 2
    assert "FAILED CHECKS" in format_diagnosis(diagnosis)


def test_diagnose_passes_a_good_run(nuts_run):
    diagnosis = diagnose_datatree(nuts_run.datatree, "nuts")
    assert diagnosis.flags == [], diagnosis.flags
    assert "all checks passed" in format_diagnosis(diagnosis)


def test_compare_prefers_the_model_that_learns(nuts_run):
    wrong = nuts(fixed_rate, {"successes": jnp.array(SUCCESSES)}, num_samples=200, num_warmup=200, num_chains=2,
                 progress_bar=False)
    comparison = compare_datatrees({"learns": nuts_run.datatree, "fixed": wrong.datatree})
    assert list(comparison.table.index) == ["learns", "fixed"]
    assert comparison.table.loc["fixed", "elpd_diff"] > 4 * comparison.table.loc["fixed", "dse"]


def test_run_dir_round_trip_and_atomicity(tmp_path, nuts_run):
    out = write_run_dir(tmp_path / "run", nuts_run.datatree, {"model": "beta-binomial", "method": "nuts"})
    run = read_run(out)
    assert run.info["model"] == "beta-binomial"
    np.testing.assert_allclose(run.datatree["posterior"]["p"], nuts_run.datatree["posterior"]["p"])
    assert json.loads((out / "run.json").read_text())["method"] == "nuts"

    def broken_figures(tree, plots):
        (plots / "half.png").write_bytes(b"x")
        raise RuntimeError("figure failed")

    with pytest.raises(RuntimeError):
        write_run_dir(tmp_path / "run2", nuts_run.datatree, {}, figures=broken_figures)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "no half-written run directory may remain"
    with pytest.raises(InputError, match="already exists"):
        write_run_dir(out, nuts_run.datatree, {})


def test_read_run_rejects_other_folders(tmp_path):
    with pytest.raises(InputError, match="posterior.nc is missing"):
        read_run(tmp_path)


def test_svi_is_diagnosed_by_its_elbo_and_the_pareto_k_of_its_guide(svi_run):
    """A fitted mean-field guide of the conjugate model is a usable proposal; one ten times too narrow is not
    (for normal densities, a proposal of sd r against the target's has k = 1 - r^2: 0.99)."""
    import jax

    from bayesmatrix.inference.svi import draws_to_datatree

    data = {"successes": jnp.array(SUCCESSES)}
    result = svi_run
    tree = result.datatree
    tree.attrs["method"] = "svi"
    diagnosis = diagnose_datatree(tree, "svi", result.converged)
    text = format_diagnosis(diagnosis)
    assert diagnosis.flags == [] and "all checks passed" in text
    assert "r_hat" not in diagnosis.table and "nan" not in text.lower()
    assert 0 <= diagnosis.elbo_relative_change <= 1e-4 and "plateau reached: yes" in text
    assert diagnosis.pareto_k < diagnosis.pareto_k_threshold and "guide Pareto k" in text

    narrow = {name: value * 0.1 if name.endswith("_auto_scale") else value for name, value in result.params.items()}
    narrow_tree = draws_to_datatree(beta_binomial, data, guide=result.guide, params=narrow, num_samples=2000,
                                    key=jax.random.PRNGKey(1))  # fmt: skip
    narrow_diagnosis = diagnose_datatree(narrow_tree, "svi", True)
    assert narrow_diagnosis.pareto_k > 0.7
    assert any("Pareto k" in flag for flag in narrow_diagnosis.flags)
    assert "all checks passed" not in format_diagnosis(narrow_diagnosis)


def test_importance_weights_are_the_log_joint_minus_the_guide_density(svi_run):
    """log p(x, z) - log q(z) of each stored draw, against the closed forms of the Beta prior, the
    Binomial likelihood and the guide's logit-normal density."""
    from scipy import stats

    from bayesmatrix.inference.svi import IMPORTANCE_SITE

    result = svi_run
    p = np.asarray(result.datatree["posterior"]["p"]).ravel().astype(float)
    log_joint = stats.beta(2, 3).logpdf(p) + stats.binom(TRIALS, p[:, None]).logpmf(SUCCESSES).sum(axis=1)
    loc, scale = float(result.params["p_auto_loc"]), float(result.params["p_auto_scale"])
    logit = np.log(p / (1 - p))
    log_guide = stats.norm(loc, scale).logpdf(logit) - np.log(p * (1 - p))  # the logit's Jacobian
    stored = np.asarray(result.datatree["sample_stats"][IMPORTANCE_SITE]).ravel()
    np.testing.assert_allclose(stored, log_joint - log_guide, rtol=1e-4, atol=1e-3)


def test_a_non_finite_r_hat_is_a_failed_check():
    tree = azb.from_dict({"posterior": {"c": np.ones((2, 200)), "mu": np.random.default_rng(0).normal(size=(2, 200))}})
    diagnosis = diagnose_datatree(tree, "nuts")
    assert any(flag.startswith("c: r_hat is not finite") for flag in diagnosis.flags), diagnosis.flags
    assert "all checks passed" not in format_diagnosis(diagnosis)
