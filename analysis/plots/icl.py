"""The pictures of an in-context learner: the instrumented LLM, its predictive against fitted updaters,
KL from exact Bayes and entropy by position, and excess code length by step."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot, save
from bayesmatrix.analysis.plots.labels import readable, recent
from bayesmatrix.inference.fit import INTERVAL_PROB  # the one interval probability of the project


def instrumented_figure(
    token_labels: list[list[str]],
    token_probs: list[np.ndarray],
    context: list[str],
    title: str = "",
    max_panels: int = 12,
):
    """The instrumented-LLM picture: the top next tokens as bars at each in-context position.

    ``token_labels[k]`` and ``token_probs[k]`` are the tokens shown after ``k``
    observations (the most probable ones, and the one that came next) and their
    probabilities; ``context[k]`` is the observation that arrives after position
    ``k``, drawn orange where it is predicted. At most ``max_panels`` positions
    are drawn, evenly spread and always including the first and last. Each
    panel's title ends with the latest observations, spaced when they are words.
    """
    from matplotlib.patches import Patch

    plt = pyplot()
    positions = len(token_probs)
    shown = np.unique(np.linspace(0, positions - 1, min(max_panels, positions)).round().astype(int))
    columns = min(4, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.1 * rows + 0.6), squeeze=False, sharex=True,
                             layout="constrained")
    for ax in axes.ravel()[len(shown) :]:
        ax.set_visible(False)
    for ax, k in zip(axes.ravel(), shown):
        nxt = readable(context[k]) if k < len(context) else None
        colours = ["tab:orange" if readable(label) == nxt else "tab:blue" for label in token_labels[k]]
        order = np.arange(len(token_labels[k]))[::-1]
        ax.barh(order, np.asarray(token_probs[k], dtype=float), color=colours)
        # repr shows a token's spaces and newlines ('\n', ' north')
        ax.set_yticks(order, [repr(str(label)) for label in token_labels[k]], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(f"after {k}: {recent(context[:k])}", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("next-token probability", fontsize=8)
    fig.suptitle(title or "Top next tokens at each in-context position", fontsize=9)
    fig.legend([Patch(color="tab:blue"), Patch(color="tab:orange")], ["another token", "the token that came next"],
               loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def plot_instrumented(
    token_labels: list[list[str]],
    token_probs: list[np.ndarray],
    context: list[str],
    path: Path,
    title: str = "",
    max_panels: int = 12,
) -> Path:
    """:func:`instrumented_figure` saved as a PNG at ``path``."""
    return save(instrumented_figure(token_labels, token_probs, context, title=title, max_panels=max_panels), path)


def _observation_ticks(ax, observations: list[str], max_ticks: int = 40) -> None:
    """The observation that arrived before each position, as rotated tick labels on a top axis (thinned to
    at most ``max_ticks``), so words never run into each other."""
    top = ax.secondary_xaxis("top")
    step = int(np.ceil(len(observations) / max_ticks)) if observations else 1
    ticks = np.arange(len(observations))[::step]
    words = [readable(observations[k]) for k in ticks]
    rotation = 90 if max((len(w) for w in words), default=0) > 2 else 0
    top.set_xticks(ticks + 1, words, rotation=rotation, fontsize=7, color="0.3")
    top.tick_params(axis="x", length=2, pad=1)


def fitted_predictive_figure(
    llm: np.ndarray,
    fitted: dict[str, np.ndarray],
    categories: list[str],
    observations: list[str],
    title: str = "",
):
    """The LLM's predictive along one episode against fitted updaters, with 94% intervals.

    ``llm`` (positions, C); ``fitted[name]`` (draws, positions, C): the updater's
    predictive under each posterior draw. One panel per category (one panel
    for two categories, the second is the complement). The top axis of each
    panel names the observation that arrived before each position.
    """
    plt = pyplot()
    llm = np.asarray(llm, dtype=float)
    positions = np.arange(llm.shape[0])
    shown = [0] if len(categories) == 2 else list(range(min(len(categories), 6)))
    columns = 2 if len(shown) == 4 else min(3, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(max(4.8 * columns, 6.4), 3.2 * rows + 0.7), squeeze=False,
                             layout="constrained")
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
        _observation_ticks(ax, observations)
        ax.set_ylim(0, 1)
        ax.set_xlim(-0.5, positions[-1] + 0.5)
        if len(positions) <= 24:
            ax.set_xticks(positions)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"p({readable(categories[c])})", fontsize=9)
        ax.set_xlabel("in-context observations", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=min(len(labels), 5), frameon=False)
    fig.suptitle(title or f"LLM predictive and fitted updaters (mean, {INTERVAL_PROB:.0%} interval)\n"
                 "top axis: the observation just seen", fontsize=9)
    return fig


def plot_fitted_predictive(
    llm: np.ndarray,
    fitted: dict[str, np.ndarray],
    categories: list[str],
    observations: list[str],
    path: Path,
    title: str = "",
) -> Path:
    """:func:`fitted_predictive_figure` saved as a PNG at ``path``."""
    return save(fitted_predictive_figure(llm, fitted, categories, observations, title=title), path)


def kl_entropy_figure(
    positions: np.ndarray,
    kl: np.ndarray,
    kl_mcse: np.ndarray,
    entropy: dict[str, np.ndarray],
    title: str = "",
):
    """KL in bits of the LLM from the fitted exact-Bayes predictive, and entropies, against position.

    ``kl`` and ``kl_mcse`` (positions,) are means over episodes and their
    standard errors; ``entropy[name]`` (positions,) mean entropies in bits.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.3), layout="constrained")
    left.errorbar(positions, kl, yerr=kl_mcse, fmt="o-", ms=3, capsize=2)
    left.set_yscale("log")
    # plain numbers (0.4, not 4 x 10^-1); minor ticks labelled too where the axis spans little more than a decade
    plain = FuncFormatter(lambda value, _: f"{value:.3g}")
    low, high = left.get_ylim()
    left.yaxis.set_major_formatter(plain)
    left.yaxis.set_minor_formatter(plain if np.log10(high / low) < 1.5 else NullFormatter())
    left.tick_params(axis="y", which="minor", labelsize=7)
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
    return fig


def plot_kl_entropy(
    positions: np.ndarray,
    kl: np.ndarray,
    kl_mcse: np.ndarray,
    entropy: dict[str, np.ndarray],
    path: Path,
    title: str = "",
) -> Path:
    """:func:`kl_entropy_figure` saved as a PNG at ``path``."""
    return save(kl_entropy_figure(positions, kl, kl_mcse, entropy, title=title), path)


def excess_figure(steps: np.ndarray, curves: dict[str, np.ndarray], title: str = ""):
    """Excess code length by step: KL(exact Bayes || LLM) in bits, the LLM's rows not renormalised.

    ``curves[label]`` (3, steps) is the mean over posterior draws and the interval's low and high at
    each step (:meth:`analysis.excess.ExcessCodeLength.by_step_summary`); a stated prior's curve has
    low = high and is drawn dashed, without a band.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.2), layout="constrained")
    for label, (mean, low, high) in curves.items():
        stated = np.allclose(low, high)
        (line,) = ax.plot(steps, mean, "o--" if stated else "o-", ms=3, label=readable(label))
        if not stated:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.set_xlabel("in-context observations (step)")
    ax.set_ylabel("excess [bits]")
    ax.set_title(f"KL(exact Bayes || LLM) by step; bands: {INTERVAL_PROB:.0%} intervals over the posterior",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_excess(steps: np.ndarray, curves: dict[str, np.ndarray], path: Path, title: str = "") -> Path:
    """:func:`excess_figure` saved as a PNG at ``path``."""
    return save(excess_figure(steps, curves, title=title), path)
