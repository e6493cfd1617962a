"""ICL tasks: rendering, the registry, option parsing and the episode prior."""

import numpy as np
import pytest

from bayesmatrix.data.errors import InputError
from bayesmatrix.commands.parsing import parse_floats, parse_labels
from bayesmatrix.data.tasks import TASKS, draw_episode, get_task, task_from_json


def test_coin_renders_observations_where_the_spans_say():
    task = get_task("coin")
    text, spans = task.render([0, 1, 0])
    assert text == "Coin flips: H, T, H,"
    assert [text[s.symbol_start : s.symbol_end] for s in spans] == ["H", "T", "H"]
    assert [text[s.piece_start : s.symbol_end] for s in spans] == [" H", " T", " H"]
    assert task.render([])[0] == "Coin flips:"


def test_shipped_tasks_and_default_prior():
    assert set(TASKS) >= {"coin", "die", "labels"}
    die = get_task("die")
    assert die.categories == ("1", "2", "3", "4", "5", "6")
    assert die.prior == (1.0,) * 6
    assert get_task("coin", alpha=[2, 0.5]).prior == (2.0, 0.5)


def test_task_json_round_trip():
    task = get_task("labels", labels=["cat", "dog"], alpha=[1, 3])
    assert task_from_json(task.to_json()) == task
    assert task.to_json()["template"] == {"header": "Labels:", "observation": " {},"}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "dice"}, "task"),
        ({"name": "labels"}, "labels"),
        ({"name": "coin", "labels": ["a", "b"]}, "labels"),
        ({"name": "coin", "alpha": [1, 1, 1]}, "alpha"),
        ({"name": "coin", "alpha": [1, -1]}, "alpha"),
        ({"name": "coin", "alpha": [1, float("nan")]}, "alpha"),
    ],
)
def test_get_task_rejects_bad_options(kwargs, field):
    with pytest.raises(InputError) as error:
        get_task(**kwargs)
    assert error.value.field == field


def test_parse_alpha():
    assert parse_floats("1,2.5", "alpha") == (1.0, 2.5)
    with pytest.raises(InputError, match="alpha"):
        parse_floats("1,x", "alpha")


def test_parse_labels_from_text_and_file(tmp_path):
    assert parse_labels("cat, dog,bird") == ("cat", "dog", "bird")
    path = tmp_path / "labels.txt"
    path.write_text("cat\n\ndog\n")
    assert parse_labels(str(path)) == ("cat", "dog")


@pytest.mark.parametrize(
    "content, message",
    [("", "empty"), ("cat\n", "at least two"), ("cat\ndog\ncat\n", "line 3: 'cat' repeats line 1")],
)
def test_parse_labels_file_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "labels.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        parse_labels(str(path))
    assert error.value.file == str(path)


def test_parse_labels_text_errors():
    with pytest.raises(InputError, match="empty"):
        parse_labels("cat,,dog")
    with pytest.raises(InputError, match="repeats"):
        parse_labels("cat,cat")


def test_episodes_depend_only_on_seed_and_index():
    task = get_task("die")
    first = draw_episode(task, 20, seed=3, episode=5)
    assert np.array_equal(first, draw_episode(task, 20, seed=3, episode=5))
    assert not np.array_equal(first, draw_episode(task, 20, seed=3, episode=6))
    assert not np.array_equal(first, draw_episode(task, 20, seed=4, episode=5))
    assert first.min() >= 0 and first.max() < 6


def test_episode_frequencies_follow_the_prior_mean():
    # Under pi ~ Dirichlet(alpha), each observation is category c with probability alpha_c / sum(alpha).
    task = get_task("coin", alpha=[3.0, 1.0])
    first = np.array([draw_episode(task, 1, seed=0, episode=e)[0] for e in range(4000)])
    share_heads = np.mean(first == 0)
    standard_error = np.sqrt(0.75 * 0.25 / first.size)
    assert abs(share_heads - 0.75) / standard_error < 4
