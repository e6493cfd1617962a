"""The pictures of the phenomena studies: entropy along answers, excess bits and decay by inserted text, ROC."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesmatrix.analysis.plots.backend import pyplot, save

_MIN_ANSWERS = 3  # an index of the entropy curve is drawn while at least this many answers reach it
_COLOURS = {"direct": "tab:blue", "cot": "tab:orange", "none": "black", "before": "tab:blue", "inside": "tab:red"}


def cot_figure(result: dict):
    """Entropy (bits) of the next-token rows by generated token, direct against step by step, and each
    mode's accuracy with its interval (``result``: a ``cot.json``)."""
    plt = pyplot()
    fig, (ax_entropy, ax_accuracy) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    labels = {"direct": "direct answer", "cot": "step by step"}
    for mode, summary in result["summary"].items():
        entropy, count = np.asarray(summary["entropy_by_index"]), np.asarray(summary["answers_by_index"])
        shown = count >= _MIN_ANSWERS
        ax_entropy.plot(np.arange(1, len(entropy) + 1)[shown], entropy[shown], color=_COLOURS[mode],
                        label=f"{labels[mode]} (mean {summary['mean_entropy_bits']:.2f} bits/token)")  # fmt: skip
    ax_entropy.set(xlabel="generated token", ylabel="entropy of the next-token row (bits)",
                   title="Entropy along greedy answers (mean over questions)")  # fmt: skip
    ax_entropy.legend(fontsize=8)
    modes = list(result["summary"])
    accuracy = [result["summary"][m]["accuracy"] for m in modes]
    means = np.array([a["mean"] for a in accuracy])
    errors = np.array([[a["mean"] - a["low"] for a in accuracy], [a["high"] - a["mean"] for a in accuracy]])
    ax_accuracy.bar(range(len(modes)), means, yerr=errors, color=[_COLOURS[m] for m in modes], capsize=4)
    ax_accuracy.set_xticks(range(len(modes)), [labels[m] for m in modes], fontsize=8)
    ax_accuracy.set(ylim=(0, 1), ylabel="accuracy of the final number", title=f"{accuracy[0]['n']} questions")
    fig.tight_layout()
    return fig


def plot_cot(result: dict, path: Path) -> Path:
    return save(cot_figure(result), path)


def long_context_figure(result: dict):
    """Excess bits per step against exact Bayes (± 2 standard errors over episodes) and the fitted decay
    (with its interval) by the length of the inserted text, one line per placement (``long_context.json``)."""
    plt = pyplot()
    fig, (ax_excess, ax_decay) = plt.subplots(1, 2, figsize=(10, 3.6))
    conditions = result["conditions"]
    baseline = [c for c in conditions if c["placement"] == "none"]
    for placement in sorted({c["placement"] for c in conditions} - {"none"}):
        rows = baseline + sorted((c for c in conditions if c["placement"] == placement),
                                 key=lambda c: c["inserted_tokens"])  # fmt: skip
        x = np.array([c["inserted_tokens"] for c in rows])
        excess = np.array([c["stated_excess_bits"] for c in rows])
        se = np.array([c["stated_excess_se"] for c in rows])
        decay = np.array([[c["decay"]["mean"], c["decay"]["low"], c["decay"]["high"]] for c in rows])
        colour = _COLOURS.get(placement)
        ax_excess.errorbar(x, excess, yerr=2 * se, marker="o", capsize=3, color=colour, label=placement)
        ax_excess.plot(x, [c["stated_excess_renormalised_bits"] for c in rows], ls="--", color=colour,
                       label=f"{placement}, renormalised")  # fmt: skip
        ax_decay.errorbar(x, decay[:, 0], yerr=[decay[:, 0] - decay[:, 1], decay[:, 2] - decay[:, 0]], marker="o",
                          capsize=3, color=colour, label=placement)  # fmt: skip
    for ax in (ax_excess, ax_decay):
        ax.set_xscale("symlog", linthresh=32)
        ax.set_xlabel("inserted tokens")
        ax.legend(fontsize=8)
    ax_excess.set(ylabel="excess bits per step", title="Excess code length against exact Bayes")
    ax_decay.axhline(1.0, color="grey", lw=0.8)
    ax_decay.set(ylabel="icl-general decay", title="Fitted decay (1: exact Bayes)")
    fig.tight_layout()
    return fig


def plot_long_context(result: dict, path: Path) -> Path:
    return save(long_context_figure(result), path)


def hallucination_figure(result: dict):
    """The ROC of the answer row's entropy for a wrong answer, and that entropy for right and wrong
    answers in each group (``hallucination.json``)."""
    from bayesmatrix.analysis.phenomena import roc_curve

    plt = pyplot()
    fig, (ax_roc, ax_groups) = plt.subplots(1, 2, figsize=(10, 3.8))
    records = result["records"]
    wrong = np.array([not r["correct"] for r in records])
    entropy = np.array([r["entropy_bits"] for r in records])
    area = result["summary"]["all"]["auroc_wrong"]
    if area is not None:
        fpr, tpr = roc_curve(entropy, wrong)
        ax_roc.plot(fpr, tpr, color="tab:purple",
                    label=f"AUROC {area['auroc']:.2f} [{area['low']:.2f}, {area['high']:.2f}]")  # fmt: skip
        ax_roc.legend(fontsize=8, loc="lower right")
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax_roc.set(xlabel="right answers flagged", ylabel="wrong answers flagged", title="Entropy as a signal of a wrong answer")
    groups = [g for g in result["summary"] if g != "all"]
    rng = np.random.default_rng(0)  # horizontal jitter only
    for i, group in enumerate(groups):
        for is_wrong, offset, colour in ((False, -0.15, "tab:green"), (True, 0.15, "tab:red")):
            values = [r["entropy_bits"] for r in records if r["group"] == group and (not r["correct"]) == is_wrong]
            ax_groups.scatter(i + offset + rng.uniform(-0.06, 0.06, len(values)), values, s=9, color=colour,
                              alpha=0.7, label=("wrong" if is_wrong else "right") if i == 0 else None)  # fmt: skip
    ax_groups.set_xticks(range(len(groups)), groups)
    ax_groups.set(ylabel="entropy of the answer row (bits)", title="By group")
    ax_groups.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_hallucination(result: dict, path: Path) -> Path:
    return save(hallucination_figure(result), path)
