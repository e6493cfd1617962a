"""Diagnostic figures of a run directory: trace and rank plots (NUTS), the ELBO (SVI), marginal posteriors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot


def global_site_names(datatree, limit: int = 8) -> list[str]:
    """Global, labelled posterior sites (see :func:`inference.fit.global_sites`); at most ``limit``."""
    from bayesmatrix.inference.fit import global_sites

    return global_sites(datatree)[:limit]


def plot_elbo(losses: np.ndarray, path: Path) -> Path:
    """The SVI loss (-ELBO) against step, on a symmetric-log scale with a running mean."""
    plt = pyplot()
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

    plt = pyplot()
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
