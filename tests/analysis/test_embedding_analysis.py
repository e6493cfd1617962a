"""Embedding analysis (analysis/embedding/): JS in bits, Lipschitz bounds, baselines and the study, against hand
computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import digamma, softmax
from scipy.stats import dirichlet

from bayesmatrix.analysis.embedding.measures import (
    EPSILON,
    SPLIT_FRACTIONS,
    choose_rank,
    compression_ratio,
    dirichlet_log_density,
    fit_concentration,
    fit_dirichlet,
    js_bits,
    lipschitz_ratios,
    lipschitz_summary,
    map_lipschitz_bound,
    map_subspace_angles,
    nearest_pairs,
    neighbour_baseline,
    neighbour_means,
    principal_angles,
    random_pairs,
    split_rows,
)
from bayesmatrix.analysis.embedding.study import embedding_study, prepare_rows, shrink_log
from bayesmatrix.data.closed_forms import clip_simplex
from bayesmatrix.data.llmlog import OTHER, make_log


def test_js_bits_by_hand():
    assert js_bits([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)  # disjoint supports: exactly one bit
    assert js_bits([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
    # p = (1/2, 1/2), q = (1, 0): a = (3/4, 1/4);
    # KL(p||a) = 1/2 log2(2/3) + 1/2 log2(2), KL(q||a) = log2(4/3).
    by_hand = 0.5 * (0.5 * math.log2(2 / 3) + 0.5 * 1.0) + 0.5 * math.log2(4 / 3)
    assert js_bits([0.5, 0.5], [1.0, 0.0]) == pytest.approx(by_hand)
    assert js_bits([1.0, 0.0], [0.5, 0.5]) == pytest.approx(by_hand)  # symmetric
    rows = np.array([[0.2, 0.8], [0.9, 0.1]])
    np.testing.assert_allclose(js_bits(rows, rows[::-1]), [js_bits(rows[0], rows[1])] * 2)


def test_lipschitz_quantiles_by_hand():
    distance = np.array([0.0, 1.0, 2.0, 4.0, 5.0])
    js = np.array([0.3, 0.1, 0.4, 0.4, 1.0])
    ratios = lipschitz_ratios(js, distance)
    np.testing.assert_allclose(ratios, [0.1, 0.2, 0.1, 0.2])  # the pair at distance 0 is dropped
    summary = lipschitz_summary(np.arange(1.0, 101.0), quantiles=(0.5, 0.99))
    # numpy's linear interpolation: position q (n - 1) in the sorted values 1..100
    assert summary == {"q50": pytest.approx(50.5), "q99": pytest.approx(99.01), "max": 100.0}


def test_map_lipschitz_bound_by_hand_and_it_holds():
    W = np.array([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])
    # The largest distance between two rows of W is |(3, -4)| = 5.
    assert map_lipschitz_bound(W) == pytest.approx(5.0 / (4 * math.log(2)))
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 3))
    b = rng.normal(size=6)
    bound = map_lipschitz_bound(W)
    e1, e2 = rng.normal(size=(2, 500, 3))
    js = js_bits(softmax(b + e1 @ W.T, axis=1), softmax(b + e2 @ W.T, axis=1))
    ratio = js / np.linalg.norm(e1 - e2, axis=1)
    assert ratio.max() <= bound
    assert ratio.max() > 0.05 * bound  # and the bound is not vacuous


def test_dirichlet_log_density_matches_scipy():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1.0, 2.0, 3.0], size=4)
    alpha = np.array([0.5, 2.0, 4.0])
    np.testing.assert_allclose(dirichlet_log_density(probs, alpha), [dirichlet.logpdf(p, alpha) for p in probs])


def test_fit_dirichlet_solves_the_likelihood_equations():
    rng = np.random.default_rng(2)
    alpha_true = np.array([2.0, 5.0, 3.0])
    probs = clip_simplex(rng.dirichlet(alpha_true, size=4000), EPSILON)
    alpha = fit_dirichlet(probs)
    # The maximum-likelihood equations: digamma(alpha_c) - digamma(sum alpha) = mean_r log p_rc.
    np.testing.assert_allclose(digamma(alpha) - digamma(alpha.sum()), np.log(probs).mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(alpha, alpha_true, rtol=0.1)


def test_fit_concentration_maximises():
    rng = np.random.default_rng(3)
    means = rng.dirichlet(np.ones(4), size=300)
    probs = clip_simplex(np.stack([rng.dirichlet(40.0 * m) for m in means]), EPSILON)
    s = fit_concentration(probs, means)

    def total(value):
        return dirichlet_log_density(probs, value * means).sum()

    assert total(s) >= max(total(0.99 * s), total(1.01 * s))
    assert 30 < s < 50


def test_neighbour_means_by_hand():
    train = np.array([[0.0], [1.0], [10.0]])
    train_probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(neighbour_means(train, train_probs, np.array([[0.2]]), k=2), [[0.5, 0.5]])
    np.testing.assert_allclose(neighbour_means(train, train_probs, np.array([[9.0]]), k=1), [[0.5, 0.5]])
    # Leaving each row out: row 0's nearest other row is row 1, row 2's is row 1.
    loo = neighbour_means(train, train_probs, train, k=1, leave_one_out=True)
    np.testing.assert_allclose(loo, train_probs[[1, 0, 1]])


def test_principal_angles_by_hand():
    x, y = np.array([[1.0], [0.0], [0.0]]), np.array([[0.0], [1.0], [0.0]])
    diagonal = np.array([[1.0], [1.0], [0.0]])
    assert principal_angles(x, x) == pytest.approx([0.0], abs=1e-6)
    assert principal_angles(x, y) == pytest.approx([90.0])
    assert principal_angles(x, diagonal) == pytest.approx([45.0])
    rng = np.random.default_rng(4)
    W = rng.normal(size=(6, 2)) @ rng.normal(size=(2, 5))
    A = rng.normal(size=(6, 6))
    column_angles, embedding_angles = map_subspace_angles(W, 3.0 * W, rank=2)
    assert column_angles.max() < 1e-5 and embedding_angles.max() < 1e-5
    column_angles, _ = map_subspace_angles(W, A @ W, rank=2)
    assert column_angles.max() > 1.0


def test_choose_rank_prefers_the_smaller_rank_within_one_standard_error():
    rng = np.random.default_rng(5)
    base = rng.normal(size=200)
    noise = rng.normal(size=200)
    density = {1: base - 1.0, 2: base, 4: base + 0.01 * noise}  # rank 4 is no better than noise
    assert choose_rank(density) == 2
    density[4] = base + 0.5  # now it is
    assert choose_rank(density) == 4


def test_compression_ratio_split_and_pairs():
    # 1000 rows x 50 columns over 50*4 + 64*4 + 50 + 1 parameters
    assert compression_ratio(1000, 50, 64, 4) == pytest.approx(50000 / 507)
    train, validation, test = split_rows(100, (0.7, 0.15, 0.15), seed=1)
    assert (len(train), len(validation), len(test)) == (70, 15, 15)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation, test])), np.arange(100))
    np.testing.assert_array_equal(split_rows(100, seed=1)[0], train)  # fixed by the seed
    pairs = random_pairs(10, 1000, seed=2)
    assert (pairs[:, 0] != pairs[:, 1]).all() and pairs.min() >= 0 and pairs.max() < 10
    nearest = nearest_pairs(np.array([[0.0], [1.0], [5.0], [5.5]]))
    np.testing.assert_array_equal(nearest, [[0, 1], [1, 0], [2, 3], [3, 2]])


def test_prepare_rows_folds_columns_into_other():
    probs = np.array([[0.5, 0.1, 0.3, 0.1], [0.1, 0.6, 0.1, 0.2], [0.2, 0.2, 0.2, 0.4]])
    ds = make_log(probs, ["a", "b", "c", OTHER], model="test")
    folded, labels = prepare_rows(ds, 2, train_rows=np.array([0, 1]))
    assert labels == ["b", "a", OTHER]  # by mean over rows 0, 1: b 0.35, a 0.3, c 0.2
    np.testing.assert_allclose(folded, [[0.1, 0.5, 0.4], [0.6, 0.1, 0.3], [0.2, 0.2, 0.6]])
    dropped, labels = prepare_rows(ds, None, train_rows=np.array([0, 1]))
    assert labels == ["a", "b", "c"]
    np.testing.assert_allclose(dropped[0], np.array([0.5, 0.1, 0.3]) / 0.9)


def test_shrunk_log_gives_the_study_the_same_rows():
    rng = np.random.default_rng(6)
    probs = rng.dirichlet(np.ones(6), size=40)
    ds = make_log(probs, ["a", "b", "c", "d", "e", OTHER], [5, 6, 7, 8, 9, -1], model="test",
                  embedding=rng.normal(size=(40, 3)), prompt=[f"p{i}" for i in range(40)])
    shrunk = shrink_log(ds, 3, seed=2)
    assert shrunk.sizes["col"] == 4 and shrunk.attrs["shrunk_from_columns"] == 6
    train = split_rows(40, SPLIT_FRACTIONS, seed=2)[0]
    full_rows, full_labels = prepare_rows(ds, 3, train)
    shrunk_rows, shrunk_labels = prepare_rows(shrunk, 3, train)
    assert shrunk_labels == full_labels
    np.testing.assert_allclose(shrunk_rows, full_rows)
    token_of = dict(zip(["a", "b", "c", "d", "e", OTHER], [5, 6, 7, 8, 9, -1]))
    assert list(shrunk["col_token_id"].values) == [token_of[c] for c in full_labels]
    np.testing.assert_array_equal(shrunk["embedding"].values, ds["embedding"].values)
    # shrunk again: still the first log's width, and the new seed
    again = shrink_log(shrunk, 2, seed=3)
    assert again.sizes["col"] == 3 and again.attrs["shrunk_from_columns"] == 6 and again.attrs["shrunk_split_seed"] == 3


def test_the_command_line_names_its_flags(tmp_path, capsys):
    from bayesmatrix.cli import main

    rng = np.random.default_rng(9)
    log = tmp_path / "log.nc"
    from bayesmatrix.data.llmlog import write_log

    write_log(make_log(rng.dirichlet(np.ones(4), size=30), ["a", "b", "c", OTHER], model="test",
                       embedding=rng.normal(size=(30, 3))), log)
    assert main(["embedding", str(log), "--out", str(tmp_path / "s"), "--ranks", "1,x"]) == 2
    assert "--ranks" in capsys.readouterr().err
    assert main(["embedding", str(log), "--shrink", str(tmp_path / "small.nc"), "--columns", "0"]) == 2
    assert "--columns" in capsys.readouterr().err and not (tmp_path / "small.nc").exists()
    assert main(["embedding", str(log), "--shrink", str(tmp_path / "small.nc"), "--columns", "2"]) == 0
    assert "2 columns" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:  # exactly one of the study's folder and the shrunk log
        main(["embedding", str(log)])
    assert stopped.value.code == 2
    from bayesmatrix.analysis.embedding.study import RANKS
    from bayesmatrix.cli import build_parser

    assert build_parser().parse_args(["embedding", str(log), "--out", "x"]).ranks == ",".join(map(str, RANKS))


def test_study_needs_embeddings():
    from bayesmatrix.data.errors import InputError

    ds = make_log(np.full((30, 3), 1 / 3), ["a", "b", OTHER], model="test")
    with pytest.raises(InputError, match="embedding"):
        embedding_study(ds)


@pytest.mark.long  # the embedding study end to end at seven ranks: make test-long
def test_study_on_simulated_rows_beats_the_baselines(tmp_path):
    """On rows simulated from the model, the embedding model wins the held-out table and the files are written."""
    from bayesmatrix.cli import main
    from bayesmatrix.data.llmlog import write_log
    from bayesmatrix.inference.simulate import simulate_embedding

    log = tmp_path / "sim.nc"
    write_log(simulate_embedding(rows=300, cols=8, embed_dim=6, rank=2, seed=3), log)
    out = tmp_path / "study"
    status = main(["embedding", str(log), "--out", str(out), "--ranks", "1,2", "--columns", "0", "--features", "6",
                   "--pairs", "500", "--num-samples", "50", "--max-steps", "3000", "--learning-rate", "0.03",
                   "--quiet"])
    assert status == 0
    for name in ("heldout.csv", "ranks.csv", "continuity.csv", "pairs.csv", "summary.json", "continuity.png"):
        assert (out / name).stat().st_size > 0
    import pandas as pd

    heldout = pd.read_csv(out / "heldout.csv")
    assert heldout["log_density_per_row"].iloc[0] > heldout["log_density_per_row"].iloc[1:].max()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chosen_rank"] == 2
    assert summary["split"] == {"train": 210, "validation": 45, "test": 45, "seed": 0}


def test_geometric_neighbour_mean_and_the_baseline_fit():
    train = np.array([[0.0], [1.0], [10.0]])
    train_probs = np.array([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]])
    geometric = neighbour_means(train, train_probs, np.array([[0.4]]), k=2, average="geometric")
    # sqrt(0.8 * 0.2) in both columns, renormalised: (1/2, 1/2)
    np.testing.assert_allclose(geometric, [[0.5, 0.5]])
    three = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])
    by_hand = np.array([0.9 * 0.5 * 0.1, 0.1 * 0.5 * 0.9]) ** (1 / 3)
    np.testing.assert_allclose(neighbour_means(train, three, np.array([[0.0]]), k=3, average="geometric"),
                               [by_hand / by_hand.sum()])
    # Two well-separated clusters: one neighbour is right, many neighbours mix the clusters.
    rng = np.random.default_rng(7)
    features = np.concatenate([rng.normal(0, 0.1, (40, 2)), rng.normal(5, 0.1, (40, 2))])
    means = np.repeat([[0.9, 0.1], [0.1, 0.9]], 40, axis=0)
    probs = clip_simplex(np.stack([rng.dirichlet(50 * m) for m in means]), EPSILON)
    fitted = neighbour_baseline(features[::2], probs[::2], features[1::2], probs[1::2], neighbours=(1, 4, 39))
    assert fitted.k in (1, 4) and set(fitted.scores) == {1, 4, 39}
    assert fitted.scores[39] < fitted.scores[fitted.k] and fitted.s > 10


def test_shipped_corpus_is_the_deterministic_build():
    import sys

    from bayesmatrix.data.corpus import SHIPPED_CORPUS, build_corpus, corpus_jsonl, read_corpus

    records = read_corpus(SHIPPED_CORPUS)
    assert len(records) >= 2000 and len({r.prompt for r in records}) == len(records)
    assert {r.source for r in records} == {"doc", "fact"}
    assert all(r.prompt == r.prompt.strip() and "\n" not in r.prompt for r in records)
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the shipped corpus was built from CPython 3.11's docstrings")
    assert corpus_jsonl(build_corpus()) == SHIPPED_CORPUS.read_text()


def test_corpus_command_writes_the_build(tmp_path, capsys):
    from bayesmatrix.cli import main
    from bayesmatrix.data.corpus import FACT_TEMPLATES, build_corpus, corpus_jsonl, read_corpus

    out = tmp_path / "prompts.jsonl"
    assert main(["corpus", "--out", str(out), "--doc-prompts", "5", "--seed", "3"]) == 0
    facts = sum(len(fillers) for _, _, fillers in FACT_TEMPLATES)
    assert f"{out}: {facts + 5} prompts ({facts} templated facts, 5 documentation prefixes)" in capsys.readouterr().out
    assert [r.source for r in read_corpus(out)].count("doc") == 5
    assert out.read_text() == corpus_jsonl(build_corpus(seed=3, doc_prompts=5))
