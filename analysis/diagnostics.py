"""Convergence diagnostics of a run: R-hat, bulk and tail ESS, divergences, E-BFMI; the ELBO trace for SVI.

Thresholds follow Vehtari et al. (2021), "Rank-normalization, folding, and
localization: an improved R-hat" (R-hat < 1.01, ESS > 100 per chain) and
Betancourt (2016), "Diagnosing suboptimal cotangent disintegrations in
Hamiltonian Monte Carlo" (E-BFMI > 0.3).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
EBFMI_MIN = 0.3


class Diagnosis(NamedTuple):
    """What :func:`diagnose_datatree` returns."""

    table: Any
    """pandas DataFrame: one row per global parameter (mean, sd, 94% interval, ess_bulk,
    ess_tail, r_hat, mcse) and a ``flag`` column naming what fails."""
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

    from bayesmatrix.inference.fit import global_sites

    method = method or datatree.attrs.get("method", "nuts")
    posterior = datatree["posterior"]
    num_chains, num_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    names = global_sites(datatree)
    with warnings.catch_warnings():
        # R-hat and ESS of a single SVI "chain" of independent draws are well defined
        # but ArviZ warns about one chain; nothing here depends on that warning.
        warnings.simplefilter("ignore", UserWarning)
        table = azs.summary(datatree, var_names=names, round_to="none", ci_prob=0.94)
    flags: list[str] = []
    row_flags = []
    for label, row in table.iterrows():
        problems = []
        if method == "nuts":
            if np.isfinite(row["r_hat"]) and row["r_hat"] > RHAT_MAX:
                problems.append(f"r_hat {row['r_hat']:.3f} > {RHAT_MAX}")
            for ess in ("ess_bulk", "ess_tail"):
                if row[ess] < ESS_PER_CHAIN_MIN * num_chains:
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
        if svi_converged is False:
            flags.append("SVI stopped before the ELBO reached a plateau (raise max_steps, the step limit)")
        if elbo.size and not np.isfinite(elbo[-1]):
            flags.append("SVI loss is not finite")
    return Diagnosis(
        table=table,
        method=method,
        num_chains=num_chains,
        num_draws=num_draws,
        num_divergences=num_divergences,
        ebfmi=chain_ebfmi,
        elbo=elbo,
        svi_converged=svi_converged,
        flags=flags,
    )


def diagnose(run_dir) -> Diagnosis:
    """Diagnose a run directory."""
    from bayesmatrix.inference.rundir import read_run

    run = read_run(run_dir)
    return diagnose_datatree(run.datatree, run.info.get("method"), run.info.get("converged"))


def format_diagnosis(diagnosis: Diagnosis, title: str = "") -> str:
    """A plain-text report of a diagnosis, for the terminal."""
    import pandas as pd

    lines = []
    if title:
        lines.append(title)
    if diagnosis.method == "nuts":
        lines.append(f"NUTS: {diagnosis.num_chains} chains x {diagnosis.num_draws} draws")
        lines.append(f"divergences: {diagnosis.num_divergences}")
        if diagnosis.ebfmi.size:
            lines.append("E-BFMI per chain: " + ", ".join(f"{v:.2f}" for v in diagnosis.ebfmi))
    else:
        lines.append(f"SVI: {diagnosis.num_draws} draws from the fitted guide")
        if diagnosis.elbo.size:
            tail = diagnosis.elbo[-min(len(diagnosis.elbo), 500) :]
            lines.append(
                f"ELBO: {len(diagnosis.elbo)} steps, first loss {diagnosis.elbo[0]:.4g}, "
                f"last-500 mean loss {np.mean(tail):.4g}, plateau: {diagnosis.svi_converged}"
            )
    columns = [c for c in ("mean", "sd", "eti94_lb", "eti94_ub", "ess_bulk", "ess_tail", "r_hat", "flag") if c in diagnosis.table]
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.max_columns", 20):
        lines.append(diagnosis.table[columns].to_string(float_format=lambda v: f"{v:.4g}"))
    if diagnosis.flags:
        lines.append("FAILED CHECKS:")
        lines.extend(f"  - {flag}" for flag in diagnosis.flags)
    else:
        lines.append("all checks passed")
    return "\n".join(lines)
