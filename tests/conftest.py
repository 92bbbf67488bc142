"""Suite-wide test set-up: 8 fake CPU devices, so every sharding test runs on a real mesh."""

import os

# Must happen before jax is first imported anywhere in the test process.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()


import pytest  # noqa: E402 - after the XLA flags, which must be set before anything imports jax


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """case → (a tiny random transformers model, the directory it was saved to); each built once per session."""
    from tests.nn_train.hf_oracle import build_hf_model

    built = {}

    def get(case: str):
        if case not in built:
            model = build_hf_model(case)
            directory = tmp_path_factory.mktemp(case)
            model.save_pretrained(directory)
            built[case] = (model, directory)
        return built[case]

    return get
