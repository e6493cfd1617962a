"""Diagnostic figures of a run directory: trace and rank plots (NUTS), the ELBO (SVI), marginal posteriors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot, save
from bayesmatrix.analysis.plots.labels import OneLineLabeller, readable

SAMPLE_DIMS = ("chain", "draw")
MAX_LEGEND_ENTRIES = 12
_LAYOUT = {"layout": "constrained"}


def global_site_names(datatree, limit: int = 8) -> list[str]:
    """Global, labelled posterior sites (see :func:`inference.fit.global_sites`); at most ``limit``."""
    from bayesmatrix.inference.fit import global_sites

    return global_sites(datatree)[:limit]


def elbo_figure(losses: np.ndarray):
    """The SVI loss (-ELBO) against step: the whole run on a symmetric-log scale, and its last half on a
    linear scale (where a plateau, or a loss still falling, is visible), each with a running mean."""
    plt = pyplot()
    losses = np.asarray(losses, dtype=float)
    fig, (whole, tail) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    steps = np.arange(1, len(losses) + 1)
    window = max(len(losses) // 50, 1)
    running = np.convolve(losses, np.ones(window) / window, mode="valid")
    centred = steps[(window - 1) // 2 : (window - 1) // 2 + running.size]  # each mean drawn at its window's centre
    half = len(losses) // 2
    for ax, start in ((whole, 0), (tail, half)):
        ax.plot(steps[start:], losses[start:], lw=0.5, alpha=0.5, label="loss")
        keep = centred > start
        ax.plot(centred[keep], running[keep], lw=1.5, label=f"running mean ({window} steps)")
        ax.set_xlabel("step")
    whole.set_ylabel("-ELBO (nats)")
    whole.set_yscale("symlog")
    whole.set_title("whole run (symmetric log scale)", fontsize=9)
    tail.set_title(f"last half, steps {half + 1}-{len(losses)} (linear scale)", fontsize=9)
    tail.legend(fontsize=8)
    return fig


def plot_elbo(losses: np.ndarray, path: Path) -> Path:
    """:func:`elbo_figure` saved as a PNG at ``path``."""
    return save(elbo_figure(losses), path, dpi=100)


def _entry_legends(collection, names: list[str]) -> None:
    """Beside each vector site's trace, a legend naming the colour of each entry (``north``, ``south``,
    ``0, north``, …), read from the lines ArviZ drew for the first chain."""
    from matplotlib.lines import Line2D

    for name in names:
        lines = collection.viz["trace"][name]
        dims = [d for d in lines.dims if d not in SAMPLE_DIMS]
        if not dims:
            continue
        first = lines.isel(chain=0) if "chain" in lines.dims else lines
        stacked = first.stack(entry=dims)
        if stacked.sizes["entry"] > MAX_LEGEND_ENTRIES:
            continue
        handles = [Line2D([], [], color=line.get_color()) for line in stacked.values]
        labels = [", ".join(readable(k) for k in np.atleast_1d(key)) for key in stacked["entry"].values]
        axis = collection.viz["plot"][name].sel(column="trace").item()
        axis.legend(handles, labels, title=", ".join(dims), loc="upper left", bbox_to_anchor=(1.01, 1.0),
                    fontsize=7, title_fontsize=7, ncols=1 if len(labels) <= 5 else 2, frameon=False)


def _chain_legend(collection, fig) -> None:
    """One legend for the chains (their line style, or their colour), outside the panels, bottom right."""
    from matplotlib.lines import Line2D

    aes = collection.aes.children
    for key, prop in (("linestyle", "ls"), ("color", "color")):
        if key in aes and "mapping" in aes[key].dataset and tuple(aes[key].dataset["mapping"].dims) == ("chain",):
            values = aes[key].dataset["mapping"].values
            if len(values) > 1:
                # arviz-plots 0.8 maps chains to colour names, 1.x to RGB tuples
                handles = [Line2D([], [], **{"color": "0.3", prop: value if isinstance(value, tuple) else str(value)})
                           for value in values]
                fig.legend(handles, [f"chain {c}" for c in range(len(values))], loc="outside right lower", fontsize=8)
            return


def _tidy(fig, x_bins: int | None = 5) -> None:
    """Room between rows (a title clear of the tick labels above it), and at most ``x_bins`` + 1 ticks on
    each x axis, so the numbers of a narrow panel (0.175 0.180 0.185 …) never touch."""
    from matplotlib.ticker import MaxNLocator

    fig.get_layout_engine().set(h_pad=0.1)
    if x_bins is not None:
        for ax in fig.axes:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=x_bins))


def trace_figure(datatree, names: list[str]):
    """ArviZ's trace plot of ``names`` (NUTS): a legend beside each vector site naming its entries'
    colours, and one for the chains' line styles."""
    import arviz_plots as azp

    collection = azp.plot_trace_dist(datatree, var_names=names, backend="matplotlib", labeller=OneLineLabeller(),
                                     figure_kwargs=_LAYOUT)
    figure = collection.viz["figure"].item()
    _entry_legends(collection, names)
    _chain_legend(collection, figure)
    _tidy(figure)
    return figure


def rank_figure(datatree, names: list[str]):
    """ArviZ's rank plot of ``names`` (NUTS), one panel per entry, with a legend for the chains."""
    import arviz_plots as azp

    collection = azp.plot_rank(datatree, var_names=names, backend="matplotlib", labeller=OneLineLabeller(),
                               figure_kwargs=_LAYOUT)
    figure = collection.viz["figure"].item()
    _chain_legend(collection, figure)
    _tidy(figure, x_bins=None)
    return figure


def posterior_figure(datatree, names: list[str]):
    """ArviZ's marginal posteriors of ``names``, one panel per entry."""
    import arviz_plots as azp

    collection = azp.plot_dist(datatree, var_names=names, backend="matplotlib", labeller=OneLineLabeller(),
                               figure_kwargs=_LAYOUT)
    figure = collection.viz["figure"].item()
    _tidy(figure)
    return figure


def run_figures(datatree, plots_dir: Path) -> list[Path]:
    """The standard figures of a run directory: trace and rank plots (NUTS; the rank plot only for
    two chains or more) or the ELBO (SVI), and the marginal posteriors of the global sites.

    Titles are one line (``alpha[north]``) and the figures use matplotlib's
    constrained layout, so no title runs into the panel above; in the trace
    plot each vector site has a legend naming its entries' colours, and the
    chains (told apart by line style) have one too.
    """
    plt = pyplot()
    plots_dir = Path(plots_dir)
    written = []
    names = global_site_names(datatree)
    builders = []
    if names:
        if datatree.attrs.get("method", "nuts") == "nuts":
            builders.append(("trace", trace_figure))
            if datatree["posterior"].sizes.get("chain", 1) > 1:  # ranks compare chains; ArviZ 1.x refuses one
                builders.append(("rank", rank_figure))
        builders.append(("posterior", posterior_figure))
    for stem, build in builders:
        written.append(save(build(datatree, names), plots_dir / f"{stem}.png", dpi=80))
    if "elbo" in datatree.children:
        written.append(plot_elbo(np.asarray(datatree["elbo"]["loss"]), plots_dir / "elbo.png"))
    plt.close("all")
    return written
