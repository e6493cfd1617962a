"""The figures' matplotlib: the Agg backend (no display needed) and one way to save a figure."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, imported on first use (``import bayesmatrix`` stays light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int = 90) -> Path:
    """Save ``fig`` as a PNG at ``path`` and close it."""
    plt = pyplot()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
