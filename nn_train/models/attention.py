"""Softmax attention with grouped-query heads: one entry point, the kernel chosen by config.

    out_btnh = attend(q_btnh, k_bskh, v_bskh, mask, backend="auto", block_size=512)

Backends:
  dense      the [B, K, G·T, S] float32 logits materialised at once: fastest for short rows, but
             memory grows as T·S, so a 10k-token row of an 8B model does not fit;
  blockwise  online softmax over key blocks of `block_size` (FlashAttention's recurrence in plain
             XLA, so it runs on every platform) with a custom backward pass that recomputes each
             block from the saved log-sum-exp: memory grows as T·block_size, linear in T;
  auto       blockwise once both the queries and the keys span more than one block (the T² case),
             dense otherwise (decode steps, the testbed's 256-token rows).

A `Mask` describes which keys each query may see without materialising [B, T, S]: a query attends
a key of the same segment whose slot is not after its own. Training rows are causal within their
packed segments (Mask.packed); a KV cache's rows are left-padded, slots before a row's start never
attended (Mask.cache). Every backend takes the same Mask, so packing, left padding and GQA behave
alike whichever runs; the blockwise backend equals the dense one to float32 rounding
(tests/nn_train/test_attention.py).

Queries with no visible key at all (left-padding queries of a cache) get junk in both backends
(dense: a uniform average, blockwise: zeros); nothing reads them.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

BACKENDS = ("auto", "dense", "blockwise")
_NEG = jnp.finfo(jnp.float32).min


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Mask:
    """Query t of row b may attend key s iff q_segments[b, t] == kv_segments[b, s] and
    kv_slots[s] <= q_slots[b, t]."""

    q_segments: jax.Array  # [B, T] int32
    kv_segments: jax.Array  # [B, S] int32
    q_slots: jax.Array  # [B, T] int32: each query's position on the key axis
    kv_slots: jax.Array  # [S] int32

    @classmethod
    def packed(cls, segment_ids: jax.Array) -> "Mask":
        """Self-attention over rows of packed segments [B, T] (0 = padding): causal within a segment."""
        b, t = segment_ids.shape
        slots = jnp.arange(t, dtype=jnp.int32)
        return cls(segment_ids, segment_ids, jnp.broadcast_to(slots, (b, t)), slots)

    @classmethod
    def cache(cls, start: jax.Array, index: jax.Array, length: int, max_len: int) -> "Mask":
        """`length` new tokens at slots [index, index + length) of a left-padded cache of `max_len`
        slots: each sees slots [start[b], its own slot]."""
        b = start.shape[0]
        kv_slots = jnp.arange(max_len, dtype=jnp.int32)
        q_slots = jnp.broadcast_to(index + jnp.arange(length, dtype=jnp.int32), (b, length))
        kv_segments = (kv_slots[None, :] >= start[:, None]).astype(jnp.int32)  # 1: a real token, 0: padding
        return cls(jnp.ones((b, length), jnp.int32), kv_segments, q_slots, kv_slots)

    def allowed(self) -> jax.Array:
        """[B, T, S] bool: the dense mask."""
        return _allowed(self.q_segments, self.q_slots, self.kv_segments, self.kv_slots)


def _allowed(q_segments, q_slots, kv_segments, kv_slots) -> jax.Array:
    """q_* [B, Q], kv_segments [B, S], kv_slots [S] -> [B, Q, S]."""
    same = q_segments[:, :, None] == kv_segments[:, None, :]
    return same & (kv_slots[None, None, :] <= q_slots[:, :, None])


def resolve_backend(backend: str, query_len: int, key_len: int, block_size: int) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"attention backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "blockwise" if query_len > block_size and key_len > block_size else "dense"
    return backend


def attend(q_btnh: jax.Array, k_bskh: jax.Array, v_bskh: jax.Array, mask: Mask, *, backend: str = "auto",
           block_size: int = 512) -> jax.Array:
    """Grouped-query attention, out [B, T, N, H] in v's dtype; logits and softmax in float32.

    The G query heads of a kv head are folded into the query axis ([B, K, G·T, H]), so both products
    are plain batched matmuls over (B, K), the layout XLA runs fastest on every backend.
    """
    b, t, n, h = q_btnh.shape
    s, k = k_bskh.shape[1], k_bskh.shape[2]
    g = n // k
    q_bkqh = q_btnh.reshape(b, t, k, g, h).transpose(0, 2, 3, 1, 4).reshape(b, k, g * t, h)  # query row = g·T + t
    k_bksh = k_bskh.transpose(0, 2, 1, 3)
    v_bksh = v_bskh.transpose(0, 2, 1, 3)
    q_segments = jnp.tile(mask.q_segments, (1, g))  # [B, G·T], matching the folded rows
    q_slots = jnp.tile(mask.q_slots, (1, g))
    scale = h**-0.5
    if resolve_backend(backend, t, s, block_size) == "dense":
        out_bkqh = _dense(q_bkqh, k_bksh, v_bksh, _allowed(q_segments, q_slots, mask.kv_segments, mask.kv_slots), scale)
    else:
        out_bkqh = _blockwise(q_bkqh, k_bksh, v_bksh, q_segments, q_slots, mask.kv_segments, mask.kv_slots, scale, block_size)
    return out_bkqh.reshape(b, k, g, t, h).transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


def _dense(q_bkqh, k_bksh, v_bksh, allowed_bqs, scale) -> jax.Array:
    logits_bkqs = jnp.einsum("bkqh,bksh->bkqs", q_bkqh, k_bksh, preferred_element_type=jnp.float32) * scale
    logits_bkqs = jnp.where(allowed_bqs[:, None], logits_bkqs, _NEG)
    probs_bkqs = jax.nn.softmax(logits_bkqs, axis=-1).astype(v_bksh.dtype)
    return jnp.einsum("bkqs,bksh->bkqh", probs_bkqs, v_bksh)


# ---------------------------------------------------------------------------------------------
# Blockwise: online softmax over key blocks, backward recomputed per block


def _key_blocks(x_bks, block_size: int, fill) -> jax.Array:
    """[B, K, S, ...] -> [S / block, B, K, block, ...], the key axis padded with `fill` to whole blocks."""
    s = x_bks.shape[2]
    blocks = -(-s // block_size)
    pad = [(0, 0)] * x_bks.ndim
    pad[2] = (0, blocks * block_size - s)
    x = jnp.pad(x_bks, pad, constant_values=fill)
    x = x.reshape(x.shape[:2] + (blocks, block_size) + x.shape[3:])
    return jnp.moveaxis(x, 2, 0)


def _mask_blocks(kv_segments, kv_slots, block_size: int):
    """Key-side mask arrays by block: segments [nb, B, block] (padding -1: never equal to a query's
    segment, which is >= 0) and slots [nb, block]."""
    s = kv_slots.shape[0]
    blocks = -(-s // block_size)
    pad = blocks * block_size - s
    segments = jnp.pad(kv_segments, ((0, 0), (0, pad)), constant_values=-1).reshape(kv_segments.shape[0], blocks, block_size)
    slots = jnp.pad(kv_slots, (0, pad), constant_values=jnp.iinfo(jnp.int32).max).reshape(blocks, block_size)
    return jnp.moveaxis(segments, 1, 0), slots


def _block_probs(q_bkqh, k_blk, q_segments, q_slots, seg_blk, slot_blk, scale, lse=None):
    """One key block's logits [B, K, Q, block] and allowed mask; with `lse`, the probabilities."""
    logits = jnp.einsum("bkqh,bksh->bkqs", q_bkqh, k_blk, preferred_element_type=jnp.float32) * scale
    allowed = _allowed(q_segments, q_slots, seg_blk, slot_blk)[:, None]  # [B, 1, Q, block]
    if lse is None:
        return jnp.where(allowed, logits, _NEG), allowed
    return jnp.where(allowed, jnp.exp(logits - lse[..., None]), 0.0), allowed


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _blockwise(q_bkqh, k_bksh, v_bksh, q_segments, q_slots, kv_segments, kv_slots, scale, block_size):
    return _blockwise_forward(q_bkqh, k_bksh, v_bksh, q_segments, q_slots, kv_segments, kv_slots, scale, block_size)[0]


def _blockwise_forward(q_bkqh, k_bksh, v_bksh, q_segments, q_slots, kv_segments, kv_slots, scale, block_size):
    b, k, q, h = q_bkqh.shape
    k_blocks = _key_blocks(k_bksh, block_size, 0)
    v_blocks = _key_blocks(v_bksh, block_size, 0)
    seg_blocks, slot_blocks = _mask_blocks(kv_segments, kv_slots, block_size)

    def step(carry, block):
        running_max, total, acc = carry
        k_blk, v_blk, seg_blk, slot_blk = block
        logits, allowed = _block_probs(q_bkqh, k_blk, q_segments, q_slots, seg_blk, slot_blk, scale)
        new_max = jnp.maximum(running_max, logits.max(axis=-1))
        probs = jnp.where(allowed, jnp.exp(logits - new_max[..., None]), 0.0)
        rescale = jnp.exp(running_max - new_max)
        total = total * rescale + probs.sum(axis=-1)
        acc = acc * rescale[..., None] + jnp.einsum("bkqs,bksh->bkqh", probs.astype(v_blk.dtype), v_blk,
                                                    preferred_element_type=jnp.float32)
        return (new_max, total, acc), None

    init = (jnp.full((b, k, q), _NEG, jnp.float32), jnp.zeros((b, k, q), jnp.float32), jnp.zeros((b, k, q, h), jnp.float32))
    (running_max, total, acc), _ = jax.lax.scan(step, init, (k_blocks, v_blocks, seg_blocks, slot_blocks))
    seen = total > 0  # False only for a query that may attend no key at all
    out = (acc / jnp.where(seen, total, 1.0)[..., None]).astype(v_bksh.dtype)
    lse = jnp.where(seen, running_max + jnp.log(jnp.where(seen, total, 1.0)), 0.0)
    return out, (q_bkqh, k_bksh, v_bksh, q_segments, q_slots, kv_segments, kv_slots, out, lse)


def _blockwise_backward(scale, block_size, residuals, d_out):
    q_bkqh, k_bksh, v_bksh, q_segments, q_slots, kv_segments, kv_slots, out, lse = residuals
    s = k_bksh.shape[2]
    d_out = d_out.astype(jnp.float32)
    delta = (d_out * out.astype(jnp.float32)).sum(axis=-1)  # [B, K, Q]: rowsum(dO ∘ O)
    k_blocks = _key_blocks(k_bksh, block_size, 0)
    v_blocks = _key_blocks(v_bksh, block_size, 0)
    seg_blocks, slot_blocks = _mask_blocks(kv_segments, kv_slots, block_size)

    def step(d_q, block):
        k_blk, v_blk, seg_blk, slot_blk = block
        probs, _ = _block_probs(q_bkqh, k_blk, q_segments, q_slots, seg_blk, slot_blk, scale, lse)
        d_v = jnp.einsum("bkqs,bkqh->bksh", probs, d_out)
        d_probs = jnp.einsum("bkqh,bksh->bkqs", d_out, v_blk, preferred_element_type=jnp.float32)
        d_logits = probs * (d_probs - delta[..., None]) * scale
        d_q = d_q + jnp.einsum("bkqs,bksh->bkqh", d_logits, k_blk, preferred_element_type=jnp.float32)
        d_k = jnp.einsum("bkqs,bkqh->bksh", d_logits, q_bkqh, preferred_element_type=jnp.float32)
        return d_q, (d_k, d_v)

    d_q, (d_k, d_v) = jax.lax.scan(step, jnp.zeros(q_bkqh.shape, jnp.float32), (k_blocks, v_blocks, seg_blocks, slot_blocks))
    unblock = lambda x: jnp.moveaxis(x, 0, 2).reshape(x.shape[1], x.shape[2], -1, x.shape[-1])[:, :, :s]  # noqa: E731
    return (d_q.astype(q_bkqh.dtype), unblock(d_k).astype(k_bksh.dtype), unblock(d_v).astype(v_bksh.dtype),
            None, None, None, None)


_blockwise.defvjp(_blockwise_forward, _blockwise_backward)
