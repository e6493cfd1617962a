"""Shared test set-up: two host devices for JAX, so parallel chains are exercised on CPU.

The flag must be set before JAX initialises, which is why it lives here.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
