"""Long rows. The attention kernels: blockwise equals dense (values and gradients) under every mask the model
builds, the model and its KV cache give the same logits whichever kernel runs, and the blockwise
kernel's compiled memory grows linearly in the row length while the dense one's grows as T². The
chunked loss equals the whole-row one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn_train.models import create_model, get_config
from nn_train.models.transformer import KVCache
from nn_train.models.attention import Mask, attend, available_backends, resolve_backend

TOL = 1e-5


def _qkv(b, t, s, n, k, h, seed=0, dtype=jnp.float32):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (jax.random.normal(keys[0], (b, t, n, h), dtype), jax.random.normal(keys[1], (b, s, k, h), dtype),
            jax.random.normal(keys[2], (b, s, k, h), dtype))


def _both(q, k, v, mask, block_size, weights):
    """(dense, blockwise) of the outputs and of the gradients of a weighted sum of them."""
    def run(backend):
        loss = lambda q, k, v: (attend(q, k, v, mask, backend=backend, block_size=block_size) * weights).sum()  # noqa: E731
        return attend(q, k, v, mask, backend=backend, block_size=block_size), jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
    return run("dense"), run("blockwise")


# several blocks, a ragged last block, one block
@pytest.mark.parametrize("n, k, block_size", [(4, 4, 8), (4, 2, 13), (4, 1, 64), (4, 2, 8)],
                         ids=["mha-8", "gqa-13", "mqa-64", "gqa-8"])
def test_blockwise_matches_dense_on_packed_rows(n, k, block_size):
    b, t, h = 2, 37, 16
    q, kk, v = _qkv(b, t, t, n, k, h)
    # row 0: two documents then padding; row 1: one document
    segments = jnp.array([[1] * 20 + [2] * 10 + [0] * 7, [1] * 37], jnp.int32)
    mask = Mask.packed(segments)
    weights = jax.random.normal(jax.random.PRNGKey(9), (b, t, n, h))
    (out_d, grads_d), (out_b, grads_b) = _both(q, kk, v, mask, block_size, weights)
    np.testing.assert_allclose(out_b, out_d, atol=TOL, rtol=0)
    for g_b, g_d in zip(grads_b, grads_d):
        np.testing.assert_allclose(g_b, g_d, atol=TOL, rtol=0)


def test_packing_isolates_documents():
    """A key of another document changes nothing: only the mask, not the kernel, decides that."""
    q, k, v = _qkv(1, 16, 16, 2, 1, 8)
    mask = Mask.packed(jnp.array([[1] * 8 + [2] * 8], jnp.int32))
    out = attend(q, k, v, mask, backend="blockwise", block_size=4)
    changed = attend(q, k.at[:, :8].multiply(3.0), v.at[:, :8].add(1.0), mask, backend="blockwise", block_size=4)
    np.testing.assert_array_equal(out[:, 8:], changed[:, 8:])
    assert not np.allclose(out[:, :8], changed[:, :8])


@pytest.mark.parametrize("length", [1, 9])  # a decode step and a prefill chunk
def test_blockwise_matches_dense_on_a_left_padded_cache(length):
    b, s, n, k, h = 3, 24, 4, 2, 16
    start = jnp.array([0, 5, 11], jnp.int32)
    index = jnp.array(12, jnp.int32)
    q, kk, v = _qkv(b, length, s, n, k, h, seed=1)
    mask = Mask.cache(start, index, length, s)
    weights = jax.random.normal(jax.random.PRNGKey(3), (b, length, n, h))
    (out_d, grads_d), (out_b, grads_b) = _both(q, kk, v, mask, 5, weights)
    np.testing.assert_allclose(out_b, out_d, atol=TOL, rtol=0)
    for g_b, g_d in zip(grads_b, grads_d):
        np.testing.assert_allclose(g_b, g_d, atol=TOL, rtol=0)
    # slots after the query's own are never attended: changing them changes nothing
    later = int(index) + length
    moved = attend(q, kk.at[:, later:].add(5.0), v.at[:, later:].add(5.0), mask, backend="blockwise", block_size=5)
    np.testing.assert_array_equal(moved, out_b)


def test_bfloat16_blockwise_is_close_to_dense():
    q, k, v = _qkv(2, 40, 40, 4, 2, 16, dtype=jnp.bfloat16)
    mask = Mask.packed(jnp.ones((2, 40), jnp.int32))
    dense = attend(q, k, v, mask, backend="dense").astype(jnp.float32)
    blockwise = attend(q, k, v, mask, backend="blockwise", block_size=16)
    assert blockwise.dtype == jnp.bfloat16
    np.testing.assert_allclose(blockwise.astype(jnp.float32), dense, atol=3e-2, rtol=0)


def test_auto_takes_blockwise_only_for_long_rows():
    assert resolve_backend("auto", 4096, 4096, 512) == "blockwise"
    assert resolve_backend("auto", 256, 256, 512) == "dense"
    assert resolve_backend("auto", 1, 4096, 512) == "dense"  # a decode step: [B, K, G, S] logits are small
    assert resolve_backend("dense", 4096, 4096, 512) == "dense"
    with pytest.raises(ValueError, match="attention backend 'flash' is not one of auto, dense, blockwise"):
        resolve_backend("flash", 8, 8, 4)


def test_model_config_names_a_bad_backend():
    with pytest.raises(ValueError, match="attention 'flash' is not one of auto, dense, blockwise"):
        get_config("qwen3_tiny", attention="flash")


def _models(block_size=8):
    """The same weights twice: with the dense kernel and with the blockwise one (several key blocks)."""
    dense = create_model(get_config("qwen3_tiny", attention="dense"), seed=0)
    blockwise = create_model(get_config("qwen3_tiny", attention="blockwise", attention_block_size=block_size), seed=0)
    return dense, blockwise


def test_model_logits_and_gradients_match_across_kernels():
    dense, blockwise = _models()
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, dense.config.vocab_size, (2, 30)), jnp.int32)
    segments = jnp.asarray([[1] * 12 + [2] * 14 + [0] * 4, [1] * 30], jnp.int32)
    positions = jnp.asarray([list(range(12)) + list(range(14)) + [0] * 4, list(range(30))], jnp.int32)

    def loss_and_grads(model):
        graphdef, params = nnx.split(model, nnx.Param)

        def loss(params):
            logits = nnx.merge(graphdef, params)(tokens, positions=positions, segment_ids=segments)
            return (jax.nn.log_softmax(logits)[..., 0] * (segments > 0)).sum(), logits

        (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return logits, grads

    logits_d, grads_d = loss_and_grads(dense)
    logits_b, grads_b = loss_and_grads(blockwise)
    real = np.asarray(segments > 0)
    np.testing.assert_allclose(np.asarray(logits_b)[real], np.asarray(logits_d)[real], atol=TOL, rtol=0)
    for g_b, g_d in zip(jax.tree.leaves(grads_b), jax.tree.leaves(grads_d)):
        np.testing.assert_allclose(g_b, g_d, atol=TOL, rtol=0)


def test_cache_prefill_and_decode_match_across_kernels():
    dense, blockwise = _models()
    rng = np.random.default_rng(1)
    prompts = jnp.asarray(rng.integers(0, dense.config.vocab_size, (2, 21)), jnp.int32)
    start = jnp.array([0, 6], jnp.int32)  # row 1 left-padded by 6
    step = jnp.asarray(rng.integers(0, dense.config.vocab_size, (2, 1)), jnp.int32)
    results = []
    for model in (dense, blockwise):
        cache = KVCache.init(model.config, batch=2, max_len=32, start=start)
        prefill, cache = model(prompts, cache=cache)
        decode, _ = model(step, cache=cache)
        results.append((prefill, decode))
    (prefill_d, decode_d), (prefill_b, decode_b) = results
    np.testing.assert_allclose(prefill_b[0], prefill_d[0], atol=TOL, rtol=0)
    np.testing.assert_allclose(prefill_b[1, 6:], prefill_d[1, 6:], atol=TOL, rtol=0)  # padding queries are junk in both
    np.testing.assert_allclose(decode_b, decode_d, atol=TOL, rtol=0)


def _temp_bytes(backend, length, block_size=128):
    q = jax.ShapeDtypeStruct((1, length, 4, 32), jnp.float32)
    kv = jax.ShapeDtypeStruct((1, length, 2, 32), jnp.float32)
    segments = jax.ShapeDtypeStruct((1, length), jnp.int32)
    loss = lambda q, k, v, s: attend(q, k, v, Mask.packed(s), backend=backend, block_size=block_size).sum()  # noqa: E731
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, kv, kv, segments).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_blockwise_memory_is_linear_in_row_length():
    """Compiled, not run: doubling the row doubles the blockwise kernel's temporaries and quadruples
    the dense kernel's (its [B, K, G*T, S] logits)."""
    blockwise = [_temp_bytes("blockwise", t) for t in (1024, 2048, 4096)]
    dense = [_temp_bytes("dense", t) for t in (1024, 2048, 4096)]
    for small, large in zip(blockwise, blockwise[1:]):
        assert 1.5 < large / small < 2.5, blockwise
    for small, large in zip(dense, dense[1:]):
        assert large / small > 3.5, dense
    assert dense[-1] > 8 * blockwise[-1]


def test_chunked_loss_matches_the_whole_row_loss():
    """target_log_probs a chunk of positions at a time (a ragged last chunk too) equals the
    whole-row log-probabilities, and so do the parameter gradients."""
    from nn_train.models import target_log_probs, token_log_probs

    model = create_model(get_config("qwen3_tiny"), seed=0)
    rng = np.random.default_rng(2)
    tokens = jnp.asarray(rng.integers(0, model.config.vocab_size, (2, 23)), jnp.int32)
    targets = jnp.roll(tokens, -1, axis=1)
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params, chunk):
        m = nnx.merge(graphdef, params)
        hidden = m.hidden_states(tokens)
        log_probs = target_log_probs(m, hidden, targets, chunk)
        return log_probs.sum(), log_probs

    (_, whole), grads_whole = jax.value_and_grad(loss, has_aux=True)(params, 0)
    (_, chunked), grads_chunked = jax.value_and_grad(loss, has_aux=True)(params, 5)
    np.testing.assert_allclose(whole, token_log_probs(model(tokens), targets), atol=TOL, rtol=0)
    np.testing.assert_allclose(chunked, whole, atol=TOL, rtol=0)
    for g_c, g_w in zip(jax.tree.leaves(grads_chunked), jax.tree.leaves(grads_whole)):
        np.testing.assert_allclose(g_c, g_w, atol=TOL, rtol=0)


def test_loss_chunks_hold_chunk_tokens_per_device():
    """A chunk spans chunk_tokens / (rows per device) positions: with the rows split over more
    data-parallel devices, each chunk covers more positions and the loop runs fewer times."""
    from nn_train.models import target_log_probs
    from nn_train.sharding import make_mesh

    model = create_model(get_config("qwen3_tiny"), seed=0)
    hidden = jnp.zeros((4, 16, model.config.embed_dim), jnp.float32)
    targets = jnp.zeros((4, 16), jnp.int32)

    def loop_lengths() -> list[int]:
        jaxpr = jax.make_jaxpr(lambda h: target_log_probs(model, h, targets, chunk_tokens=8))(hidden)
        return [eqn.params["length"] for eqn in jaxpr.jaxpr.eqns if eqn.primitive.name == "scan"]

    assert loop_lengths() == [8]  # 4 rows on one device: 2 positions per chunk
    with jax.set_mesh(make_mesh(data=2, fsdp=2, tensor=2)):
        assert loop_lengths() == [2]  # 1 row per device: 8 positions per chunk



# Splash is a TPU kernel; Pallas interpret mode runs the same kernel code on CPU.
@pytest.mark.parametrize("n, k, t", [(4, 4, 200), (4, 2, 300), (4, 1, 128)], ids=["mha-ragged", "gqa-3-blocks", "mqa-1-block"])
def test_splash_matches_dense_on_packed_rows(n, k, t):
    b, h = 3, 32
    q, kk, v = _qkv(b, t, t, n, k, h, seed=4)
    segments = np.ones((b, t), np.int32)
    segments[0, t // 3:] = 2  # two documents
    segments[1, t - 40:] = 0  # trailing padding
    segments[2] = np.repeat([1, 2, 3, 4], -(-t // 4))[:t]
    mask = Mask.packed(jnp.asarray(segments))
    weights = jax.random.normal(jax.random.PRNGKey(9), (b, t, n, h))

    def run(backend):
        out = lambda q, k, v: attend(q, k, v, mask, backend=backend, block_size=128, interpret=True)  # noqa: E731
        return out(q, kk, v), jax.grad(lambda *x: (out(*x) * weights).sum(), argnums=(0, 1, 2))(q, kk, v)

    (out_d, grads_d), (out_s, grads_s) = run("dense"), run("splash")
    np.testing.assert_allclose(out_s, out_d, atol=TOL, rtol=0)
    for g_s, g_d in zip(grads_s, grads_d):
        np.testing.assert_allclose(g_s, g_d, atol=5 * TOL, rtol=0)  # sums over ~300 keys in another order


def test_splash_under_a_mesh_splits_rows_and_heads():
    from nn_train.sharding import make_mesh

    q, kk, v = _qkv(4, 256, 256, 4, 2, 32, seed=5)
    segments = jnp.asarray(np.repeat([[1, 2], [1, 1], [3, 0], [1, 2]], 128, axis=1), jnp.int32)
    dense = attend(q, kk, v, Mask.packed(segments), backend="dense")
    run = jax.jit(lambda q, k, v, seg: attend(q, k, v, Mask.packed(seg), backend="splash", block_size=128, interpret=True))
    with jax.set_mesh(make_mesh(data=2, fsdp=2, tensor=2)):
        text = run.lower(q, kk, v, segments).as_text()
        out = run(q, kk, v, segments)
    assert "shard_map" in text or "manual" in text.lower()  # the kernel runs per device, not on gathered rows
    np.testing.assert_allclose(out, dense, atol=TOL, rtol=0)


def test_splash_needs_a_tpu_and_takes_packed_rows_only():
    assert "splash" in available_backends("tpu") and "splash" not in available_backends("cpu")
    with pytest.raises(ValueError, match=r"attention backend 'splash' needs a TPU; this platform \(cpu\) has: auto, dense, blockwise$"):
        resolve_backend("splash", 4096, 4096, 512)
    assert resolve_backend("auto", 4096, 4096, 512) == "blockwise"  # on CPU
    # a KV cache's attention is not packed self-attention: blockwise or dense, as auto would pick
    assert resolve_backend("splash", 9, 4096, 512, packed_rows=False, interpret=True) == "dense"
    assert resolve_backend("splash", 4096, 4096, 512, packed_rows=False, interpret=True) == "blockwise"
