"""Data for compiled steps and across devices: arguments split from options, rows sharded over a mesh.

README, "Performance and scale": inference scales across devices and hosts with
JAX's own runtime. Chains go one per device (``inference.runtime``); for SVI
the rows of the data are split over a one-axis :class:`jax.sharding.Mesh`
(``NamedSharding`` with ``PartitionSpec("row")``) and XLA partitions every
per-row computation of the jitted step accordingly, gathering minibatches and
summing log-likelihoods across devices. The ELBO is the same number as on one
device, up to the order of floating-point sums.

Data must reach a jitted function as arguments (:func:`split_data`): an array
closed over by the function becomes a constant of the compiled program, which
makes compilation time and memory grow with the data and loses its sharding.

Several hosts: call ``jax.distributed.initialize()`` on each first; the mesh
of :func:`row_mesh` then spans every device of every host.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def _is_data(value: Any) -> bool:
    import jax

    leaves = jax.tree.leaves(value)
    return bool(leaves) and all(isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves)


def split_data(model_kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, options)``: the arrays (and pytrees of arrays) a jitted step should take as arguments,
    and the Python values (sizes, flags, ``observe``) the model branches on, which stay static."""
    data = {name: value for name, value in model_kwargs.items() if _is_data(value)}
    options = {name: value for name, value in model_kwargs.items() if name not in data}
    return data, options


def row_mesh(devices: Sequence[Any] | None = None):
    """A one-axis mesh named ``row`` over ``devices`` (default: every device JAX sees, on every host)."""
    import jax
    from jax.sharding import Mesh

    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), ("row",))


def shard_rows(model_kwargs: Mapping[str, Any], mesh, num_rows: int) -> dict[str, Any]:
    """``model_kwargs`` with every array whose leading axis has ``num_rows`` entries split over the
    mesh's ``row`` axis, and every other array replicated on each device; options are left as they are.

    ``num_rows`` must be a multiple of the number of devices (drop or add rows first): each
    device holds an equal block of rows.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    devices = mesh.devices.size
    if num_rows % devices:
        raise ValueError(f"{num_rows} rows do not split evenly over {devices} devices; use a multiple of {devices}")
    by_row, replicated = NamedSharding(mesh, PartitionSpec("row")), NamedSharding(mesh, PartitionSpec())
    data, options = split_data(model_kwargs)

    def place(leaf):
        per_row = np.ndim(leaf) >= 1 and np.shape(leaf)[0] == num_rows
        return jax.device_put(leaf, by_row if per_row else replicated)

    return {**options, **{name: jax.tree.map(place, value) for name, value in data.items()}}
