"""Property tests of every reader: random corruptions of valid LLM logs (their bytes and their fields),
JSONL responses and run folders give a clean read or one InputError line, never another exception, never
a hang (every input is small), and never a file written.

The readers run in-process. Examples are derandomized, so CI sees the same ones every run; the sizes
keep the whole file within about 30 s on one idle core.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesmatrix.cli import main
from bayesmatrix.data.errors import InputError
from bayesmatrix.data.importers import import_jsonl
from bayesmatrix.data.llm.checkpoint import Checkpoint
from bayesmatrix.data.llmlog import OTHER, make_log, read_log, validate_log, write_log
from bayesmatrix.inference.rundir import POSTERIOR_FILE, RUN_FILE, read_run, write_run_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_LINES = [
    line
    for name in ("openai_chat", "openai_completions", "vllm_chat", "vllm_completions")
    for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    if line.strip()
]
ROWS, COLS = 4, 3


def examples(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


def valid_log():
    rng = np.random.default_rng(0)
    context = np.cumsum(np.eye(COLS, dtype=np.int64)[[0, 1, 0, 1]], axis=0) - np.eye(COLS, dtype=np.int64)[[0, 1, 0, 1]]
    return make_log(
        rng.dirichlet(np.ones(COLS), size=ROWS),
        ["a", "b", OTHER],
        [4, 7, -1],
        model="test",
        task={"name": "coin"},
        prompt=["p0", "p1", "p2", "p3"],
        counts=rng.multinomial(3, [1 / COLS] * COLS, size=ROWS),
        context_counts=context,
        episode=np.zeros(ROWS, dtype=np.int64),
        embedding=rng.normal(size=(ROWS, 2)),
    )


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_one_line(error: InputError, file: str | None = None):
    assert "\n" not in str(error) and str(error).strip()
    if file is not None:
        assert error.file is not None and file in error.file


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readers")


@pytest.fixture(scope="module")
def log_bytes(folder) -> bytes:
    return write_log(valid_log(), folder / "valid.nc").read_bytes()


# --- LLM logs: bytes -----------------------------------------------------------------------------


@examples(60)
@given(
    edits=st.lists(st.tuples(st.integers(0, 2**16), st.binary(min_size=1, max_size=32)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 2**16)),
)
def test_a_log_with_damaged_bytes_reads_cleanly_or_is_one_input_error(folder, log_bytes, edits, cut):
    data = bytearray(log_bytes)
    for offset, garbage in edits:
        start = offset % len(data)
        data[start : start + len(garbage)] = garbage
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = folder / "damaged.nc"
    path.write_bytes(bytes(data))
    before = files_in(folder)
    try:
        ds = read_log(path)
    except InputError as error:
        assert_one_line(error, str(path))
    else:
        validate_log(ds, str(path))
    assert files_in(folder) == before


# --- LLM logs: fields ----------------------------------------------------------------------------

VARIABLES = ["probs", "counts", "context_counts", "episode", "position", "prompt", "embedding", "col_token_id", "col"]
ATTRIBUTE_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=True),
    st.lists(st.integers(-5, 5), min_size=1, max_size=3),
    st.sampled_from(["{", "[]", "null", "[" * 5000, '{"name": 1}', "bayesmatrix.llmlog/1", '"\\ud800"']),
)
BAD_NUMBERS = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.5, 2.0, 1e300, -1e300, 0.0])


@st.composite
def field_corruption(draw):
    kind = draw(st.sampled_from(["dtype", "drop", "attribute", "value", "transpose", "labels", "shape"]))
    name = draw(st.sampled_from(VARIABLES))
    if kind == "dtype":
        return kind, name, draw(st.sampled_from(["U3", "S3", "bool", "int8", "float32", "uint64", "float16"]))
    if kind == "attribute":
        return kind, draw(st.sampled_from(["schema", "task", "model", "created", "seed"])), draw(ATTRIBUTE_VALUES)
    if kind == "value":
        return kind, name, (draw(st.integers(0, ROWS - 1)), draw(st.integers(0, COLS - 1)), draw(BAD_NUMBERS))
    if kind == "labels":
        label = st.text(st.characters(blacklist_categories=("Cs",)), max_size=4)
        return kind, "col", draw(st.lists(st.one_of(label, st.just(OTHER)), min_size=COLS, max_size=COLS))
    return kind, name, None


def corrupt(ds, change):
    kind, name, detail = change
    ds = ds.copy(deep=True)
    if kind == "attribute":
        ds.attrs[name] = detail
        return ds
    if name not in ds.variables:
        return ds
    if kind == "drop":
        return ds.drop_vars(name)
    if kind == "transpose" and ds[name].ndim == 2:
        return ds.assign({name: (ds[name].dims[::-1], ds[name].values.T)}) if name not in ds.coords else ds
    if kind == "shape" and name not in ds.coords:
        values = np.asarray(ds[name].values)
        return ds.drop_vars(name).assign({name: ((f"flat_{name}",), values.ravel())})
    if kind == "labels":
        return ds.assign_coords(col=np.asarray(detail, dtype=object))
    values = np.array(ds[name].values)
    if kind == "dtype":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NaN cast to an integer: the corruption wanted
                values = values.astype(detail)
        except (ValueError, TypeError, OverflowError, UnicodeError):
            return ds
    elif kind == "value" and values.dtype.kind in "fiu":
        row, col, number = detail
        values = values.astype(np.float64)
        index = (row, col)[: values.ndim]
        values[tuple(i % size for i, size in zip(index, values.shape))] = number
    return ds.assign_coords({name: (ds[name].dims, values)}) if name in ds.coords else ds.assign(
        {name: (ds[name].dims, values)})


@examples(120)
@given(changes=st.lists(field_corruption(), min_size=1, max_size=3))
def test_a_log_with_corrupted_fields_reads_cleanly_or_is_one_input_error(folder, changes):
    ds = valid_log()
    for change in changes:
        ds = corrupt(ds, change)
    path = folder / "fields.nc"
    path.unlink(missing_ok=True)
    try:
        ds.to_netcdf(path, engine="netcdf4")
    except Exception:  # netCDF cannot store this corruption at all: nothing to read
        return
    before = files_in(folder)
    try:
        back = read_log(path)
    except InputError as error:
        assert_one_line(error, str(path))
    else:
        validate_log(back, str(path))
        assert all(isinstance(label, str) for label in back["col"].values)
    assert files_in(folder) == before


# --- JSONL responses -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
EXTREME_TEXT = st.sampled_from(
    ["[" * 100_000, "9" * 400, "-" + "9" * 5000, '"\\ud800"', "NaN", "-Infinity", "\x00", '{"choices": [}', "{}"]
)


def paths_of(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths_of(child, (*prefix, index))


@st.composite
def corrupted_line(draw) -> bytes:
    line = draw(st.sampled_from(FIXTURE_LINES))
    kind = draw(st.sampled_from(["replace", "delete", "text", "extreme", "bytes"]))
    if kind in ("replace", "delete"):
        record = json.loads(line)
        path = draw(st.sampled_from(list(paths_of(record))[1:]))
        parent = record
        for key in path[:-1]:
            parent = parent[key]
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.one_of(JSON_VALUES, EXTREME_TEXT.map(lambda text: {"raw": text})))
        return json.dumps(record).encode()
    if kind == "text":
        start = draw(st.integers(0, len(line)))
        stop = draw(st.integers(start, min(len(line), start + 20)))
        return (line[:start] + draw(st.text(max_size=8)) + line[stop:]).encode("utf-8", "surrogatepass")
    if kind == "extreme":
        return draw(EXTREME_TEXT).encode()
    return draw(st.binary(max_size=40))


@examples(150)
@given(lines=st.lists(st.one_of(corrupted_line(), st.sampled_from(FIXTURE_LINES).map(str.encode)), min_size=1,
                      max_size=3),  # fmt: skip
       options=st.fixed_dictionaries({"format": st.sampled_from(["auto", "openai-chat", "openai-completions", "vllm"]),
                                      "all_positions": st.booleans(), "topk": st.sampled_from([None, 1, 2])}))  # fmt: skip
def test_corrupted_jsonl_imports_cleanly_or_is_one_input_error(folder, lines, options):
    path = folder / "responses.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    before = files_in(folder)
    try:
        ds = import_jsonl(path, **options)
    except InputError as error:
        assert_one_line(error)
    else:
        validate_log(ds, "<imported>")
    assert files_in(folder) == before


@examples(15)
@given(line=corrupted_line())
def test_the_import_command_on_corrupted_jsonl_writes_a_log_or_nothing(folder, line):
    path = folder / "command.jsonl"
    path.write_bytes(line + b"\n")
    out = folder / "command.nc"
    out.unlink(missing_ok=True)
    status = main(["import", str(path), "--out", str(out)])
    assert status in (0, 2)
    assert out.exists() == (status == 0)
    if status == 0:
        read_log(out)


# --- run folders ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(folder) -> Path:
    import arviz_base as azb

    rng = np.random.default_rng(0)
    tree = azb.from_dict({"posterior": {"s": rng.gamma(2.0, size=(1, 5))}, "log_likelihood": {"probs": rng.normal(size=(1, 5, 3))}})
    info = {"model": "matrix", "method": "nuts", "options": {"observe": ["probs"]}, "data_sha256": "0" * 64,
            "columns": ["a", "b"], "data_file": "log.nc"}  # fmt: skip
    return write_run_dir(folder / "valid-run", tree, info)


@st.composite
def run_corruption(draw):
    target = draw(st.sampled_from([RUN_FILE, POSTERIOR_FILE]))
    kind = draw(st.sampled_from(["json", "key", "text", "bytes", "damage", "log", "empty"]))
    if kind == "json":
        return target, kind, json.dumps(draw(JSON_VALUES)).encode()
    if kind == "key":
        key = draw(st.sampled_from(["model", "method", "options", "columns", "data_sha256", "data_file"]))
        return target, kind, (key, draw(JSON_VALUES))
    if kind == "text":
        return target, kind, draw(st.one_of(st.text(max_size=20).map(str.encode), EXTREME_TEXT.map(str.encode)))
    if kind == "bytes":
        return target, kind, draw(st.binary(max_size=64))
    if kind == "damage":
        return target, kind, (draw(st.integers(0, 2**16)), draw(st.binary(min_size=1, max_size=32)))
    return target, kind, None


@examples(80)
@given(change=run_corruption())
def test_a_corrupted_run_folder_reads_cleanly_or_is_one_input_error(folder, run_folder, log_bytes, change):
    import shutil

    target, kind, detail = change
    run = folder / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(run_folder, run)
    file = run / target
    original = file.read_bytes()
    if kind == "key":
        info = json.loads((run / RUN_FILE).read_text())
        info[detail[0]] = detail[1]
        (run / RUN_FILE).write_text(json.dumps(info))
    elif kind == "damage":
        data = bytearray(original)
        start = detail[0] % len(data)
        data[start : start + len(detail[1])] = detail[1]
        file.write_bytes(bytes(data))
    elif kind == "log":
        file.write_bytes(log_bytes)
    elif kind == "empty":
        file.write_bytes(b"")
    else:
        file.write_bytes(detail)
    before = files_in(folder)
    try:
        back = read_run(run)
    except InputError as error:
        assert_one_line(error, str(run))
    else:
        assert isinstance(back.info, dict) and "posterior" in back.datatree.children
    assert files_in(folder) == before


# --- checkpoint folders --------------------------------------------------------------------------


@examples(40)
@given(
    manifest=st.one_of(st.none(), st.just("same"), JSON_VALUES.map(json.dumps), st.binary(max_size=20)),
    chunk=st.one_of(st.none(), st.binary(max_size=64), st.just("valid")),
)
def test_a_corrupted_checkpoint_folder_is_resumed_or_one_input_error(folder, manifest, chunk):
    import shutil

    partial = folder / "out.nc.partial"
    shutil.rmtree(partial, ignore_errors=True)
    checkpoint = Checkpoint(partial, {"seed": 0})
    checkpoint.open()
    if chunk == "valid":
        checkpoint.save("episodes", 0, {"probs": np.full((2, 3), 1 / 3)})
    elif chunk is not None:
        (partial / "episodes-000000.npz").write_bytes(chunk)
    if manifest is None:
        (partial / "manifest.json").unlink()
    elif manifest != "same":
        (partial / "manifest.json").write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    checkpoint.release()
    before = files_in(folder)
    again = Checkpoint(partial, {"seed": 0})
    try:
        again.check()
        loaded = again.load("episodes", 0)
    except InputError as error:
        assert_one_line(error, str(partial))
    else:
        assert loaded is None or set(loaded) == {"probs"}
    finally:
        again.release()
    assert files_in(folder) == before
    assert not os.path.exists(folder / "out.nc")
