"""The LLM log contract: round trip, validation errors naming file, variable and row."""

import numpy as np
import pytest
import xarray as xr

from bayesmatrix.data.errors import InputError
from bayesmatrix.data.llmlog import OTHER, SCHEMA, make_log, read_log, task_of, write_log


def small_log(**extra):
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    return make_log(probs, ["a", "b", OTHER], [5, 7, -1], model="test", task={"name": "t"}, seed=3, **extra)


def test_round_trip_keeps_every_field(tmp_path):
    ds = small_log(
        prompt=["x", "y", "z"],
        counts=np.array([[1, 2, 0], [0, 3, 0], [1, 1, 1]]),
        context_counts=np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]]),
        episode=np.array([0, 0, 0]),
        embedding=np.ones((3, 4)),
    )
    path = write_log(ds, tmp_path / "log.nc")
    back = read_log(path)
    assert back.attrs["schema"] == SCHEMA
    assert list(back["col"].values) == ["a", "b", OTHER]
    assert list(back["col_token_id"].values) == [5, 7, -1]
    np.testing.assert_array_equal(back["position"].values, [0, 1, 2])
    np.testing.assert_allclose(back["probs"].values, ds["probs"].values)
    assert list(back["prompt"].values) == ["x", "y", "z"]
    assert task_of(back) == {"name": "t"}
    assert back.attrs["seed"] == 3
    assert not list(tmp_path.glob(".*tmp")), "the temporary file must be renamed away"


def write_raw(path, ds):
    ds.to_netcdf(path, engine="netcdf4")
    return path


@pytest.mark.parametrize(
    "corrupt, field, row",
    [
        (lambda ds: ds["probs"].values.__setitem__((1, 0), np.nan), "probs", 1),
        (lambda ds: ds["probs"].values.__setitem__((2, 0), -0.1), "probs", 2),
        (lambda ds: ds["probs"].values.__setitem__((2, 0), 0.3), "probs", 2),
        (lambda ds: ds.attrs.__setitem__("schema", "other/1"), "schema", None),
    ],
)
def test_validation_names_file_field_and_row(tmp_path, corrupt, field, row):
    ds = small_log().copy(deep=True)
    corrupt(ds)
    path = write_raw(tmp_path / "bad.nc", ds)
    with pytest.raises(InputError) as info:
        read_log(path)
    assert info.value.file == str(path) and info.value.field == field and info.value.row == row
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_fractional_and_negative_counts_are_rejected(tmp_path):
    ds = small_log(counts=np.array([[1, 2, 0], [0, 3, 0], [1, 1, 1]])).copy(deep=True)
    ds["counts"] = ds["counts"].astype(float)
    ds["counts"].values[2, 1] = 0.5
    with pytest.raises(InputError, match="row 2: is not an integer"):
        read_log(write_raw(tmp_path / "frac.nc", ds))
    ds["counts"].values[2, 1] = -1
    with pytest.raises(InputError, match="row 2: is negative"):
        read_log(write_raw(tmp_path / "neg.nc", ds))


def test_position_must_match_context_counts(tmp_path):
    ds = small_log(context_counts=np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]])).copy(deep=True)
    ds["position"].values[1] = 4
    with pytest.raises(InputError, match="field 'position', row 1"):
        read_log(write_raw(tmp_path / "pos.nc", ds))


def test_last_column_must_be_other(tmp_path):
    ds = small_log().copy(deep=True).assign_coords(col=["a", "b", "c"])
    with pytest.raises(InputError, match="field 'col'"):
        read_log(write_raw(tmp_path / "cols.nc", ds))


@pytest.mark.parametrize("content", [b"", b"not a netcdf file at all", None])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "broken.nc"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_log(path)
    assert info.value.file == str(path)


def test_truncated_file(tmp_path):
    good = write_log(small_log(), tmp_path / "good.nc")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable netCDF file"):
        read_log(truncated)


def test_missing_probs(tmp_path):
    ds = small_log().drop_vars("probs")
    with pytest.raises(InputError, match="field 'probs'"):
        read_log(write_raw(tmp_path / "noprobs.nc", ds))


def test_invalid_log_is_never_written(tmp_path):
    ds = small_log().copy(deep=True)
    ds["probs"].values[0, 0] = np.inf
    with pytest.raises(InputError):
        write_log(ds, tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == []


def test_dataset_type():
    assert isinstance(small_log(), xr.Dataset)


@pytest.mark.timeout(60)
def test_a_duplicate_column_among_many_is_found_in_one_pass():
    """200,000 columns with the duplicate at the end: named with both places (a count per label took minutes)."""
    columns = [f"t{i}" for i in range(200_000)] + ["t199999", OTHER]
    with pytest.raises(InputError, match=r"column 't199999' appears twice \(columns 199999 and 200000\)"):
        make_log(np.full((1, len(columns)), 1.0 / len(columns)), columns, model="test")


@pytest.mark.parametrize("label", ["a\x00", "\x00", "\ud800b"])
def test_labels_netcdf_cannot_store_are_refused(label):
    with pytest.raises(InputError, match="NUL or a character UTF-8 cannot store"):
        make_log(np.array([[0.5, 0.5]]), [label, OTHER], model="test")


def test_token_ids_stored_as_strings_are_one_input_error(tmp_path):
    ds = small_log().assign_coords(col_token_id=("col", np.array(["5", "7", "-1"])))
    path = write_raw(tmp_path / "ids.nc", ds)
    with pytest.raises(InputError, match=r"ids.nc: field 'col_token_id': has dtype <U2, expected integer token ids"):
        read_log(path)


@pytest.mark.parametrize("task, what", [("{not json", "is not JSON"), ("[1, 2]", "JSON list, expected an object"),
                                        ("[" * 100_000, "is not JSON")])  # fmt: skip
def test_a_task_attribute_that_is_not_a_json_object_is_named(tmp_path, task, what):
    ds = small_log()
    ds.attrs["task"] = task
    path = write_raw(tmp_path / "task.nc", ds)
    with pytest.raises(InputError, match=r"task.nc: field 'task': ") as error:
        read_log(path)
    assert what in str(error.value)
    with pytest.raises(InputError, match="field 'task'"):
        task_of(ds)


def test_labels_and_prompts_stored_as_bytes_read_as_text(tmp_path):
    ds = small_log(prompt=["x", "y", "z"])
    ds = ds.assign_coords(col=np.array([b"a", b"b", OTHER.encode()]))
    ds["prompt"] = ("row", np.array([b"x", "é".encode(), b"z"]))
    back = read_log(write_raw(tmp_path / "bytes.nc", ds))
    assert [type(c) for c in back["col"].values] == [str, str, str]
    assert list(back["col"].values) == ["a", "b", OTHER] and list(back["prompt"].values) == ["x", "é", "z"]
    ds["prompt"] = ("row", np.array([b"x", b"\xff", b"z"]))
    with pytest.raises(InputError, match=r"bytes.nc: field 'prompt', row 1: holds bytes that are not UTF-8"):
        read_log(write_raw(tmp_path / "bytes.nc", ds))


@pytest.mark.parametrize("prompt", ["a\x00b", "\ud800"])
def test_prompts_netcdf_cannot_store_are_refused_naming_the_row(prompt):
    with pytest.raises(InputError, match=r"field 'prompt', row 1: holds a NUL or a character UTF-8 cannot store"):
        small_log(prompt=["x", prompt, "z"])


def test_a_schema_attribute_that_is_not_text_is_one_input_error(tmp_path):
    ds = small_log()
    ds.attrs["schema"] = np.array([1, 2])
    with pytest.raises(InputError, match="field 'schema'"):
        read_log(write_raw(tmp_path / "schema.nc", ds))
