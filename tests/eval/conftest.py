"""Shared set-up for the evaluation tests: exact float32 matmuls, the compilation cache, and one
tiny tokenizer, model and sampler for the whole session (compiling dominates on 2 cores)."""

from __future__ import annotations

import jax
import pytest

from tests.nn_train.hf_oracle import REPO_ROOT

# float32 parity needs full-precision matmuls (CPU XLA may otherwise use faster, looser ones).
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_compilation_cache_dir", str(REPO_ROOT / ".cache" / "jax"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# Text with many blank lines, so "\n\n" is one token and an option starting with "\n" merges
# with the "\n" that ends the chat template's generation prompt.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.\n\nIt was a sunny day in Paris, and the race began.\n\n",
    "Who won the men's 100m at Paris 2024?\n\nNoah Lyles won the race, by five thousandths of a second.\n\n",
    "Hello world, how are you today?\n\nI am fine, thanks. Ed Sheeran played the guitar.\n\n",
] * 20
VOCAB = 320


@pytest.fixture(scope="session")
def tokenizer():
    from data_gen.tokenizer import train_tokenizer

    tok = train_tokenizer(CORPUS, VOCAB)
    assert len(tok) == VOCAB
    return tok


@pytest.fixture(scope="session")
def tiny_model():
    from nn_train.models import create_model, get_config

    return create_model(get_config("qwen3_tiny", vocab_size=VOCAB), seed=0)


@pytest.fixture(scope="session")
def sampler(tiny_model, tokenizer):
    from eval.sampler import Sampler

    return Sampler(tiny_model, tokenizer, batch_size=8, name="tiny")
