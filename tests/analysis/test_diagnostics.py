"""What diagnose prints: global sites in full, large arrays folded to one line with their worst checks."""

import numpy as np

from bayesmatrix.analysis.diagnostics import diagnose_datatree, folded_flags, format_diagnosis


def embedding_like_tree(stuck_entries=0):
    import arviz_base as azb

    rng = np.random.default_rng(0)
    U = rng.normal(size=(2, 200, 30, 4))
    U[1, :, :stuck_entries // 4 + (stuck_entries % 4 > 0), :] += 5.0  # chain 1 elsewhere: R-hat far above 1.01
    return azb.from_dict(
        {
            "posterior": {"s": rng.gamma(3.0, size=(2, 200)), "U": U},
            "sample_stats": {"diverging": np.zeros((2, 200), bool), "energy": rng.normal(size=(2, 200))},
        },
        dims={"U": ["col", "rank"]},
    )


def test_a_large_site_is_one_line_with_its_worst_r_hat():
    tree = embedding_like_tree(stuck_entries=40)
    diagnosis = diagnose_datatree(tree, "nuts")
    text = format_diagnosis(diagnosis)
    assert len(text.splitlines()) < 30, text
    folded = [line for line in text.splitlines() if line.startswith("U (120 entries)")]
    assert len(folded) == 1
    entries = diagnosis.table.loc[[label.startswith("U[") for label in diagnosis.table.index]]
    flagged = int((entries["flag"] != "").sum())
    assert flagged >= 40  # the 40 stuck entries, and any that fail by chance
    assert f"{entries['r_hat'].max():.4g}" in folded[0] and f"{flagged} of 120 flagged" in folded[0]
    assert any(line.startswith("s ") for line in text.splitlines())  # the global site in full
    assert f"U: {flagged} entries fail their checks" in text


def test_small_sites_and_few_flags_stay_in_full():
    flags = ["m[a]: r_hat 1.05 > 1.01", "m[b]: r_hat 1.02 > 1.01", "12 divergent transitions after warm-up"]
    assert folded_flags(flags) == flags


def test_guide_pareto_k_finds_a_heavy_tail_and_needs_enough_draws():
    from bayesmatrix.analysis.diagnostics import PARETO_K_MIN_DRAWS, importance_pareto_k

    rng = np.random.default_rng(0)
    # weights of a guide that matches: log weights all but constant, light tail
    assert importance_pareto_k(0.01 * rng.normal(size=2000)) < 0.5
    # weights w = U^(-1/a) have a Pareto tail of shape a, so k = 1/a
    heavy = -np.log(rng.uniform(size=4000)) / 0.8
    assert abs(importance_pareto_k(heavy) - 1 / 0.8) < 0.2
    # too few draws for the tail fit (or a weight that is not finite) is no number, not an error
    assert np.isnan(importance_pareto_k(rng.normal(size=PARETO_K_MIN_DRAWS - 1)))
    assert np.isfinite(importance_pareto_k(rng.normal(size=PARETO_K_MIN_DRAWS)))
    assert np.isnan(importance_pareto_k(np.array([0.0, np.inf] * 20)))


def test_guide_pareto_k_of_a_tail_wider_than_floats_is_infinite_not_good():
    """k grows with the spread of the log weights; past float64's range the scaled tail weights are 0
    and PSIS's fit saw no tail (k 0.03 on arviz-stats 0.8, NaN on 1.x): one draw carries all the weight."""
    import arviz_base as azb

    from bayesmatrix.analysis.diagnostics import importance_pareto_k
    from bayesmatrix.inference.svi import IMPORTANCE_SITE

    log_weights = -0.5 * np.log(np.random.default_rng(0).uniform(size=2000))
    ks = [importance_pareto_k(scale * log_weights) for scale in (1, 10, 100, 200)]
    assert ks == sorted(ks) and ks[-1] > 50
    assert importance_pareto_k(300 * log_weights) == np.inf
    tree = azb.from_dict({"posterior": {"p": np.full((1, 2000), 0.5)},
                         "sample_stats": {IMPORTANCE_SITE: (300 * log_weights)[None, :]}})  # fmt: skip
    diagnosis = diagnose_datatree(tree, "svi", True)
    assert any("Pareto k inf" in flag for flag in diagnosis.flags)
    assert "guide Pareto k (PSIS" in format_diagnosis(diagnosis) and "unreliable" in format_diagnosis(diagnosis)
