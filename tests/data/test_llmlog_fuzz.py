"""Randomly corrupted LLM logs: the validator either accepts a still-valid file or names the file,
the variable and a row, and never lets a broken log through."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, make_log, read_log, validate_log

ROWS, COLS = 6, 4


def valid_log():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(COLS), size=ROWS)
    context = np.zeros((ROWS, COLS), dtype=np.int64)
    for row in range(1, ROWS):
        context[row] = context[row - 1]
        context[row, row % (COLS - 1)] += 1
    return make_log(
        probs,
        ["a", "b", "c", OTHER],
        [1, 2, 3, -1],
        model="test",
        counts=rng.multinomial(5, [0.25] * COLS, size=ROWS),
        context_counts=context,
        episode=np.zeros(ROWS, dtype=np.int64),
    )


BAD_VALUES = [np.nan, np.inf, -np.inf, -0.5, 2.0, 0.37, -3, 1e300]


@st.composite
def corruption(draw):
    variable = draw(st.sampled_from(["probs", "counts", "context_counts", "position"]))
    row = draw(st.integers(0, ROWS - 1))
    col = draw(st.integers(0, COLS - 1))
    value = draw(st.sampled_from(BAD_VALUES))
    return variable, row, col, value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption())
def test_corrupted_value_is_caught_at_its_row(change):
    variable, row, col, value = change
    ds = valid_log().copy(deep=True)
    target = ds[variable].astype(np.float64)
    if target.ndim == 2:
        target.values[row, col] = value
    else:
        target.values[row] = value
    ds[variable] = target
    try:
        validate_log(ds, "fuzz.nc")
    except InputError as error:
        assert error.file == "fuzz.nc"
        assert error.field in (variable, "position")  # a count change can surface as a position mismatch
        assert error.row == row
        assert "\n" not in str(error)
        return
    # Accepted: then the change must have left a valid log (e.g. a count set to 2).
    probs = ds["probs"].values
    assert np.isfinite(probs).all() and (probs >= 0).all()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    for name in ("counts", "context_counts", "position"):
        values = ds[name].values
        assert (values >= 0).all() and (values == np.round(values)).all()
    assert (ds["context_counts"].values.sum(axis=1) == ds["position"].values).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=1, max_value=10_000), st.binary(min_size=1, max_size=64))
def test_damaged_bytes_never_pass_silently(tmp_path_factory, offset, garbage):
    """Overwrite bytes of a written log: reading either fails with one InputError line or
    returns a log that passes validation (the damage hit padding)."""
    path = tmp_path_factory.mktemp("fuzz") / "log.nc"
    valid_log().to_netcdf(path, engine="netcdf4")
    data = bytearray(path.read_bytes())
    start = offset % len(data)
    data[start : start + len(garbage)] = garbage
    path.write_bytes(bytes(data[: max(len(data), 1)]))
    try:
        ds = read_log(path)
    except InputError as error:
        assert error.file == str(path) and "\n" not in str(error)
    else:
        validate_log(ds, str(path))


@pytest.mark.parametrize("size", [0, 1, 100])
def test_truncated_to_any_length(tmp_path, size):
    path = tmp_path / "log.nc"
    valid_log().to_netcdf(path, engine="netcdf4")
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(InputError):
        read_log(path)
