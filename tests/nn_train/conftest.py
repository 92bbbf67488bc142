"""Shared set-up for model tests: exact float32 matmuls and a compilation cache (the tiny Hugging Face
oracles are the suite-wide hf_checkpoints fixture in tests/conftest.py)."""

from __future__ import annotations

import jax

from tests.nn_train.hf_oracle import REPO_ROOT

# float32 parity needs full-precision matmuls (CPU XLA may otherwise use faster, looser ones).
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_compilation_cache_dir", str(REPO_ROOT / ".cache" / "jax"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
