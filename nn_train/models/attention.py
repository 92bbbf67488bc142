"""Softmax attention with grouped-query heads: one entry point, the kernel chosen by config.

    out_btnh = attend(q_btnh, k_bskh, v_bskh, mask, backend="auto", block_size=512)

Backends:
  dense      the [B, K, G·T, S] float32 logits materialised at once: fastest for short rows, but
             memory grows as T·S, so a 10k-token row of an 8B model does not fit;
  blockwise  online softmax over key blocks of `block_size` (FlashAttention's recurrence in plain
             XLA, so it runs on every platform) with a custom backward pass that recomputes each
             block from the saved log-sum-exp: memory grows as T·block_size, linear in T;
  splash     on TPU, the Pallas Splash kernel (jax.experimental.pallas.ops.tpu.splash_attention):
             causal and segment masks by block, fully masked blocks skipped, GQA native; rows are
             split over the mesh with shard_map (batch over data × fsdp, heads over tensor). It
             takes packed rows (training, scoring); KV-cache attention stays on blockwise/dense;
  auto       splash on TPU and blockwise elsewhere once both the queries and the keys span more
             than one block (the T² case), dense otherwise (decode steps, the testbed's 256-token rows).

A backend this platform lacks (splash off TPU) is a one-line error naming the ones it has; the
Splash kernel's parity with dense is tested on CPU in Pallas interpret mode (`interpret=True`).

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
import math

import jax
import jax.numpy as jnp

BACKENDS = ("auto", "dense", "blockwise", "splash")
_SPLASH_MIN_BLOCK = 128  # the TPU lane width: Splash block sizes are multiples of it
_NEG = jnp.finfo(jnp.float32).min


@functools.partial(jax.tree_util.register_dataclass, data_fields=["q_segments", "kv_segments", "q_slots", "kv_slots"],
                   meta_fields=["packed_rows"])
@dataclasses.dataclass(frozen=True)
class Mask:
    """Query t of row b may attend key s iff q_segments[b, t] == kv_segments[b, s] and
    kv_slots[s] <= q_slots[b, t]."""

    q_segments: jax.Array  # [B, T] int32
    kv_segments: jax.Array  # [B, S] int32
    q_slots: jax.Array  # [B, T] int32: each query's position on the key axis
    kv_slots: jax.Array  # [S] int32
    packed_rows: bool = False  # static: self-attention over packed rows (slots = positions 0..T-1), as Splash takes

    @classmethod
    def packed(cls, segment_ids: jax.Array) -> "Mask":
        """Self-attention over rows of packed segments [B, T] (0 = padding): causal within a segment."""
        b, t = segment_ids.shape
        slots = jnp.arange(t, dtype=jnp.int32)
        return cls(segment_ids, segment_ids, jnp.broadcast_to(slots, (b, t)), slots, packed_rows=True)

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


def available_backends(platform: str | None = None) -> tuple[str, ...]:
    """The backends this platform (default: JAX's default backend) runs."""
    platform = platform or jax.default_backend()
    return BACKENDS if platform == "tpu" else tuple(b for b in BACKENDS if b != "splash")


def check_available(backend: str) -> None:
    """A one-line ValueError unless this platform runs `backend`."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if backend not in available_backends():
        raise ValueError(f"attention backend '{backend}' needs a TPU; this platform ({jax.default_backend()}) has: "
                         f"{', '.join(available_backends())}")


def resolve_backend(backend: str, query_len: int, key_len: int, block_size: int, *, packed_rows: bool = True,
                    interpret: bool = False) -> str:
    """The kernel `attend` runs for `backend` on this platform; an unavailable one is a one-line error."""
    if not (backend == "splash" and interpret):
        check_available(backend)
    has = available_backends()
    long_rows = query_len > block_size and key_len > block_size
    if backend == "auto":
        backend = "splash" if long_rows and packed_rows and "splash" in has else "blockwise" if long_rows else "dense"
    if backend == "splash" and not packed_rows:  # a KV cache: Splash takes packed self-attention only
        return "blockwise" if long_rows else "dense"
    return backend


def attend(q_btnh: jax.Array, k: jax.Array, v: jax.Array, mask: Mask, *, backend: str = "auto",
           block_size: int = 512, interpret: bool = False, kv_layout: str = "bskh") -> jax.Array:
    """Grouped-query attention, out [B, T, N, H] in v's dtype; logits and softmax in float32.

    k, v: [B, S, K, H] (kv_layout="bskh", as the projections make them) or [B, K, S, H] ("bksh",
    the KV cache's layout: the kernels' own, so a decode step reads the cache without copying it).
    The G query heads of a kv head are folded into the query axis ([B, K, G·T, H]), so both products
    are plain batched matmuls over (B, K), the layout XLA runs fastest on every backend.
    `interpret` runs the Splash kernel in Pallas interpret mode (any platform; for tests).
    """
    if kv_layout not in ("bskh", "bksh"):
        raise ValueError(f"kv_layout '{kv_layout}' is not 'bskh' or 'bksh'")
    k_bksh, v_bksh = (k, v) if kv_layout == "bksh" else (k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
    b, t, n, h = q_btnh.shape
    k, s = k_bksh.shape[1], k_bksh.shape[2]
    kernel = resolve_backend(backend, t, s, block_size, packed_rows=mask.packed_rows, interpret=interpret)
    if kernel == "splash":
        return _splash(q_btnh, k_bksh.transpose(0, 2, 1, 3), v_bksh.transpose(0, 2, 1, 3), mask.q_segments, block_size, interpret)
    g = n // k
    q_bkqh = q_btnh.reshape(b, t, k, g, h).transpose(0, 2, 3, 1, 4).reshape(b, k, g * t, h)  # query row = g·T + t
    q_segments = jnp.tile(mask.q_segments, (1, g))  # [B, G·T], matching the folded rows
    q_slots = jnp.tile(mask.q_slots, (1, g))
    scale = h**-0.5
    if kernel == "dense":
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


# ---------------------------------------------------------------------------------------------
# Splash (TPU): the Pallas kernel over packed rows, split over the mesh with shard_map


def _splash(q_btnh, k_bskh, v_bskh, segments_bt, block_size: int, interpret: bool) -> jax.Array:
    from jax.sharding import PartitionSpec as P

    b, t, n, h = q_btnh.shape
    k = k_bskh.shape[2]
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return _splash_rows(q_btnh, k_bskh, v_bskh, segments_bt, block_size, interpret)
    sizes = dict(mesh.shape)
    from nn_train.sharding import batch_axes

    data_axes = batch_axes(mesh)
    rows = data_axes if data_axes and b % math.prod(sizes[a] for a in data_axes) == 0 else None
    tensor = sizes.get("tensor", 1)
    heads = "tensor" if tensor > 1 and n % tensor == 0 and k % tensor == 0 else None
    spec = P(rows, None, heads, None)
    run = functools.partial(_splash_rows, block_size=block_size, interpret=interpret)
    return jax.shard_map(run, mesh=mesh, in_specs=(spec, spec, spec, P(rows, None)), out_specs=spec,
                         check_vma=False)(q_btnh, k_bskh, v_bskh, segments_bt)


def _splash_rows(q_btnh, k_bskh, v_bskh, segments_bt, block_size: int, interpret: bool) -> jax.Array:
    """Splash over this device's rows: [B, T, N, H] with causal attention within segments."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash

    b, t, n, h = q_btnh.shape
    block = min(_round_up(block_size, _SPLASH_MIN_BLOCK), _round_up(t, _SPLASH_MIN_BLOCK))
    padded = _round_up(t, block)
    pad = lambda x: jnp.pad(x, ((0, 0), (0, padded - t)) + ((0, 0),) * (x.ndim - 2))  # noqa: E731
    # Splash does not scale the logits; heads first per row. Padding tokens share segment 0 with
    # the row's own padding, so no query is left without a key.
    q_bnth = pad(q_btnh * jnp.asarray(h**-0.5, q_btnh.dtype)).transpose(0, 2, 1, 3)
    k_bkth, v_bkth = (pad(x).transpose(0, 2, 1, 3) for x in (k_bskh, v_bskh))
    segments = pad(segments_bt)
    kernel = _splash_kernel(n, padded, block, interpret)
    out_bnth = jax.vmap(lambda q, k, v, seg: kernel(q, k, v, segment_ids=splash.SegmentIds(q=seg, kv=seg)))(
        q_bnth, k_bkth, v_bkth, segments)
    return out_bnth.transpose(0, 2, 1, 3)[:, :t].astype(v_bskh.dtype)


@functools.lru_cache(maxsize=64)
def _splash_kernel(num_heads: int, length: int, block: int, interpret: bool):
    """The causal Splash kernel for rows of `length` (its block-sparsity tables are built once)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

    causal = splash_mask.MultiHeadMask([splash_mask.CausalMask((length, length)) for _ in range(num_heads)])
    sizes = splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                              block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    return splash.make_splash_mha(causal, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple
