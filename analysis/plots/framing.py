"""The framing figure: the fitted effective prior mean against the stated value, and Gupta et al.'s total
variation distances by number of observations (:mod:`bayesmatrix.analysis.framing`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot, save
from bayesmatrix.inference.fit import INTERVAL_PROB  # the one interval probability of the project


def framing_figure(analysis, title: str = ""):
    """Left: per framing level, the fitted prior mean of the stated category (posterior mean and
    ``INTERVAL_PROB`` interval) and the LLM's own probability before any observation, against the stated
    probability (the diagonal: the statement taken at its word). Right: the TVD of the LLM's renormalised
    predictive from the stated distribution (dashed) and from the exact Bayesian predictive with the stated
    prior (solid), by number of observations, one colour per level (bands: standard errors over episodes)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    stated = np.asarray(analysis.stated)
    left.plot([0, 1], [0, 1], color="0.7", linestyle=":", label="stated = effective")
    if analysis.prior_mean is not None:
        mean, low, high = analysis.prior_mean.T
        left.errorbar(stated, mean, yerr=[mean - low, high - mean], fmt="o", color="tab:blue", capsize=4,
                      label=f"fitted prior mean ({analysis.run_label}, {INTERVAL_PROB:.0%} interval)")
    at_zero = analysis.llm_stated.mean[:, 0]
    left.errorbar(stated + 0.01, at_zero, yerr=analysis.llm_stated.mcse[:, 0], fmt="s", color="tab:orange",
                  capsize=3, label="LLM before any observation (± se)")
    category = analysis.stated_category.strip()
    left.set_xlabel(f"stated P({category})")
    left.set_ylabel(f"P({category})")
    left.set_xlim(-0.05, 1.05)
    left.set_ylim(-0.05, 1.05)
    left.legend(fontsize=7, loc="lower right")
    left.set_title("Effective prior against the stated value", fontsize=9)

    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(analysis.labels)))
    positions = analysis.tvd_bayes.positions
    for f, (label, colour) in enumerate(zip(analysis.labels, colours)):
        for curve, style, what in ((analysis.tvd_bayes, "-", "Bayes"), (analysis.tvd_stated, "--", "stated")):
            mean, mcse = curve.mean[f], np.nan_to_num(curve.mcse[f])
            right.plot(positions, mean, style, color=colour, label=f"{label}: {what}")
            right.fill_between(positions, mean - mcse, mean + mcse, color=colour, alpha=0.15, linewidth=0)
    right.set_xlabel("number of observations")
    right.set_ylabel("total variation distance")
    right.set_ylim(bottom=0)
    right.set_title(f"TVD from stated (dashed), from Bayes with the stated prior, S = "
                    f"{analysis.reference_strength:g} (solid)", fontsize=9)
    right.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_framing(analysis, path: Path, title: str = "") -> Path:
    """:func:`framing_figure`, saved as a PNG at ``path``."""
    return save(framing_figure(analysis, title), path)
