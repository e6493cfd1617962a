"""compare refuses what LOO cannot compare: runs of other observations, other logs, other columns, one run twice."""

import numpy as np
import pytest

from bayesmatrix.analysis.compare import compare_runs
from bayesmatrix.data.errors import InputError
from bayesmatrix.inference.rundir import write_run_dir


def a_run(folder, **info):
    import arviz_base as azb

    rng = np.random.default_rng(0)
    tree = azb.from_dict({"posterior": {"s": rng.gamma(2.0, size=(2, 20))},
                          "log_likelihood": {"probs": rng.normal(size=(2, 20, 5))}})  # fmt: skip
    base = {"model": "matrix", "method": "nuts", "data_file": "log.nc", "data_sha256": "abc",
            "columns": ["a", "b"], "options": {"observe": ["probs"]}}  # fmt: skip
    return write_run_dir(folder, tree, {**base, **info})


@pytest.mark.parametrize(
    "other, message",
    [
        ({"options": {"observe": ["counts"]}}, "observes counts"),
        ({"data_sha256": "def", "data_file": "other.nc"}, "was fitted to 'other.nc'"),
        ({"columns": ["a", "b", "<other>"]}, "over columns"),
    ],
)
def test_runs_of_other_observations_are_refused(tmp_path, other, message):
    first = a_run(tmp_path / "first")
    second = a_run(tmp_path / "second", **other)
    with pytest.raises(InputError, match=message):
        compare_runs([first, second])


def test_the_same_run_twice_is_refused(tmp_path):
    run = a_run(tmp_path / "run")
    with pytest.raises(InputError, match="given twice"):
        compare_runs([run, tmp_path / "." / "run"])
