"""Diagnostics of a run: R-hat, bulk and tail ESS, divergences, E-BFMI (NUTS); ELBO plateau and the guide's Pareto k (SVI).

Thresholds follow Vehtari et al. (2021), "Rank-normalization, folding, and
localization: an improved R-hat" (R-hat < 1.01, ESS > 100 per chain) and
Betancourt (2016), "Diagnosing suboptimal cotangent disintegrations in
Hamiltonian Monte Carlo" (E-BFMI > 0.3).

Draws from an SVI guide are independent by construction, so their R-hat and
ESS say nothing about the fit. What can be checked is whether the optimiser
settled (the ELBO's relative change over its last steps, the plateau rule of
``inference.svi``) and whether the guide covers the posterior: the Pareto k of
the importance weights ``log p(x, z) - log q(z)`` of its draws (PSIS; Yao,
Vehtari, Simpson & Gelman (2018), "Yes, but did it work?: Evaluating
variational inference"): k below ``min(1 - 1/log10(S), 0.7)`` (0.67 at
S = 1,000 draws) is usable, above it the guide misses posterior mass and its
intervals are not to be trusted.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
EBFMI_MIN = 0.3
PARETO_K_MAX = 0.7
"""Pareto k above this is unreliable at any number of draws (fewer draws lower it: :func:`pareto_k_threshold`)."""


def pareto_k_threshold(num_draws: int) -> float:
    """``min(1 - 1/log10(S), 0.7)``: the Pareto k up to which S importance draws are reliable
    (Vehtari et al. 2024, "Pareto smoothed importance sampling")."""
    return float(min(1.0 - 1.0 / np.log10(max(num_draws, 11)), PARETO_K_MAX))


PARETO_K_MIN_DRAWS = 30
"""PSIS fits the largest fifth of the weights, and arviz-stats 1.x's fit needs the first quartile of
that tail above its minimum, so at least 6 of them (0.8 took 5): 30 draws at least, on both."""


TAIL_SPREAD_MAX = 700.0
"""Nats between the largest importance log weight and the start of PSIS's tail past which the tail's
weights, scaled by the largest, underflow float64 (exp(-708) is its smallest normal number)."""


def importance_pareto_k(log_weights: np.ndarray) -> float:
    """Pareto k of the right tail of importance weights, from their logs (one per draw); NaN where
    they are not all finite (a point-mass guide has no density) or fewer than
    :data:`PARETO_K_MIN_DRAWS`; infinite where the tail spans more than :data:`TAIL_SPREAD_MAX`
    nats, so that one draw carries all the weight.

    k grows with the tail's spread (about 40 at 300 nats), but past the float range PSIS's fit sees
    weights of exactly 0: arviz-stats 0.8 then returned k 0.03 ("good") and 1.x NaN.
    """
    from arviz_stats.base import array_stats

    log_weights = np.asarray(log_weights, dtype=float).ravel()
    if log_weights.size < PARETO_K_MIN_DRAWS or not np.isfinite(log_weights).all():
        return float("nan")
    size = log_weights.size  # PSIS's tail at r_eff 1: 3 sqrt(S) draws, a fifth of them at 225 or fewer
    tail = int(np.floor(3 * np.sqrt(size)) if size > 225 else np.floor(size / 5))
    largest = np.sort(log_weights)[::-1]
    if largest[0] - largest[min(tail, size - 1)] > TAIL_SPREAD_MAX:
        return float("inf")
    # arviz_stats' psislw smooths the right tail of the negated array (it is given log-likelihoods
    # and smooths the LOO ratios 1 / p), so importance log weights go in negated.
    _, khat = array_stats.psislw(-log_weights, r_eff=1.0)
    return float(khat)


class Diagnosis(NamedTuple):
    """What :func:`diagnose_datatree` returns."""

    table: Any
    """pandas DataFrame: one row per global parameter (mean, sd, the ``inference.fit.INTERVAL_PROB``
    interval, and for NUTS ess_bulk, ess_tail, r_hat, mcse) and a ``flag`` column naming what fails."""
    method: str
    """'nuts' or 'svi'."""
    num_chains: int
    num_draws: int
    num_divergences: int
    """Divergent transitions after warm-up (0 for SVI)."""
    ebfmi: np.ndarray
    """E-BFMI per chain (empty for SVI)."""
    elbo: np.ndarray
    """The SVI loss (-ELBO) per step (empty for NUTS)."""
    svi_converged: bool | None
    """Whether SVI's ELBO plateaued (None for NUTS)."""
    elbo_relative_change: float
    """SVI: relative change of the mean loss between the last two windows of 500 steps (the
    plateau rule, ``inference.svi.elbo_relative_change``); NaN for NUTS."""
    pareto_k: float
    """SVI: Pareto k of the guide draws' importance weights ``log p(x, z) - log q(z)``; NaN for
    NUTS, a point-mass guide, or a run fitted before the weights were stored."""
    pareto_k_threshold: float
    """The k up to which the importance weights of this many draws are reliable."""
    flags: list[str]
    """One plain sentence per failed check; empty when every check passes."""


def ebfmi(energy: np.ndarray) -> np.ndarray:
    """Energy Bayesian fraction of missing information per chain, from energies (chain, draw)."""
    energy = np.asarray(energy, dtype=float)
    numerator = np.sum(np.diff(energy, axis=1) ** 2, axis=1) / energy.shape[1]
    denominator = np.var(energy, axis=1)
    return numerator / denominator


def diagnose_datatree(datatree, method: str | None = None, svi_converged: bool | None = None) -> Diagnosis:
    """Diagnose a fitted DataTree (from ``fit`` or read back from a run directory)."""
    import arviz_stats as azs

    from bayesmatrix.inference.fit import INTERVAL_PROB, global_sites
    from bayesmatrix.inference.svi import IMPORTANCE_SITE, PLATEAU_TOLERANCE, elbo_relative_change

    method = method or datatree.attrs.get("method", "nuts")
    posterior = datatree["posterior"]
    num_chains, num_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    names = global_sites(datatree)
    with warnings.catch_warnings():
        # R-hat and ESS of a single SVI "chain" of independent draws are well defined
        # but ArviZ warns about one chain; nothing here depends on that warning.
        warnings.simplefilter("ignore", UserWarning)
        # A site that never moves divides by zero in R-hat; its NaN is flagged below instead.
        warnings.simplefilter("ignore", RuntimeWarning)
        table = azs.summary(datatree, var_names=names, round_to="none", ci_prob=INTERVAL_PROB, ci_kind="eti")
    if method == "svi":
        # Independent guide draws: their R-hat and ESS check the sampler of q, not the fit (module docstring).
        table = table.drop(columns=[c for c in ("ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd") if c in table])
    flags: list[str] = []
    row_flags = []
    for label, row in table.iterrows():
        problems = []
        if method == "nuts":
            if not np.isfinite(row["r_hat"]):
                problems.append("r_hat is not finite")
            elif row["r_hat"] > RHAT_MAX:
                problems.append(f"r_hat {row['r_hat']:.3f} > {RHAT_MAX}")
            for ess in ("ess_bulk", "ess_tail"):
                if not row[ess] >= ESS_PER_CHAIN_MIN * num_chains:
                    problems.append(f"{ess} {row[ess]:.0f} < {ESS_PER_CHAIN_MIN * num_chains}")
        if not np.isfinite(row["mean"]):
            problems.append("mean is not finite")
        row_flags.append("; ".join(problems))
        if problems:
            flags.append(f"{label}: " + "; ".join(problems))
    table["flag"] = row_flags

    num_divergences = 0
    chain_ebfmi = np.array([])
    elbo = np.array([])
    relative_change = pareto_k = float("nan")
    threshold = pareto_k_threshold(num_chains * num_draws)
    if method == "nuts" and "sample_stats" in datatree.children:
        stats = datatree["sample_stats"]
        if "diverging" in stats:
            num_divergences = int(np.asarray(stats["diverging"]).sum())
            if num_divergences:
                flags.append(f"{num_divergences} divergent transitions after warm-up")
        if "energy" in stats:
            chain_ebfmi = ebfmi(np.asarray(stats["energy"]))
            for chain, value in enumerate(chain_ebfmi):
                if value < EBFMI_MIN:
                    flags.append(f"chain {chain}: E-BFMI {value:.2f} < {EBFMI_MIN}")
    if method == "svi":
        if "elbo" in datatree.children:
            elbo = np.asarray(datatree["elbo"]["loss"])
            relative_change = elbo_relative_change(elbo)
        if svi_converged is False:
            flags.append("SVI stopped before the ELBO reached a plateau (raise max_steps, the step limit)")
        elif np.isfinite(relative_change) and relative_change > PLATEAU_TOLERANCE:
            flags.append(f"the ELBO still moves: relative change {relative_change:.1e} > {PLATEAU_TOLERANCE:g} "
                         "over its last steps")  # fmt: skip
        if elbo.size and not np.isfinite(elbo[-1]):
            flags.append("SVI loss is not finite")
        if "sample_stats" in datatree.children and IMPORTANCE_SITE in datatree["sample_stats"]:
            pareto_k = importance_pareto_k(np.asarray(datatree["sample_stats"][IMPORTANCE_SITE]))
            if not np.isnan(pareto_k) and pareto_k > threshold:
                flags.append(f"the guide's Pareto k {pareto_k:.2f} > {threshold:.2f}: it misses posterior mass, "
                             "so its intervals are unreliable (try guide mvn, or NUTS)")  # fmt: skip
    return Diagnosis(
        table=table,
        method=method,
        num_chains=num_chains,
        num_draws=num_draws,
        num_divergences=num_divergences,
        ebfmi=chain_ebfmi,
        elbo=elbo,
        svi_converged=svi_converged,
        elbo_relative_change=relative_change,
        pareto_k=pareto_k,
        pareto_k_threshold=threshold,
        flags=flags,
    )


def svi_checks(diagnosis: Diagnosis) -> list[str]:
    """The SVI run's checks in words: the ELBO plateau and the guide's Pareto k (empty for NUTS)."""
    from bayesmatrix.inference.svi import PLATEAU_TOLERANCE, PLATEAU_WINDOW

    if diagnosis.method != "svi":
        return []
    lines = []
    if diagnosis.elbo.size:
        change = diagnosis.elbo_relative_change
        lines.append(
            f"ELBO: {len(diagnosis.elbo)} steps, loss {diagnosis.elbo[0]:.4g} -> {diagnosis.elbo[-1]:.4g}; relative change "
            f"between the last two {PLATEAU_WINDOW}-step means {change:.1e} (plateau: below {PLATEAU_TOLERANCE:g}); "
            f"plateau reached: {'yes' if diagnosis.svi_converged is not False and change <= PLATEAU_TOLERANCE else 'no'}"
        )
    if not np.isnan(diagnosis.pareto_k):
        k, threshold = diagnosis.pareto_k, diagnosis.pareto_k_threshold
        verdict = "good" if k < 0.5 else "usable" if k <= threshold else "unreliable"
        lines.append(f"guide Pareto k (PSIS of log p(x, z) - log q(z) over {diagnosis.num_draws} draws): {k:.2f} "
                     f"({verdict}; below 0.5 good, up to {threshold:.2f} usable)")  # fmt: skip
    else:
        lines.append(f"guide Pareto k: not available (a point-mass guide has no density, fewer than "
                     f"{PARETO_K_MIN_DRAWS} draws, or the run predates it)")
    lines.append("intervals from a variational guide are approximate")
    return lines


def diagnose(run_dir) -> Diagnosis:
    """Diagnose a run directory."""
    from bayesmatrix.inference.rundir import read_run

    run = read_run(run_dir)
    return diagnose_datatree(run.datatree, run.info.get("method"), run.info.get("converged"))


def format_diagnosis(diagnosis: Diagnosis, title: str = "", max_entries: int = 12) -> str:
    """A plain-text report of a diagnosis, for the terminal: sites of more than ``max_entries``
    entries (an embedding's loadings) fold into one line each (:func:`folded_table`)."""
    import pandas as pd

    from bayesmatrix.inference.fit import INTERVAL_COLUMNS, INTERVAL_LABEL

    lines = []
    if title:
        lines.append(title)
    if diagnosis.method == "nuts":
        lines.append(f"NUTS: {diagnosis.num_chains} chains x {diagnosis.num_draws} draws")
        lines.append(f"divergences: {diagnosis.num_divergences}")
        if diagnosis.ebfmi.size:
            lines.append("E-BFMI per chain: " + ", ".join(f"{v:.2f}" for v in diagnosis.ebfmi))
    else:
        lines.append(f"SVI: {diagnosis.num_draws} draws from the fitted guide (no R-hat or ESS: the draws are independent)")
        lines.extend(svi_checks(diagnosis))
    lines.append(f"intervals: {INTERVAL_LABEL}")
    columns = [c for c in ("mean", "sd", *INTERVAL_COLUMNS, "ess_bulk", "ess_tail", "r_hat", "flag") if c in diagnosis.table]
    table, folded = folded_table(diagnosis.table[columns], max_entries)
    with pd.option_context("display.width", 160, "display.max_rows", None, "display.max_columns", 20):
        lines.append(table.to_string(float_format=lambda v: f"{v:.4g}", na_rep=""))
    if folded:
        lines.append(f"({', '.join(folded)}: one line each, the worst R-hat and least ESS of their entries; "
                     "every entry is in the run's summary.csv)")  # fmt: skip
    if diagnosis.flags:
        lines.append("FAILED CHECKS:")
        lines.extend(f"  - {flag}" for flag in folded_flags(diagnosis.flags, max_entries))
    else:
        lines.append("all checks passed")
    return "\n".join(lines)


def _site_of(label: str) -> str:
    return str(label).split("[", 1)[0]


def folded_table(table, max_entries: int = 12):
    """The summary with each site of more than ``max_entries`` entries folded into one row.

    A folded row holds the site's shape in its label, the largest R-hat, the
    smallest bulk and tail ESS and how many entries are flagged; the other
    columns are left empty (a mean of 2,000 loadings says nothing). Returns
    ``(table, names of the folded sites)``.
    """
    import pandas as pd

    sites = [_site_of(label) for label in table.index]
    sizes = pd.Series(sites).value_counts()
    rows, labels, folded = [], [], []
    for site in dict.fromkeys(sites):
        part = table[[name == site for name in sites]]
        if sizes[site] <= max_entries:
            rows.extend(row for _, row in part.iterrows())
            labels.extend(part.index)
            continue
        folded.append(site)
        summary = pd.Series(np.nan, index=table.columns, dtype=object)
        for column, worst in (("ess_bulk", "min"), ("ess_tail", "min"), ("r_hat", "max")):
            if column in part:
                summary[column] = getattr(part[column].astype(float), worst)()
        if "flag" in part:
            flagged = int((part["flag"].astype(str) != "").sum())
            summary["flag"] = f"{flagged} of {len(part)} flagged" if flagged else ""
        rows.append(summary)
        labels.append(f"{site} ({len(part)} entries)")
    return pd.DataFrame(rows, index=labels, columns=table.columns), folded


def folded_flags(flags: list[str], max_entries: int = 12) -> list[str]:
    """Failed checks, those of a site with more than ``max_entries`` failing entries as one line."""
    by_site: dict[str, list[str]] = {}
    for flag in flags:
        by_site.setdefault(_site_of(flag.split(":", 1)[0]) if "[" in flag.split(":", 1)[0] else flag, []).append(flag)
    lines = []
    for site, site_flags in by_site.items():
        if len(site_flags) > max_entries:
            lines.append(f"{site}: {len(site_flags)} entries fail their checks (first: {site_flags[0]})")
        else:
            lines.extend(site_flags)
    return lines
