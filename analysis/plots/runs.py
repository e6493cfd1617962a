"""Diagnostic figures of a run directory: trace and rank plots (NUTS), the ELBO (SVI), marginal posteriors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot
from bayesmatrix.analysis.plots.labels import OneLineLabeller, readable

SAMPLE_DIMS = ("chain", "draw")
# matplotlib's default cycle has ten colours; the first is ArviZ's neutral colour for scalar sites.
MAX_COMPONENT_COLOURS = 9


def global_site_names(datatree, limit: int = 8) -> list[str]:
    """Global, labelled posterior sites (see :func:`inference.fit.global_sites`); at most ``limit``."""
    from bayesmatrix.inference.fit import global_sites

    return global_sites(datatree)[:limit]


def component_dims(datatree, names: list[str]) -> list[str]:
    """The dimensions that index the entries of the vector sites among ``names`` (e.g. ``col``), in order
    of first appearance; empty when every site is scalar or the entries are too many to colour apart."""
    posterior = datatree["posterior"]
    dims: list[str] = []
    for name in names:
        dims += [d for d in posterior[name].dims if d not in SAMPLE_DIMS and d not in dims]
    entries = int(np.prod([posterior.sizes[d] for d in dims])) if dims else 0
    return dims if 0 < entries <= MAX_COMPONENT_COLOURS else []


def plot_elbo(losses: np.ndarray, path: Path) -> Path:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _legends(collection, fig, dims: list[str]) -> None:
    """A legend for the colours of the vector entries along ``dims`` (``north``, ``south``, …) and one for
    the chains (their line style or colour), outside the panels on the right."""
    from matplotlib.lines import Line2D

    aes = collection.aes.children
    if dims and "color" in aes:
        mapping = aes["color"].dataset["mapping"]
        stacked = mapping.stack(entry=dims) if len(dims) > 1 else mapping.rename({dims[0]: "entry"})
        handles = [Line2D([], [], color=str(value)) for value in stacked.values]
        labels = [", ".join(readable(k) for k in np.atleast_1d(key)) for key in stacked["entry"].values]
        fig.legend(handles, labels, title=", ".join(dims), loc="outside right upper", fontsize=8, title_fontsize=8)
    for key, prop in (("linestyle", "ls"), ("color", "color")):
        if key in aes and "mapping" in aes[key].dataset and tuple(aes[key].dataset["mapping"].dims) == ("chain",):
            values = aes[key].dataset["mapping"].values
            if len(values) > 1:
                handles = [Line2D([], [], **{"color": "0.3", prop: str(value)}) for value in values]
                fig.legend(handles, [f"chain {c}" for c in range(len(values))], loc="outside right lower", fontsize=8)
            return


def run_figures(datatree, plots_dir: Path) -> list[Path]:
    """The standard figures of a run directory: trace and rank plots (NUTS) or the ELBO (SVI),
    and the marginal posteriors of the global sites.

    Titles are one line (``alpha[north]``) and the figures use matplotlib's
    constrained layout, so no title runs into the panel above; in the trace
    plot the entries of a vector site are coloured alike across sites and
    named in a legend, the chains told apart by line style.
    """
    import arviz_plots as azp

    plt = pyplot()
    plots_dir = Path(plots_dir)
    written = []
    names = global_site_names(datatree)
    method = datatree.attrs.get("method", "nuts")
    labeller = OneLineLabeller()
    layout = {"layout": "constrained"}
    if names:
        if method == "nuts":
            dims = component_dims(datatree, names)
            aes = {"color": dims, "linestyle": ["chain"]} if dims else {}
            collection = azp.plot_trace_dist(datatree, var_names=names, backend="matplotlib", labeller=labeller,
                                             aes=aes, figure_kwargs=layout)
            _legends(collection, collection.viz["figure"].item(), dims)
            path = plots_dir / "trace.png"
            collection.savefig(path, dpi=80)
            written.append(path)
            collection = azp.plot_rank(datatree, var_names=names, backend="matplotlib", labeller=labeller,
                                       figure_kwargs=layout)
            _legends(collection, collection.viz["figure"].item(), [])
            path = plots_dir / "rank.png"
            collection.savefig(path, dpi=80)
            written.append(path)
        collection = azp.plot_dist(datatree, var_names=names, backend="matplotlib", labeller=labeller,
                                   figure_kwargs=layout)
        path = plots_dir / "posterior.png"
        collection.savefig(path, dpi=80)
        written.append(path)
    if "elbo" in datatree.children:
        written.append(plot_elbo(np.asarray(datatree["elbo"]["loss"]), plots_dir / "elbo.png"))
    plt.close("all")
    return written
