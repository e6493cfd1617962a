"""Several devices: rows sharded over a mesh give the same ELBO as one device; chains go one per device.

The device count flag must be set before JAX starts, so the four-device checks
run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
The in-process tests use the two host devices that tests/conftest.py asks for.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from bayesmatrix.inference.sharding import row_mesh, shard_rows, split_data
from bayesmatrix.models.sufficient import count_statistics

ROOT = Path(__file__).resolve().parents[2]


def test_split_data_passes_arrays_and_keeps_options_static():
    statistics = count_statistics(np.array([[1, 2], [0, 3]]))
    kwargs = {"probs": np.ones((4, 2)), "num_cols": 2, "observe": ("probs",), "count_statistics": statistics,
              "batch_size": None, "epsilon": 1e-6}  # fmt: skip
    data, options = split_data(kwargs)
    assert set(data) == {"probs", "count_statistics"}
    assert options == {"num_cols": 2, "observe": ("probs",), "batch_size": None, "epsilon": 1e-6}


@pytest.mark.skipif(jax.device_count() < 2, reason="needs the two host devices of tests/conftest.py")
def test_rows_are_split_and_everything_else_replicated():
    mesh = row_mesh(jax.devices()[:2])
    kwargs = {"embedding": np.arange(12.0).reshape(6, 2), "probs": np.full((6, 3), 1 / 3), "bias": np.zeros(3),
              "num_cols": 3}  # fmt: skip
    placed = shard_rows(kwargs, mesh, num_rows=6)
    assert [shard.data.shape for shard in placed["embedding"].addressable_shards] == [(3, 2), (3, 2)]
    assert [shard.data.shape for shard in placed["bias"].addressable_shards] == [(3,), (3,)]
    np.testing.assert_array_equal(np.asarray(placed["embedding"]), kwargs["embedding"])
    assert placed["num_cols"] == 3
    with pytest.raises(ValueError, match="multiple of 2"):
        shard_rows({"probs": np.ones((5, 3))}, mesh, num_rows=5)


@pytest.mark.long  # fits in a process of four host devices: make test-long
def test_four_devices_same_elbo_sharded_and_parallel_chains():
    """The devices benchmark with tiny settings, in a fresh process with four host devices."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    argv = ["--no-chains", "--rows", "64", "--cols", "5", "--embed-dim", "8", "--rank", "2", "--batch-size", "16",
            "--steps", "20", "--json"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "benchmarks.devices", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["chain_method"] == "parallel"
    assert report["row_shards"] == [[16, 5]] * 4
    assert report["elbo_sharded"] == pytest.approx(report["elbo_one_device"], rel=1e-5)
    # the same keys draw the same minibatches: the minibatch SVI runs agree step by step
    assert report["svi_largest_loss_difference"] < 1e-4
