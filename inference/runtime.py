"""JAX runtime set-up that must happen before JAX initialises: host devices and float64.

``numpyro.set_host_device_count`` and ``numpyro.enable_x64`` only take effect
when called before the first JAX computation, so the CLI calls
:func:`configure` first thing. In a process where JAX already runs (a notebook,
a test), chains fall back to running one after another on one device.
"""

from __future__ import annotations

import os


def configure(num_chains: int = 1, x64: bool = False, device: str = "cpu") -> None:
    """Ask XLA for one host device per chain (on CPU) and optionally switch on float64."""
    import numpyro

    if device == "cpu" and num_chains > 1:
        # Several host "devices" are threads of the one CPU; chains then run in
        # parallel through pmap. More devices than cores still works, just shares cores.
        numpyro.set_host_device_count(num_chains)
    numpyro.set_platform(device)
    if x64:
        numpyro.enable_x64()


def chain_method(num_chains: int) -> str:
    """'parallel' when there is a device per chain, else 'sequential' (never a warning)."""
    import jax

    return "parallel" if num_chains > 1 and jax.local_device_count() >= num_chains else "sequential"


def x64_enabled() -> bool:
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
