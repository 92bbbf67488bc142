"""The shared decoder: packing isolates segments, remat and dtype policies, per-token log-probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn_train.models import create_model, get_config, token_log_probs
from nn_train.models.hf_checkpoint import load_hf_model
from tests.nn_train.hf_oracle import forward, hf_logits, random_tokens


@pytest.mark.parametrize("preset", ["qwen3_tiny", "llama3_tiny"])
def test_two_packed_segments_equal_two_separate_rows(preset):
    model = create_model(get_config(preset), seed=0)
    first, second = random_tokens(1, 13, seed=1)[0], random_tokens(1, 19, seed=2)[0]
    packed = np.concatenate([first, second])[None]
    positions = np.concatenate([np.arange(13), np.arange(19)])[None]
    segment_ids = np.concatenate([np.full(13, 1), np.full(19, 2)])[None]
    logits = forward(model, packed, positions, segment_ids)
    alone_first = forward(model, first[None])
    alone_second = forward(model, second[None])
    np.testing.assert_allclose(logits[0, :13], alone_first[0], atol=1e-5)
    np.testing.assert_allclose(logits[0, 13:], alone_second[0], atol=1e-5)
    # Without segment ids the second document would see the first: the test can tell.
    leaky = forward(model, packed, positions)
    assert np.abs(leaky[0, 13:] - alone_second[0]).max() > 1e-3


def test_packed_rows_match_transformers_run_separately(hf_checkpoints):
    hf_model, directory = hf_checkpoints("llama_gqa4_tied_llama3_rope")
    ours = load_hf_model(directory)
    first, second = random_tokens(1, 21, seed=3), random_tokens(1, 27, seed=4)
    packed = np.concatenate([first, second], axis=1)
    positions = np.concatenate([np.arange(21), np.arange(27)])[None]
    segment_ids = np.concatenate([np.full(21, 1), np.full(27, 2)])[None]
    logits = forward(ours, packed, positions, segment_ids)
    assert np.abs(logits[:, :21] - hf_logits(hf_model, first)).max() < 1e-4
    assert np.abs(logits[:, 21:] - hf_logits(hf_model, second)).max() < 1e-4


def _loss_and_grads(model, tokens):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params):
        logits = nnx.merge(graphdef, params)(tokens[:, :-1])
        return -token_log_probs(logits, tokens[:, 1:]).mean()

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("remat", ["full", "save_dots"])
def test_remat_changes_memory_not_results(remat):
    tokens = jnp.asarray(random_tokens(2, 32) % 512)
    loss, grads = _loss_and_grads(create_model(get_config("qwen3_tiny"), seed=0), tokens)
    loss_r, grads_r = _loss_and_grads(create_model(get_config("qwen3_tiny", remat=remat), seed=0), tokens)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_r), jax.tree.leaves(grads)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bf16_params_and_compute():
    tokens = jnp.asarray(random_tokens(2, 16) % 512)
    f32 = create_model(get_config("qwen3_tiny"), seed=0)
    bf16 = create_model(get_config("qwen3_tiny", param_dtype="bfloat16", dtype="bfloat16"), seed=0)
    assert bf16.layers[0].attn.q_proj.kernel[...].dtype == jnp.bfloat16
    logits = forward(bf16, tokens)
    assert logits.dtype == np.float32  # logits come back in float32 for the loss
    assert np.abs(logits - forward(f32, tokens)).max() < 0.05


def test_token_log_probs_are_normalised_log_softmax():
    logits = jax.random.normal(jax.random.key(0), (2, 5, 7))
    targets = jnp.array([[0, 1, 2, 3, 4], [6, 5, 4, 3, 2]])
    log_probs = token_log_probs(logits, targets)
    expected = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), np.asarray(targets)[..., None], -1)[..., 0]
    np.testing.assert_allclose(log_probs, expected, rtol=1e-6)
    assert np.all(np.asarray(log_probs) < 0)
