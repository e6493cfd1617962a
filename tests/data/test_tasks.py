"""ICL tasks: rendering, the registry, option parsing and the episode prior."""

import dataclasses
import re

import numpy as np
import pytest

from bayesmatrix.data.errors import InputError
from bayesmatrix.commands.parsing import parse_floats, parse_labels
from bayesmatrix.data.tasks import SHIPPED_TASKS, TASKS, Task, draw_episode, get_task, task_from_json


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


# --------------------------------------------------------------------------- task files

def test_shipped_files_are_the_tasks_the_registry_held():
    # the registry entries as they were written in Python before the task files
    assert TASKS["coin"] == Task("coin", ("H", "T"), "Coin flips:")
    assert TASKS["die"] == Task("die", tuple("123456"), "Die rolls:")
    assert TASKS["labels"] == Task("labels", (), "Labels:")
    assert get_task("coin").to_json() == {
        "name": "coin", "categories": ["H", "T"], "alpha": [1.0, 1.0],
        "template": {"header": "Coin flips:", "observation": " {},"},
    }
    assert sorted(path.stem for path in SHIPPED_TASKS.glob("*.toml")) == sorted(TASKS)
    assert get_task(str(SHIPPED_TASKS / "coin.toml")) == get_task("coin")


def test_a_task_file_with_every_key(tmp_path):
    path = tmp_path / "bias.toml"
    path.write_text(
        'name = "bias"\ndescription = "a stated bias"\ncategories = ["heads", "tails"]\n'
        'instruction = "A coin lands heads {bias}% of the time ({{stated}}). "\nheader = "Flips:"\n'
        'observation = " {},"\nchat = true\n\n[values]\nbias = 30\n\n'
        '[[mixture]]\nweight = 0.25\nalpha = [1, 3]\n\n[[mixture]]\nweight = 0.75\nalpha = [3, 1]\n'
    )
    task = Task.from_file(path)
    assert task.categories == ("heads", "tails") and task.chat and task.description == "a stated bias"
    assert task.mixture == ((0.25, (1.0, 3.0)), (0.75, (3.0, 1.0)))
    assert task.lead == "A coin lands heads 30% of the time ({stated}). Flips:"
    assert task.render([0, 1])[0] == "A coin lands heads 30% of the time ({stated}). Flips: heads, tails,"
    assert task_from_json(task.to_json()) == task
    assert get_task(str(path), alpha=[2, 1]).alpha == (2.0, 1.0)


def test_a_task_file_without_categories_takes_labels(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nheader = "Mine:"\nobservation = "\\n- {}"\n')
    assert get_task(str(path), labels=["a b", "c"]).categories == ("a b", "c")
    with pytest.raises(InputError, match="categories") as error:
        get_task(str(path))
    assert error.value.file == str(path) and error.value.field == "categories"


BASE = {"name": '"t"', "categories": '["a", "b"]', "header": '"T:"', "observation": '" {},"'}


@pytest.mark.parametrize(
    "change, key, message",
    [
        ({"name": None}, "name", "is missing"),
        ({"header": None}, "header", "is missing"),
        ({"observation": '" ,"'}, "observation", "exactly one {}"),
        ({"observation": '" {} {},"'}, "observation", "exactly one {}"),
        ({"observation": '" {x},"'}, "observation", "exactly one {}"),
        ({"categories": '["a", "a"]'}, "categories", "category 2 ('a') repeats category 1"),
        ({"categories": '["a", " "]'}, "categories", "category 2 is empty"),
        ({"categories": '["a"]'}, "categories", "two or more"),
        ({"categories": '["a", "<other>"]'}, "categories", "reserved"),
        ({"categories": '["a", 2]'}, "categories", "list of strings"),
        ({"categories": None}, "categories", "is missing"),
        ({"instruction": '"Bias {bias}. "'}, "instruction", "placeholder {bias} has no value"),
        ({"instruction": '"Bias {bias. "'}, "instruction", "literal braces"),
        ({"alpha": "[1, 0]"}, "alpha", "positive"),
        ({"alpha": "[1, 1, 1]"}, "alpha", "has 3 values"),
        ({"alpha": "[1, 1]", "mixture": '[{weight = 1, alpha = [1, 1]}]'}, "mixture", "not both"),
        ({"mixture": '[{weight = 0.5, alpha = [1, 1]}]'}, "mixture", "sum to 1"),
        ({"chat": '"yes"'}, "chat", "true or false"),
        ({"catgories": '["a", "b"]'}, "catgories", "is not a task key"),
        ({"values": "{bias = 3}"}, "values", "'bias' is not a placeholder"),
    ],
)
def test_bad_task_files_name_the_file_and_the_key(tmp_path, change, key, message):
    lines = {**BASE, **change}
    path = tmp_path / "bad.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in lines.items() if v is not None))
    with pytest.raises(InputError, match=re.escape(message)) as error:
        Task.from_file(path)
    assert (error.value.file, error.value.field) == (str(path), key)
    assert str(error.value).startswith(f"{path}: field '{key}':")


def test_unreadable_task_files(tmp_path):
    with pytest.raises(InputError, match="no such task file"):
        get_task(str(tmp_path / "missing.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "t\n')
    with pytest.raises(InputError, match="not valid TOML") as error:
        get_task(str(broken))
    assert error.value.file == str(broken)


@pytest.mark.llm  # bayesmatrix log, which needs the llm extra
def test_bad_task_file_through_the_command_is_one_line_and_exit_2(tmp_path, capsys):
    from bayesmatrix.cli import main

    path = tmp_path / "bad.toml"
    path.write_text('name = "t"\ncategories = ["a", "a"]\nheader = "T:"\nobservation = " {},"\n')
    status = main(["log", "--task", str(path), "--out", str(tmp_path / "out.nc")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and f"{path}: field 'categories': category 2" in err
    assert not (tmp_path / "out.nc").exists()


def test_framing_levels_combine_and_override_values(tmp_path):
    path = tmp_path / "framed.toml"
    path.write_text(
        'name = "framed"\ncategories = ["heads", "tails"]\ninstruction = "Heads {bias}% ({who}). "\n'
        'header = "Flips:"\nobservation = " {},"\n[values]\nbias = 50\nwho = "me"\n[framing]\nbias = [10, 90]\n'
    )
    task = Task.from_file(path)
    assert task.framing == (("bias", ("10", "90")),)
    assert [level.lead for level in task.framings()] == ["Heads 10% (me). Flips:", "Heads 90% (me). Flips:"]
    both = task.with_framing({"bias": ["10", "90"], "who": ["me", "you"]})
    assert [dict(level.values) for level in both.framings()] == [
        {"bias": "10", "who": "me"}, {"bias": "10", "who": "you"}, {"bias": "90", "who": "me"},
        {"bias": "90", "who": "you"},
    ]
    assert task_from_json(both.to_json()) == dataclasses.replace(both, alpha=(1.0, 1.0))
    with pytest.raises(ValueError, match="framed several ways"):
        task.lead
    for framing, message in [({"nothing": ["1"]}, "'nothing' is not a placeholder"), ({"bias": []}, "one or more"),
                             ({"bias": ["1", "1"]}, "repeats a level")]:
        with pytest.raises(InputError, match=message) as error:
            task.with_framing(framing)
        assert error.value.field == "framing"
