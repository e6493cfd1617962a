"""Figures: ArviZ diagnostics of a run, and the pictures a reader of the paper expects.

Every function draws with matplotlib's Agg backend (no display needed) and
saves PNG files; each returns the paths it wrote. By topic:

- :mod:`.runs`: the standard figures of a run directory (trace, rank, ELBO, posterior);
- :mod:`.icl`: the instrumented LLM, its predictive against the fitted updaters, KL and entropy by position;
- :mod:`.checks`: posterior predictive, LOO comparison, Bayesian consistency, the Dirichlet-mixture approximation;
- :mod:`.embedding`: the embedding study's continuity plot;
- :mod:`.backend`: matplotlib on the Agg backend, imported on first use.

Every figure is importable from here too (``from bayesmatrix.analysis.plots import run_figures``).
"""

from bayesmatrix.analysis.plots.checks import (
    plot_approximation,
    plot_consistency,
    plot_loo_compare,
    plot_posterior_predictive,
)
from bayesmatrix.analysis.plots.embedding import plot_continuity
from bayesmatrix.analysis.plots.icl import INTERVAL_PROB, plot_fitted_predictive, plot_instrumented, plot_kl_entropy
from bayesmatrix.analysis.plots.runs import global_site_names, plot_elbo, run_figures

__all__ = [
    "INTERVAL_PROB",
    "global_site_names",
    "plot_approximation",
    "plot_consistency",
    "plot_continuity",
    "plot_elbo",
    "plot_fitted_predictive",
    "plot_instrumented",
    "plot_kl_entropy",
    "plot_loo_compare",
    "plot_posterior_predictive",
    "run_figures",
]
