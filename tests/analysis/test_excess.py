"""Excess code length: KL(exact Bayes || LLM) per step against closed forms and a brute-force loop."""

import numpy as np
import pytest

from bayesmatrix.analysis.excess import (
    excess_bits_by_step,
    fitted_excess,
    format_excess,
    stated_excess,
)
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log, write_log
from bayesmatrix.inference.rundir import Run

ALPHA = np.array([2.0, 1.0, 0.5])


def episodes(num_episodes=5, length=6, seed=0):
    """Context counts (rows, C) of episodes drawn from the world Dirichlet(ALPHA), positions 0..length."""
    rng = np.random.default_rng(seed)
    counts, episode = [], []
    for e in range(num_episodes):
        observations = rng.choice(3, size=length, p=rng.dirichlet(ALPHA))
        seen = np.zeros(3, dtype=int)
        for k in range(length + 1):
            counts.append(seen.copy())
            episode.append(e)
            if k < length:
                seen[observations[k]] += 1
    return np.array(counts), np.array(episode)


def icl_log(probs, counts, episode, **attrs):
    """A log of rows ``probs`` (rows, 3) over a, b, c, the rest of each row's mass on <other>."""
    other = np.clip(1.0 - probs.sum(axis=1), 0.0, None)  # not -1e-17 from rounding
    return make_log(np.c_[probs, other], ["a", "b", "c", OTHER], model="test",
                    context_counts=np.c_[counts, np.zeros(len(counts), dtype=int)], episode=episode, **attrs)  # fmt: skip


def bayes(alpha, counts):
    return (alpha + counts) / (alpha.sum() + counts.sum(axis=1, keepdims=True))


def fake_run(posterior, dims, model="icl", path=None):
    import arviz_base as azb

    tree = azb.from_dict({"posterior": posterior}, dims=dims, coords={"col": ["a", "b", "c"]})
    return Run(path=path, datatree=tree, info={"model": model, "method": "nuts"})


def test_rows_that_are_the_bayes_predictive_waste_nothing():
    counts, episode = episodes()
    ds = icl_log(bayes(ALPHA, counts), counts, episode, task={"alpha": ALPHA.tolist()})
    stated = stated_excess(ds)  # the task's alpha
    assert stated.label == "stated alpha = (2, 1, 0.5)" and stated.reference == "stated"
    assert abs(stated.mean) < 1e-12 and np.abs(stated.by_step).max() < 1e-12
    np.testing.assert_array_equal(stated.steps, np.arange(7))
    draws = np.broadcast_to(ALPHA, (2, 10, 3))  # every posterior draw at the truth
    fitted = fitted_excess(fake_run({"alpha": draws}, {"alpha": ["col"]}), ds)
    assert fitted.by_step.shape == (20, 7) and np.abs(fitted.per_step).max() < 1e-12


def test_mass_on_other_tokens_costs_its_log_exactly():
    """Rows (1 - eps) q: every row's strict KL is -log2(1 - eps); renormalised, nothing."""
    counts, episode = episodes()
    eps = 0.1
    stated = stated_excess(icl_log((1 - eps) * bayes(ALPHA, counts), counts, episode), alpha=ALPHA)
    np.testing.assert_allclose(stated.by_step, -np.log2(1 - eps), rtol=1e-12)
    assert abs(stated.mean - -np.log2(1 - eps)) < 1e-12 and abs(stated.renormalised[0]) < 1e-12


def brute_force(llm, counts, position, alpha_of_row):
    """Mean over the rows at each step, then over steps, of sum_c q log2(q / p), by explicit loops."""
    by_step = {}
    for r in range(len(llm)):
        alpha = alpha_of_row(r)
        q = [(alpha[c] + counts[r, c]) / (sum(alpha) + sum(counts[r])) for c in range(len(alpha))]
        kl = sum(q[c] * np.log2(q[c] / llm[r, c]) for c in range(len(q)))
        by_step.setdefault(int(position[r]), []).append(kl)
    return np.mean([np.mean(values) for _, values in sorted(by_step.items())])


def test_fitted_excess_per_draw_against_brute_force_and_its_interval():
    counts, episode = episodes(seed=1)
    rng = np.random.default_rng(2)
    llm = 0.97 * rng.dirichlet([4.0, 2.0, 1.0], size=len(counts))
    ds = icl_log(llm, counts, episode)
    alpha = rng.gamma(3.0, size=(1, 8, 3))
    fitted = fitted_excess(fake_run({"alpha": alpha}, {"alpha": ["col"]}), ds)
    position = counts.sum(axis=1)
    expected = [brute_force(llm, counts, position, lambda r, d=d: alpha[0, d]) for d in range(8)]
    np.testing.assert_allclose(fitted.per_step, expected, rtol=1e-10)
    low, high = fitted.interval(0.5)
    assert (low, high) == (np.quantile(expected, 0.25), np.quantile(expected, 0.75))
    assert fitted.mean == pytest.approx(np.mean(expected)) and fitted.interval()[0] <= fitted.mean
    steps, by_step = excess_bits_by_step(llm, bayes(alpha[0, 0], counts)[None], position)
    np.testing.assert_allclose(by_step[0], fitted.by_step[0])
    np.testing.assert_array_equal(steps, np.arange(7))
    assert np.all(fitted.renormalised < fitted.per_step)  # 3% of each row elsewhere: strictly worse
    assert np.isfinite(fitted.se) and fitted.se > 0


def test_framed_and_mixture_priors_against_brute_force():
    from scipy.special import gammaln

    counts, episode = episodes(num_episodes=4, seed=3)
    rng = np.random.default_rng(4)
    llm = rng.dirichlet([3.0, 3.0, 3.0], size=len(counts))
    framing = episode % 2
    ds = icl_log(llm, counts, episode, framing=framing, framing_levels='[{"bias": "10"}, {"bias": "90"}]')
    position = counts.sum(axis=1)
    alpha = rng.gamma(2.0, size=(1, 3, 2, 3))  # (chain, draw, framing, col)
    framed = fitted_excess(fake_run({"alpha": alpha}, {"alpha": ["framing", "col"]}, "icl-framed"), ds)
    expected = [brute_force(llm, counts, position, lambda r, d=d: alpha[0, d, framing[r]]) for d in range(3)]
    np.testing.assert_allclose(framed.per_step, expected, rtol=1e-10)

    weights = rng.dirichlet([1.0, 1.0], size=(1, 3))
    mixture = fitted_excess(fake_run({"alpha": alpha, "w": weights}, {"alpha": ["component", "col"], "w": ["component"]},
                                     "icl-mixture"), ds)  # fmt: skip

    def mixture_kl(d):
        by_step = {}
        for r in range(len(llm)):
            a, n = alpha[0, d], counts[r]
            log_w = np.log(weights[0, d]) + [gammaln(a[k] + n).sum() - gammaln((a[k] + n).sum())
                                             - gammaln(a[k]).sum() + gammaln(a[k].sum()) for k in range(2)]  # fmt: skip
            w = np.exp(log_w - np.logaddexp.reduce(log_w))
            q = sum(w[k] * (a[k] + n) / (a[k] + n).sum() for k in range(2))
            by_step.setdefault(int(position[r]), []).append(np.sum(q * np.log2(q / llm[r])))
        return np.mean([np.mean(v) for _, v in sorted(by_step.items())])

    np.testing.assert_allclose(mixture.per_step, [mixture_kl(d) for d in range(3)], rtol=1e-10)


def test_what_has_no_reference_is_refused_by_name():
    counts, episode = episodes()
    ds = icl_log(bayes(ALPHA, counts), counts, episode)
    with pytest.raises(InputError, match="task states no prior") as error:
        stated_excess(ds)
    assert error.value.field == "alpha"
    with pytest.raises(InputError, match="3 positive numbers") as error:
        stated_excess(ds, alpha=[1.0, 2.0])
    with pytest.raises(InputError, match="does not update"):
        fitted_excess(fake_run({"m": np.full((1, 4, 3), 1 / 3)}, {"m": ["col"]}, "icl-none"), ds)
    plain = make_log(np.full((4, 3), 1 / 3), ["a", "b", OTHER], model="test")
    with pytest.raises(InputError, match="needs an ICL log") as error:
        stated_excess(plain, alpha=[1.0, 1.0])
    assert error.value.field == "context_counts"


def test_compare_prints_one_excess_line_per_icl_run(tmp_path, capsys):
    """compare --log: a line per run (an interval for a fitted prior, a reason for icl-none) and the task's prior."""
    import arviz_base as azb

    from bayesmatrix.cli import main
    from bayesmatrix.inference.rundir import file_sha256, write_run_dir

    counts, episode = episodes()
    log = write_log(icl_log(0.98 * bayes(ALPHA, counts), counts, episode, task={"alpha": ALPHA.tolist()}),
                    tmp_path / "icl.nc")  # fmt: skip
    rng = np.random.default_rng(0)
    base = {"method": "nuts", "data_file": "icl.nc", "data_sha256": file_sha256(log), "columns": ["a", "b", "c"],
            "options": {"observe": ["probs"]}}  # fmt: skip
    runs = []
    for model, posterior in (("icl", {"alpha": ALPHA * rng.gamma(50.0, 1 / 50.0, size=(2, 20, 1))}),
                             ("icl-none", {"m": rng.dirichlet(ALPHA, size=(2, 20))})):  # fmt: skip
        tree = azb.from_dict({"posterior": posterior, "log_likelihood": {"probs": rng.normal(size=(2, 20, len(counts)))}},
                             dims={name: ["col"] for name in posterior}, coords={"col": ["a", "b", "c"]})  # fmt: skip
        runs.append(write_run_dir(tmp_path / model, tree, {**base, "model": model}))
    assert main(["compare", *map(str, runs), "--log", str(log)]) == 0
    out = capsys.readouterr().out
    [icl_line] = [line for line in out.splitlines() if line.strip().startswith("icl (nuts): excess")]
    assert "bits/step (94% interval over the posterior)" in icl_line and "renormalised over the categories" in icl_line
    assert "icl-none (nuts): no fitted excess: the model does not update" in out
    [stated_line] = [line for line in out.splitlines() if "stated alpha = (2, 1, 0.5)" in line]
    assert f"excess {-np.log2(0.98):.4g} bits/step" in stated_line  # the rows are 0.98 of the task's Bayes predictive
    assert main(["compare", *map(str, runs), "--log", str(log), "--stated-alpha", "1,1"]) == 2
    assert "--stated-alpha" in capsys.readouterr().err


def test_format_excess_says_why_a_stated_prior_is_missing():
    counts, episode = episodes()
    ds = icl_log(bayes(ALPHA, counts), counts, episode)
    text = format_excess([], None, "the log's task states no prior")
    assert "not renormalised" in text and "stated prior: none: the log's task states no prior" in text
    assert "excess 0 bits/step" in format_excess([], stated_excess(ds, alpha=ALPHA))


def test_the_report_says_and_draws_the_excess_of_each_reference(tmp_path):
    import io

    import matplotlib.image

    from bayesmatrix.analysis.report import excess_html

    counts, episode = episodes()
    ds = icl_log(0.98 * bayes(ALPHA, counts), counts, episode, task={"alpha": ALPHA.tolist()})
    rng = np.random.default_rng(1)
    runs = [fake_run({"alpha": ALPHA * rng.gamma(50.0, 1 / 50.0, size=(2, 20, 1))}, {"alpha": ["col"]}),
            fake_run({"m": rng.dirichlet(ALPHA, size=(2, 20))}, {"m": ["col"]}, "icl-none")]  # fmt: skip
    figures = []
    text = excess_html(ds, runs, "icl.nc", tmp_path / "excess.png", figures)
    assert text.count("<li>") == 2 and "<li>icl (nuts): excess " in text and "stated alpha = (2, 1, 0.5)" in text
    assert "<i>not</i> renormalised" in text and "0.020 bits per step" in text
    [figure] = figures
    image = matplotlib.image.imread(io.BytesIO(figure.png), format="png")
    assert image.ndim == 3 and min(image.shape[:2]) > 100
    with pytest.raises(InputError, match="3 positive numbers") as error:
        excess_html(ds, runs, "icl.nc", tmp_path / "excess.png", [], stated_alpha=(1.0, 1.0))
    assert error.value.field == "stated_alpha" and error.value.file is None
