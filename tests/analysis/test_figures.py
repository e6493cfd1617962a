"""The figures read with word labels: no two pieces of text overlap, observations are spaced words,
vector sites have legends, and titles are one line."""

import numpy as np
import pytest

from bayesmatrix.analysis.plots import (
    approximation_figure,
    consistency_figure,
    elbo_figure,
    fitted_predictive_figure,
    instrumented_figure,
    kl_entropy_figure,
    posterior_figure,
    posterior_predictive_figure,
    rank_figure,
    trace_figure,
)
from bayesmatrix.analysis.plots.backend import pyplot
from bayesmatrix.analysis.plots.labels import joined, readable, recent

WORDS = [" north", " south", " east", " west"]


def texts_of(fig) -> list:
    """Every visible, non-empty text of ``fig``: titles, axis and tick labels (secondary axes too),
    legends and figure-level text."""
    found = [fig._suptitle] if fig._suptitle is not None else []
    found += list(fig.texts)
    for legend in fig.legends:
        found += [legend.get_title(), *legend.get_texts()]
    axes = list(fig.axes)
    axes += [child for ax in fig.axes for child in ax.child_axes]
    for ax in axes:
        if not ax.get_visible():
            continue
        found += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis):
            if ax.axison and axis.get_visible():  # an axes switched off draws no ticks
                for tick in axis._update_ticks():  # the ticks drawn: inside the view limits
                    found += [tick.label1, tick.label2]
        if ax.get_legend() is not None:
            found += [ax.get_legend().get_title(), *ax.get_legend().get_texts()]
    unique = {id(text): text for text in found if text is not None}  # the suptitle is one of fig.texts too
    return [text for text in unique.values() if text.get_visible() and text.get_text().strip()]


def overlapping_texts(fig, slack: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of texts whose drawn boxes overlap by more than ``slack`` pixels each way, and texts cut by
    the figure's edge (paired with ``"edge"``)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in texts_of(fig)]
    width, height = fig.canvas.get_width_height()
    clashes = [(text, "edge") for text, box in boxes
               if box.x0 < -slack or box.y0 < -slack or box.x1 > width + slack or box.y1 > height + slack]
    for i, (first, a) in enumerate(boxes):
        for second, b in boxes[i + 1 :]:
            width = min(a.x1, b.x1) - max(a.x0, b.x0)
            height = min(a.y1, b.y1) - max(a.y0, b.y0)
            if width > slack and height > slack:
                clashes.append((first, second))
    return clashes


@pytest.fixture(autouse=True)
def close_figures():
    yield
    pyplot().close("all")


def an_episode(length: int = 16, seed: int = 0) -> list[str]:
    return list(np.random.default_rng(seed).choice(WORDS, size=length))


def test_labels_for_words_and_letters():
    assert readable(" north") == "north" and readable("p( north)") == "p(north)"
    assert joined([" south", " north"]) == "south north"  # not "southnorth"
    assert joined([" H", " T", " H"]) == "HTH"
    assert recent([]) == "(none)"
    assert recent([" east"]) == "east"
    long = recent([" north", " south", " east", " west"] * 5, width=20)
    assert long.startswith("… ") and long.endswith("east west") and len(long) <= 21
    assert recent([" H", " T"] * 20, width=10) == "…THTHTHTHT"  # letters run together, the latest kept


def test_instrumented_panels_space_words_and_nothing_overlaps():
    context = an_episode()
    labels = [[" north", " south", " east", " west", "\n"] for _ in range(len(context) + 1)]
    probs = [np.array([0.3, 0.3, 0.2, 0.1, 0.1]) for _ in labels]
    fig = instrumented_figure(labels, probs, context, title="smollm2: the model's top next tokens, episode 0")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[1] == f"after 1: {context[0].strip()}"
    assert any(title.endswith(f"{context[1].strip()} {context[2].strip()}") for title in titles)
    assert not any("northsouth" in t or "southnorth" in t or "eastwest" in t for t in titles)
    assert overlapping_texts(fig) == []


def test_fitted_predictive_names_observations_on_a_top_axis_without_overlap():
    length = 16
    context = an_episode(length)
    rng = np.random.default_rng(1)
    llm = rng.dirichlet(np.ones(4), size=length + 1)
    fitted = {name: rng.dirichlet(np.ones(4) * 20, size=(30, length + 1)) for name in ("icl (nuts)", "icl-none (nuts)")}
    fig = fitted_predictive_figure(llm, fitted, WORDS, context)
    [top] = fig.axes[0].child_axes
    words = [label.get_text() for label in top.get_xticklabels()]
    assert words == [word.strip() for word in context]
    assert all(label.get_rotation() == 90 for label in top.get_xticklabels())
    assert fig.axes[0].get_title() == "p(north)"
    assert overlapping_texts(fig) == []


def test_fitted_predictive_of_two_letters_fits_its_titles():
    context = list(np.random.default_rng(4).choice([" H", " T"], size=24))
    rng = np.random.default_rng(5)
    fig = fitted_predictive_figure(rng.dirichlet([3, 3], size=25), {"icl (nuts)": rng.dirichlet([30, 30], size=(20, 25))},
                                   [" H", " T"], context)
    [top] = fig.axes[0].child_axes
    assert all(label.get_rotation() == 0 for label in top.get_xticklabels())  # letters stand upright
    assert overlapping_texts(fig) == []


def test_kl_entropy_and_elbo_figures_read():
    positions = np.arange(17)
    kl = np.linspace(0.6, 0.3, 17)
    fig = kl_entropy_figure(positions, kl, 0.05 * kl, {"LLM": np.linspace(1.8, 1.5, 17), "fitted exact Bayes": 2 - 0 * kl})
    assert overlapping_texts(fig) == []
    tick_text = " ".join(label.get_text() for label in fig.axes[0].get_yticklabels())
    assert "times" not in tick_text and "^" not in tick_text  # 0.4, not 4 x 10^-1
    losses = np.r_[np.geomspace(1e4, 10, 200), -1000 + np.random.default_rng(0).normal(size=800)]
    fig = elbo_figure(losses)
    assert [ax.get_yscale() for ax in fig.axes] == ["symlog", "linear"]
    assert overlapping_texts(fig) == []


@pytest.fixture(scope="module")
def posterior_tree():
    """A NUTS-like posterior: a vector site over word columns and two scalars, 2 chains x 60 draws."""
    import arviz_base as azb

    rng = np.random.default_rng(2)
    tree = azb.from_dict(
        {"posterior": {"alpha": rng.gamma(5.0, 2.0, size=(2, 60, 4)), "m": rng.dirichlet(np.ones(4), size=(2, 60)),
                       "decay": rng.uniform(0.5, 1.0, size=(2, 60)), "temperature": rng.gamma(4.0, 0.3, size=(2, 60))}},
        dims={"alpha": ["col"], "m": ["col"]},
        coords={"col": WORDS},
    )
    tree.attrs["method"] = "nuts"
    return tree


def test_trace_has_a_legend_per_vector_site_and_for_the_chains(posterior_tree):
    fig = trace_figure(posterior_tree, ["alpha", "decay", "m", "temperature"])
    legends = {tuple(t.get_text() for t in ax.get_legend().get_texts()) for ax in fig.axes if ax.get_legend()}
    assert legends == {("north", "south", "east", "west")}
    assert sum(ax.get_legend() is not None for ax in fig.axes) == 2  # alpha and m, not the scalars
    [chains] = fig.legends
    assert [t.get_text() for t in chains.get_texts()] == ["chain 0", "chain 1"]
    assert overlapping_texts(fig) == []


def test_rank_and_posterior_titles_are_one_line_and_clear(posterior_tree):
    names = ["alpha", "decay", "m", "temperature"]
    for fig in (rank_figure(posterior_tree, names), posterior_figure(posterior_tree, names)):
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert "alpha[north]" in titles and "m[west]" in titles and "decay" in titles
        assert not any("\n" in title for title in titles)
        assert overlapping_texts(fig) == []


def test_posterior_predictive_has_a_legend_and_readable_titles():
    import arviz_base as azb

    rng = np.random.default_rng(3)
    names = [f"p({word})" for word in WORDS]
    tree = azb.from_dict(
        {"posterior_predictive": {name: rng.beta(2, 5, size=(1, 20, 40)) for name in names},
         "observed_data": {name: rng.beta(2, 5, size=40) for name in names}},
        dims={name: ["row"] for name in names},
    )
    fig = posterior_predictive_figure(tree, num_samples=10)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["p(north)", "p(south)", "p(east)", "p(west)"]
    [legend] = fig.legends
    assert legend.get_texts()[0].get_text().startswith("observed")
    assert overlapping_texts(fig) == []


def test_consistency_and_approximation_figures_read():
    from bayesmatrix.analysis.consistency import check, updater_predictive

    multisets = np.random.default_rng(6).integers(0, 4, size=(4, 6))
    names = ("SmolLM2 (labels: north, south, east, west)", "windtunnel:dirichlet (windtunnel-dirichlet)",
             "the fitted icl-general (labels)")
    results = [check(name, updater_predictive(np.ones(4), decay, 1.2), WORDS, multisets, num_orders=3, num_paths=3,
                     length=5) for name, decay in zip(names, (0.8, 1.0, 0.9))]
    fig = consistency_figure(results)
    assert overlapping_texts(fig) == []
    fig = approximation_figure(np.arange(1, 7), -np.geomspace(2, 1, 6), np.full(6, 0.05), reference=-0.9)
    assert overlapping_texts(fig) == []
