"""The embedding study's picture: distribution distance against embedding distance (continuity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot


def plot_continuity(pairs, continuity, path: Path, bins: int = 30) -> Path:
    """JS (bits) against embedding distance for every pair, binned medians of the LLM and the fitted map,
    and lines through the origin at the empirical Lipschitz bounds."""
    from bayesmatrix.data.atomic import atomic_path

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    distance = pairs["embedding_distance"].to_numpy()
    llm = pairs["js_llm_bits"].to_numpy()
    fitted = pairs["js_map_bits"].to_numpy()
    nearest = (pairs["kind"] == "nearest").to_numpy()
    ax.scatter(distance[~nearest], llm[~nearest], s=2, alpha=0.15, color="tab:blue", lw=0, label="random pairs (LLM)")
    ax.scatter(distance[nearest], llm[nearest], s=3, alpha=0.4, color="tab:green", lw=0,
               label="nearest neighbours (LLM)")
    edges = np.quantile(distance, np.linspace(0, 1, bins + 1))
    centre = 0.5 * (edges[1:] + edges[:-1])
    which = np.clip(np.searchsorted(edges, distance, side="right") - 1, 0, bins - 1)
    for values, colour, label in ((llm, "navy", "LLM median"), (fitted, "tab:red", "fitted map median")):
        medians = np.array([np.median(values[which == b]) if np.any(which == b) else np.nan for b in range(bins)])
        ax.plot(centre, medians, color=colour, lw=2, label=label)
    grid = np.linspace(0, distance.max(), 50)
    llm_bounds = continuity.iloc[0]
    for key, style in (("q99", "--"), ("max", ":")):
        ax.plot(grid, llm_bounds[key] * grid, color="black", ls=style, lw=1,
                label=f"LLM {key} ratio {llm_bounds[key]:.3g} bits/unit")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, distance.max() * 1.02)
    ax.set_xlabel("embedding distance (features, unit RMS)")
    ax.set_ylabel("Jensen-Shannon divergence (bits)")
    ax.set_title("Continuity: next-token distribution distance against embedding distance")
    ax.legend(fontsize=7, loc="lower right", markerscale=4)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
