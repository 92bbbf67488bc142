"""Shared set-up for model tests: exact float32 matmuls, a compilation cache, tiny Hugging Face oracles."""

from __future__ import annotations

import jax
import pytest

from tests.nn_train.hf_oracle import REPO_ROOT, build_hf_model

# float32 parity needs full-precision matmuls (CPU XLA may otherwise use faster, looser ones).
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_compilation_cache_dir", str(REPO_ROOT / ".cache" / "jax"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)



@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """case → (transformers model, directory it was saved to with save_pretrained); built once per session."""
    built = {}

    def get(case: str):
        if case not in built:
            model = build_hf_model(case)
            directory = tmp_path_factory.mktemp(case)
            model.save_pretrained(directory)
            built[case] = (model, directory)
        return built[case]

    return get
