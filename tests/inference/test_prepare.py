"""prepare(): LLM logs to model inputs, and the errors that name the file, the variable and the row."""

from __future__ import annotations

import numpy as np
import pytest

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import make_log, read_log, write_log
from bayesmatrix.inference.prepare import model_parameters, prepare

COLUMNS = ["H", "T", "<other>"]


def icl_log(examples=((0, 1, 0), (1,)), other_mass=0.2, **overrides):
    """An ICL log: each episode at positions 0..K, context counts growing by one example per row."""
    context, episode = [], []
    for index, ys in enumerate(examples):
        counts = np.zeros(3, dtype=int)
        for position in range(len(ys) + 1):
            if position > 0:
                counts[ys[position - 1]] += 1
            context.append(counts.copy())
            episode.append(index)
    rows = len(context)
    probs = np.column_stack([np.full(rows, 0.6 * (1 - other_mass)), np.full(rows, 0.4 * (1 - other_mass)), np.full(rows, other_mass)])
    arrays = {"context_counts": np.array(context), "episode": np.array(episode), **overrides}
    return make_log(probs, COLUMNS, model="test", **arrays)


def test_icl_models_observe_sampled_tokens_without_other():
    counts = np.array([[3, 1, 1], [2, 2, 1], [0, 4, 1], [1, 1, 3], [2, 2, 1], [4, 0, 1]])
    for model in ("icl", "icl-general"):
        prepared = prepare(icl_log(counts=counts), model, observe=["counts"])
        assert prepared.observed == ("counts",) and "probs" not in prepared.kwargs
        np.testing.assert_array_equal(prepared.kwargs["counts"], counts[:, :2])
        np.testing.assert_array_equal(prepared.kwargs["total_count"], counts[:, :2].sum(1))
        assert prepared.kwargs["observe"] == ("counts",)


def rows_log(counts=None):
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]])
    return make_log(probs, COLUMNS, model="test", counts=counts)


def test_rows_drop_other_and_renormalise():
    prepared = prepare(rows_log(), "matrix")
    np.testing.assert_allclose(prepared.kwargs["probs"], [[0.625, 0.375], [0.5, 0.5], [0.5, 0.5]])
    assert prepared.columns == ["H", "T"] and prepared.observed == ("probs",)
    assert prepared.kwargs["num_rows"] == 3 and prepared.kwargs["num_cols"] == 2
    assert prepared.dims["alpha"] == ["col"] and prepared.dims["probs"] == ["row", "col"]
    assert list(prepared.coords["col"]) == ["H", "T"]


def test_keep_other_keeps_the_row_as_logged():
    prepared = prepare(rows_log(), "matrix", keep_other=True)
    assert prepared.columns == COLUMNS
    np.testing.assert_allclose(prepared.kwargs["probs"][1], [0.1, 0.1, 0.8])


def test_counts_are_observed_with_their_totals():
    counts = np.array([[3, 1, 2], [0, 0, 4], [1, 1, 0]])
    prepared = prepare(rows_log(counts), "mixture", observe=("probs", "counts"), components=3)
    np.testing.assert_array_equal(prepared.kwargs["counts"], counts[:, :2])
    np.testing.assert_array_equal(prepared.kwargs["total_count"], [4, 0, 2])
    assert prepared.kwargs["components"] == 3 and list(prepared.coords["component"]) == [0, 1, 2]
    assert prepared.dims["alpha"] == ["component", "col"] and prepared.dims["w"] == ["component"]


def test_icl_inputs_are_rebuilt_from_the_log():
    prepared = prepare(icl_log(), "icl-general")
    np.testing.assert_array_equal(prepared.kwargs["episode_start"], [True, False, False, False, True, False])
    np.testing.assert_array_equal(
        prepared.kwargs["last_example"], [[0, 0], [1, 0], [0, 1], [1, 0], [0, 0], [0, 1]]
    )
    np.testing.assert_allclose(prepared.kwargs["probs"], np.tile([0.6, 0.4], (6, 1)))
    exact = prepare(icl_log(), "icl")
    np.testing.assert_array_equal(exact.kwargs["context_counts"], [[0, 0], [1, 0], [1, 1], [2, 1], [0, 0], [0, 1]])
    assert exact.observed == ("probs",)


def test_prepared_inputs_feed_every_model():
    from numpyro.handlers import seed, substitute, trace
    from numpyro.infer import init_to_uniform

    from bayesmatrix.models import MODELS

    counts = np.array([[3, 1, 2], [0, 0, 4], [1, 1, 0]])
    for name, spec in MODELS.items():
        if "embedding" in model_parameters(spec):  # needs a log with embeddings; its own tests feed it
            continue
        log = icl_log() if spec.in_context else rows_log(counts)
        if "framing" in model_parameters(spec):  # a framed log: episode e under level e mod 2
            log = icl_log(framing=np.array([0, 0, 0, 0, 1, 1]))
        prepared = prepare(log, name)
        # Parameters drawn as NUTS initialises them: uniform on the unconstrained scale.
        model = substitute(seed(spec.function, 0), substitute_fn=init_to_uniform)
        model_trace = trace(model).get_trace(**prepared.kwargs)
        assert np.isfinite(model_trace["probs"]["fn"].log_prob(model_trace["probs"]["value"])).all(), name


def test_file_name_comes_from_the_log_read(tmp_path):
    path = write_log(rows_log(), tmp_path / "rows.nc")
    with pytest.raises(InputError, match=r"rows\.nc: field 'counts'"):
        prepare(read_log(path), "matrix", observe=["counts"])


@pytest.mark.parametrize(
    "model, log, options, field, row, message",
    [
        ("icl", rows_log(), {}, "context_counts", None, "ICL log"),
        ("icl-general", icl_log(episode=None), {}, "episode", None, "order"),
        ("icl", icl_log(episode=np.array([0, 0, 1, 1, 0, 0])), {}, "episode", 4, "consecutive"),
        ("icl", icl_log(examples=((0, 1, 0), (1, 1, 1))), {}, None, None, None),
        ("icl", icl_log(context_counts=np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0]])), {}, "context_counts", 3, "falls"),
        ("icl", icl_log(context_counts=np.array([[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 1, 0], [0, 0, 0], [0, 1, 0]])), {}, "position", 2, "jumps"),
        ("icl", icl_log(context_counts=np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 1, 0], [0, 1, 0], [0, 2, 0]])), {}, "position", 4, "not 0"),
        ("icl", icl_log(context_counts=np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [2, 0, 1], [0, 0, 0], [0, 1, 0]])), {}, "context_counts", 2, "keep_other"),
        ("icl", icl_log(other_mass=1.0), {}, "probs", 0, "no probability"),
        ("matrix", rows_log(), {"observe": ["counts"]}, "counts", None, "missing"),
        ("icl", icl_log(), {"observe": ["counts"]}, "counts", None, "missing"),
        ("icl", icl_log(), {"observe": ["tokens"]}, "observe", None, "observe"),
        ("mixture", rows_log(), {"components": 0}, "components", None, "at least one"),
        ("nonsense", rows_log(), {}, "model", None, "unknown model"),
    ],
)
def test_errors_name_the_variable_and_row(model, log, options, field, row, message):
    if field is None:  # a well-formed log: no error
        prepare(log, model, **options)
        return
    with pytest.raises(InputError, match=message) as raised:
        prepare(log, model, **options)
    assert raised.value.field == field and raised.value.row == row


def test_other_examples_are_a_category_when_kept():
    context = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [2, 0, 1], [0, 0, 0], [0, 1, 0]])
    prepared = prepare(icl_log(context_counts=context), "icl-general", keep_other=True)
    assert prepared.columns == COLUMNS
    np.testing.assert_array_equal(prepared.kwargs["last_example"][2], [0, 0, 1])
