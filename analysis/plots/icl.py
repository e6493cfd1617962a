"""The pictures of an in-context learner: the instrumented LLM, its predictive against fitted updaters,
KL from exact Bayes and entropy by position."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot, save

# Interval drawn around fitted predictives (ArviZ's default credible mass).
INTERVAL_PROB = 0.94


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
    plt = pyplot()
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
    return save(fig, path)


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
    plt = pyplot()
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
    return save(fig, path)


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
    plt = pyplot()
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
    return save(fig, path)
