"""Figures: ArviZ diagnostics of a run, and the pictures a reader of the paper expects.

Every function draws with matplotlib's Agg backend (no display needed). A
``*_figure`` function returns the matplotlib figure (to inspect or restyle);
its ``plot_*`` twin saves it as a PNG and returns the path. By topic:

- :mod:`.runs`: the standard figures of a run directory (trace, rank, ELBO, posterior);
- :mod:`.icl`: the instrumented LLM, its predictive against the fitted updaters, KL and entropy by position,
  excess code length by step;
- :mod:`.checks`: posterior predictive, LOO comparison, Bayesian consistency, the Dirichlet-mixture approximation;
- :mod:`.embedding`: the embedding study's continuity plot;
- :mod:`.framing`: the effective prior against the stated value, and TVD by number of observations;
- :mod:`.labels`: labels that read for word categories as well as letters;
- :mod:`.backend`: matplotlib on the Agg backend, imported on first use.

Every figure is importable from here too (``from bayesmatrix.analysis.plots import run_figures``).
"""

from bayesmatrix.analysis.plots.checks import (
    approximation_figure,
    consistency_figure,
    plot_approximation,
    plot_consistency,
    plot_loo_compare,
    plot_posterior_predictive,
    posterior_predictive_figure,
)
from bayesmatrix.analysis.plots.embedding import plot_continuity
from bayesmatrix.analysis.plots.framing import framing_figure, plot_framing
from bayesmatrix.analysis.plots.icl import (
    INTERVAL_PROB,
    excess_figure,
    fitted_predictive_figure,
    instrumented_figure,
    kl_entropy_figure,
    plot_excess,
    plot_fitted_predictive,
    plot_instrumented,
    plot_kl_entropy,
)
from bayesmatrix.analysis.plots.runs import (
    elbo_figure,
    global_site_names,
    plot_elbo,
    posterior_figure,
    rank_figure,
    run_figures,
    trace_figure,
)

__all__ = [
    "INTERVAL_PROB",
    "approximation_figure",
    "consistency_figure",
    "elbo_figure",
    "excess_figure",
    "fitted_predictive_figure",
    "framing_figure",
    "global_site_names",
    "instrumented_figure",
    "kl_entropy_figure",
    "plot_approximation",
    "plot_consistency",
    "plot_continuity",
    "plot_elbo",
    "plot_excess",
    "plot_fitted_predictive",
    "plot_framing",
    "plot_instrumented",
    "plot_kl_entropy",
    "plot_loo_compare",
    "plot_posterior_predictive",
    "posterior_figure",
    "posterior_predictive_figure",
    "rank_figure",
    "run_figures",
    "trace_figure",
]
