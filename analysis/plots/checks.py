"""The pictures of the checks: posterior predictive, LOO comparison, Bayesian consistency and the
Dirichlet-mixture approximation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot, save


def posterior_predictive_figure(datatree, num_samples: int = 50):
    """ArviZ's posterior predictive check: each column's reported probability pooled over rows.

    ``datatree`` is :func:`analysis.predictive.posterior_predictive_datatree`'s
    (one variable per column); at most six columns are drawn, with at most
    ``num_samples`` predictive draws (fewer when the run has fewer).
    """
    import arviz_plots as azp
    from matplotlib.lines import Line2D

    from bayesmatrix.analysis.plots.labels import OneLineLabeller, readable

    names = list(datatree["posterior_predictive"].data_vars)
    predictive = datatree["posterior_predictive"]
    num_samples = min(num_samples, int(predictive.sizes.get("chain", 1) * predictive.sizes.get("draw", 1)))
    with warnings.catch_warnings():
        # arviz-plots 0.8 drops one level of its stacked sample index, which xarray deprecates.
        warnings.filterwarnings("ignore", message="Deleting a single level of a MultiIndex", category=FutureWarning)
        collection = azp.plot_ppc_dist(
            datatree,
            var_names=names[:1] if len(names) == 2 else names[:6],  # of two columns, one mirrors the other
            num_samples=num_samples,
            backend="matplotlib",
            labeller=OneLineLabeller(),
            figure_kwargs={"layout": "constrained"},
        )
    figure = collection.viz["figure"].item()
    for ax in figure.axes:  # arviz-plots 0.8 does not hand the labeller on to the titles: p( north) as p(north)
        ax.title.set_text(readable(ax.title.get_text()))
    figure.legend([Line2D([], [], color="black"), Line2D([], [], color="tab:blue", alpha=0.5)],
                  ["observed (the LLM's rows)", f"posterior predictive ({num_samples} draws)"],
                  loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    return figure


def plot_posterior_predictive(datatree, path: Path, num_samples: int = 50) -> Path:
    """:func:`posterior_predictive_figure` saved as a PNG at ``path``."""
    return save(posterior_predictive_figure(datatree, num_samples), path, dpi=80)


def plot_loo_compare(table, path: Path) -> Path:
    """ArviZ's LOO comparison plot (elpd with standard errors, best model as reference)."""
    import arviz_plots as azp

    plt = pyplot()
    collection = azp.plot_compare(table, backend="matplotlib", figure_kwargs={"figsize": (7, 0.6 * len(table) + 1.5)})
    collection.savefig(path, dpi=90, bbox_inches="tight")  # long run names as tick labels
    plt.close("all")
    return Path(path)


def consistency_figure(results):
    """Exchangeability and martingale checks of several models side by side.

    ``results`` are :class:`analysis.consistency.ConsistencyResult`. Left: the
    largest total variation between orders of each multiset (0 for exact
    Bayes), with the mean and its standard error in black. Right: the
    martingale gap by position with its standard error. Long model names
    wrap onto several lines rather than run into each other.
    """
    import textwrap

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    rng = np.random.default_rng(0)
    for index, result in enumerate(results):
        spread = result.exchangeability.max_tv
        left.scatter(index + rng.uniform(-0.15, 0.15, spread.size), spread, s=12, alpha=0.6)
        left.errorbar(index + 0.3, result.exchangeability.mean_max_tv, yerr=result.exchangeability.mcse_max_tv,
                      fmt="ks", ms=5, capsize=3)
        gap = result.martingale
        positions = np.arange(gap.gap.shape[1])
        right.errorbar(positions, gap.gap_by_position, yerr=gap.mcse_by_position, fmt="o-", ms=3, capsize=2,
                       label=result.name)
    width = max(12, int(60 / max(len(results), 1)))  # characters a name's line may take under its column
    left.set_xticks(range(len(results)), [textwrap.fill(result.name, width) for result in results], fontsize=8)
    left.set_ylabel("max TV between orders")
    left.set_ylim(bottom=0)
    left.set_title("exchangeability: same examples, different orders\n(dots: multisets; black: mean ± se)", fontsize=9)
    right.set_xlabel("position k (observations sampled from the model itself)")
    right.set_ylabel("mean |p_k - E[p_(k+1)]|")
    right.set_ylim(bottom=0)
    right.set_title("martingale gap (0 for an exact Bayesian)", fontsize=9)
    right.legend(fontsize=8)
    return fig


def plot_consistency(results, path: Path) -> Path:
    """:func:`consistency_figure` saved as a PNG at ``path``."""
    return save(consistency_figure(results), path)


def approximation_figure(components: np.ndarray, held_out: np.ndarray, held_out_se: np.ndarray,
                         reference: float | None = None):
    """Held-out log density of K-component Dirichlet-mixture fits against K (the approximation theorem).

    Error bars are ``held_out_se``; ``reference`` (a dashed line) is the true prior's held-out density.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    ax.errorbar(components, held_out, yerr=held_out_se, fmt="o-", capsize=3, label="Dirichlet mixture, K components")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label="true prior (logistic normal)")
    ax.set_xlabel("components K")
    ax.set_ylabel("held-out mean log density [nats]")
    ax.set_xticks(components)
    ax.legend(fontsize=8)
    ax.set_title("Dirichlet mixtures approximate a non-Dirichlet prior", fontsize=9)
    return fig


def plot_approximation(components: np.ndarray, held_out: np.ndarray, held_out_se: np.ndarray, path: Path,
                       reference: float | None = None) -> Path:
    """:func:`approximation_figure` saved as a PNG at ``path``."""
    return save(approximation_figure(components, held_out, held_out_se, reference), path)
