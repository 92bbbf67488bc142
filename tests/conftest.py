"""Suite-wide test set-up: 8 fake CPU devices, so every sharding test runs on a real mesh."""

import os

# Must happen before jax is first imported anywhere in the test process.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
