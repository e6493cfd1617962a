"""Figures: ArviZ diagnostics of a run, and the pictures a reader of the paper expects.

Every function draws with matplotlib's Agg backend (no display needed) and
saves PNG files; each returns the paths it wrote.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def global_site_names(datatree, limit: int = 8) -> list[str]:
    """Global, labelled posterior sites (see :func:`inference.fit.global_sites`); at most ``limit``."""
    from bayesmatrix.inference.fit import global_sites

    return global_sites(datatree)[:limit]


def plot_elbo(losses: np.ndarray, path: Path) -> Path:
    """The SVI loss (-ELBO) against step, on a symmetric-log scale with a running mean."""
    plt = _pyplot()
    losses = np.asarray(losses, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.5, label="loss")
    window = max(len(losses) // 50, 1)
    running = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1 :], running, lw=1.5, label=f"running mean ({window} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("-ELBO (nats)")
    ax.set_yscale("symlog")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_figures(datatree, plots_dir: Path) -> list[Path]:
    """The standard figures of a run directory: trace and rank plots (NUTS) or the ELBO (SVI),
    and the marginal posteriors of the global sites."""
    import arviz_plots as azp

    plt = _pyplot()
    plots_dir = Path(plots_dir)
    written = []
    names = global_site_names(datatree)
    method = datatree.attrs.get("method", "nuts")
    if names:
        if method == "nuts":
            for label, function in (("trace", azp.plot_trace_dist), ("rank", azp.plot_rank)):
                collection = function(datatree, var_names=names, backend="matplotlib")
                path = plots_dir / f"{label}.png"
                collection.savefig(path, dpi=80)
                written.append(path)
        collection = azp.plot_dist(datatree, var_names=names, backend="matplotlib")
        path = plots_dir / "posterior.png"
        collection.savefig(path, dpi=80)
        written.append(path)
    if "elbo" in datatree.children:
        written.append(plot_elbo(np.asarray(datatree["elbo"]["loss"]), plots_dir / "elbo.png"))
    plt.close("all")
    return written


# ---------------------------------------------------------------------------
# The pictures of the report: the instrumented LLM, the fitted predictive,
# KL and entropy by position, posterior predictive, LOO comparison,
# consistency checks and the Dirichlet-mixture approximation.
# ---------------------------------------------------------------------------

# Interval drawn around fitted predictives (ArviZ's default credible mass).
INTERVAL_PROB = 0.94


def _save(fig, path: Path, dpi: int = 90) -> Path:
    plt = _pyplot()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_instrumented(
    token_labels: list[list[str]],
    token_probs: list[np.ndarray],
    context: list[str],
    path: Path,
    title: str = "",
    max_panels: int = 12,
) -> Path:
    """The instrumented-LLM picture: the top next tokens as bars at each in-context position.

    ``token_labels[k]`` and ``token_probs[k]`` are the tokens shown after ``k``
    observations (the most probable ones, and the one that came next) and their
    probabilities; ``context[k]`` is the observation that arrives after position
    ``k``, drawn orange where it is predicted. At most ``max_panels`` positions
    are drawn, evenly spread and always including the first and last.
    """
    plt = _pyplot()
    positions = len(token_probs)
    shown = np.unique(np.linspace(0, positions - 1, min(max_panels, positions)).round().astype(int))
    columns = min(4, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.0 * rows), squeeze=False, sharex=True)
    for ax in axes.ravel()[len(shown) :]:
        ax.set_visible(False)
    for ax, k in zip(axes.ravel(), shown):
        nxt = context[k].strip() if k < len(context) else None
        labels = [repr(label)[1:-1] for label in token_labels[k]]
        colours = ["tab:orange" if label.strip() == nxt else "tab:blue" for label in token_labels[k]]
        order = np.arange(len(labels))[::-1]
        ax.barh(order, np.asarray(token_probs[k], dtype=float), color=colours)
        ax.set_yticks(order, [f"'{label}'" for label in labels], fontsize=7)
        ax.set_xlim(0, 1)
        seen = "".join(c.strip() for c in context[:k])
        ax.set_title(f"after {k}: {('…' + seen[-11:]) if len(seen) > 12 else seen or '(none)'}", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("next-token probability", fontsize=8)
    fig.suptitle(title or "Top next tokens at each in-context position", fontsize=9)
    fig.text(0.99, 0.005, "orange: the token that came next", ha="right", va="bottom", fontsize=7, color="tab:orange")
    fig.tight_layout()
    return _save(fig, path)


def plot_fitted_predictive(
    llm: np.ndarray,
    fitted: dict[str, np.ndarray],
    categories: list[str],
    observations: list[str],
    path: Path,
    title: str = "",
) -> Path:
    """The LLM's predictive along one episode against fitted updaters, with 94% intervals.

    ``llm`` (positions, C); ``fitted[name]`` (draws, positions, C): the updater's
    predictive under each posterior draw. One panel per category (one panel
    for two categories, the second is the complement).
    """
    plt = _pyplot()
    llm = np.asarray(llm, dtype=float)
    positions = np.arange(llm.shape[0])
    shown = [0] if len(categories) == 2 else list(range(min(len(categories), 6)))
    columns = min(3, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns + 2.2, 3.0 * rows), squeeze=False, sharex=True)
    for ax in axes.ravel()[len(shown) :]:
        ax.set_visible(False)
    tail = (1 - INTERVAL_PROB) / 2
    for ax, c in zip(axes.ravel(), shown):
        for name, draws in fitted.items():
            draws = np.asarray(draws, dtype=float)
            low, high = np.quantile(draws[..., c], [tail, 1 - tail], axis=0)
            (line,) = ax.plot(positions, draws[..., c].mean(axis=0), lw=1.3, label=name)
            ax.fill_between(positions, low, high, color=line.get_color(), alpha=0.2, lw=0)
        ax.plot(positions, llm[:, c], "ko", ms=3.5, label="LLM")
        for k, symbol in enumerate(observations):
            ax.annotate(symbol, (k + 1, 0.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=7, color="0.35")
        ax.set_ylim(0, 1)
        ax.set_title(f"p({categories[c]!r})", fontsize=9)
        ax.set_xlabel("in-context observations")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.suptitle(title or f"LLM predictive and fitted updaters (mean, {INTERVAL_PROB:.0%} interval)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    return _save(fig, path)


def plot_kl_entropy(
    positions: np.ndarray,
    kl: np.ndarray,
    kl_mcse: np.ndarray,
    entropy: dict[str, np.ndarray],
    path: Path,
    title: str = "",
) -> Path:
    """KL in bits of the LLM from the fitted exact-Bayes predictive, and entropies, against position.

    ``kl`` and ``kl_mcse`` (positions,) are means over episodes and their
    standard errors; ``entropy[name]`` (positions,) mean entropies in bits.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.3))
    left.errorbar(positions, kl, yerr=kl_mcse, fmt="o-", ms=3, capsize=2)
    left.set_yscale("log")
    left.set_xlabel("in-context observations")
    left.set_ylabel("KL(LLM || exact Bayes) [bits]")
    left.set_title("distance from the fitted exact Bayesian", fontsize=9)
    for name, values in entropy.items():
        right.plot(positions, values, "o-", ms=3, label=name)
    right.set_xlabel("in-context observations")
    right.set_ylabel("entropy [bits]")
    right.set_ylim(bottom=0)
    right.set_title("entropy of the predictive (sharpening)", fontsize=9)
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_posterior_predictive(datatree, path: Path, num_samples: int = 50) -> Path:
    """ArviZ's posterior predictive check: each column's reported probability pooled over rows.

    ``datatree`` is :func:`analysis.predictive.posterior_predictive_datatree`'s
    (one variable per column); at most six columns are drawn.
    """
    import arviz_plots as azp

    plt = _pyplot()
    names = list(datatree["posterior_predictive"].data_vars)
    with warnings.catch_warnings():
        # arviz-plots 0.8 drops one level of its stacked sample index, which xarray deprecates.
        warnings.filterwarnings("ignore", message="Deleting a single level of a MultiIndex", category=FutureWarning)
        collection = azp.plot_ppc_dist(
            datatree,
            var_names=names[:1] if len(names) == 2 else names[:6],  # of two columns, one mirrors the other
            num_samples=num_samples,
            backend="matplotlib",
        )
    collection.savefig(path, dpi=80)
    plt.close("all")
    return Path(path)


def plot_loo_compare(table, path: Path) -> Path:
    """ArviZ's LOO comparison plot (elpd with standard errors, best model as reference)."""
    import arviz_plots as azp

    plt = _pyplot()
    collection = azp.plot_compare(table, backend="matplotlib", figure_kwargs={"figsize": (7, 0.6 * len(table) + 1.5)})
    collection.savefig(path, dpi=90, bbox_inches="tight")  # long run names as tick labels
    plt.close("all")
    return Path(path)


def plot_consistency(results, path: Path) -> Path:
    """Exchangeability and martingale checks of several models side by side.

    ``results`` are :class:`analysis.consistency.ConsistencyResult`. Left: the
    largest total variation between orders of each multiset (0 for exact
    Bayes). Right: the martingale gap by position with its standard error.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
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
    left.set_xticks(range(len(results)), [result.name for result in results], fontsize=8)
    left.set_ylabel("max TV between orders")
    left.set_ylim(bottom=0)
    left.set_title("exchangeability: same examples, different orders", fontsize=9)
    right.set_xlabel("position k (observations sampled from the model itself)")
    right.set_ylabel("mean |p_k - E[p_(k+1)]|")
    right.set_ylim(bottom=0)
    right.set_title("martingale gap (0 for an exact Bayesian)", fontsize=9)
    right.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_approximation(components: np.ndarray, held_out: np.ndarray, held_out_se: np.ndarray, path: Path,
                       reference: float | None = None) -> Path:
    """Held-out log density of K-component Dirichlet-mixture fits against K (the approximation theorem).

    Error bars are ``held_out_se``; ``reference`` (a dashed line) is the true prior's held-out density.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.errorbar(components, held_out, yerr=held_out_se, fmt="o-", capsize=3, label="Dirichlet mixture, K components")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label="true prior (logistic normal)")
    ax.set_xlabel("components K")
    ax.set_ylabel("held-out mean log density [nats]")
    ax.set_xticks(components)
    ax.legend(fontsize=8)
    ax.set_title("Dirichlet mixtures approximate a non-Dirichlet prior", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
