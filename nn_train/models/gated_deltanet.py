"""Gated DeltaNet: the linear-attention token mixer of Qwen3.5's "linear_attention" layers.

    mixer = GatedDeltaNet(config, rngs=rngs)
    y, state = mixer(x, docs)                             # training / prefill: the chunked form
    y, state = mixer(x, docs, state=state)                # continuing a row: decode (the recurrent form at T = 1)

Per head, the layer keeps a state matrix S [Dk, Dv] instead of a KV cache. Token t decays it by
exp(g_t) ≤ 1, then writes value v_t at key k_t with the delta rule (strength β_t ∈ (0, 1)):

    S_t = exp(g_t) S_{t-1} + β_t k_t (v_t - exp(g_t) S_{t-1}ᵀ k_t)ᵀ,        o_t = S_tᵀ q_t

with q, k L2-normalised (q also scaled by Dk^-½), g_t = -exp(A_log) · softplus(a_t + dt_bias) and
β_t = sigmoid(b_t). q, k, v come from one projection followed by a causal depthwise convolution
(kernel 4) and SiLU; the output goes through an RMSNorm gated by SiLU(z) and a final projection.
The numerics follow transformers' Qwen3_5GatedDeltaNet (its torch chunked and recurrent forms).

Two equivalent forms of the recurrence:
  recurrent  a scan over tokens: what one decode step runs (and the reference in tests);
  chunked    chunks of CHUNK_SIZE tokens: inside a chunk the delta-rule updates are solved at once
             (a unit lower-triangular solve, the WY/UT form) and only the chunk-to-chunk state
             passes through a scan, so training and prefill run as matmuls.

Documents. `docs` [B, T] labels which document each token belongs to (the segment ids of a
packed row, or real vs padding in a sampler row). Where the label changes, the state restarts from
zero and the convolution does not reach back across the boundary: packed documents never see each
other, as attention's segment mask guarantees for the full-attention layers. A `GDNState` carried
between calls holds the label of the last token it saw, so a continuation that stays in the same
document picks up where it stopped. (transformers has no packing here; for left-padded rows it
zeroes the padding, which gives the same outputs for the real tokens.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from nn_train.models.config import ModelConfig
from nn_train.models.layers import Dense, normal_init
from nn_train.sharding import map_row_shards, shard_activation

CHUNK_SIZE = 64  # tokens per chunk of the chunked form (transformers' and MaxText's choice)
L2_NORM_EPS = 1e-6


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GDNState:
    """What a Gated DeltaNet layer carries from one call to the next for each row."""

    conv: jax.Array  # [B, K-1, C]: the convolution's last K-1 inputs (the q|k|v projections)
    conv_docs: jax.Array  # [B, K-1] int32: their document labels (-1: nothing there yet)
    recurrent: jax.Array  # [B, Hv, Dk, Dv] float32: the state matrix per value head
    doc: jax.Array  # [B] int32: the document label of the last token folded into `recurrent`

    @classmethod
    def init(cls, config: ModelConfig, batch: int) -> "GDNState":
        """The empty state: no history, a zero state matrix, labels that match no document."""
        k = config.linear_conv_kernel_dim
        return cls(
            conv=jnp.zeros((batch, k - 1, config.linear_conv_dim), config.jnp_dtype),
            conv_docs=jnp.full((batch, k - 1), -1, jnp.int32),
            recurrent=jnp.zeros((batch, config.linear_num_value_heads, config.linear_key_head_dim,
                                 config.linear_value_head_dim), jnp.float32),
            doc=jnp.full((batch,), -1, jnp.int32),
        )


def l2_normalize(x: jax.Array) -> jax.Array:
    """x / sqrt(Σ x² + eps) over the last axis (the FLA kernels' convention, as transformers uses)."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + L2_NORM_EPS)


def causal_conv(x_btc: jax.Array, docs_bt: jax.Array, weight_kc: jax.Array, history_bkc: jax.Array,
                history_docs_bk: jax.Array) -> jax.Array:
    """Depthwise causal convolution: out[t] = Σ_j w[j] · x[t - (K-1) + j] over taps in t's document.
    `history` holds the K-1 inputs before x (zeros and label -1 when there are none)."""
    k = weight_kc.shape[0]
    t = x_btc.shape[1]
    window = jnp.concatenate([history_bkc.astype(x_btc.dtype), x_btc], axis=1)  # [B, K-1+T, C]
    window_docs = jnp.concatenate([history_docs_bk, docs_bt], axis=1)
    out = jnp.zeros(x_btc.shape, jnp.float32)
    for j in range(k):  # K = 4 taps: shifted multiply-adds, cheaper than a general convolution here
        tap = jax.lax.dynamic_slice_in_dim(window, j, t, axis=1)
        same_doc = jax.lax.dynamic_slice_in_dim(window_docs, j, t, axis=1) == docs_bt
        out = out + jnp.where(same_doc[..., None], tap.astype(jnp.float32) * weight_kc[j].astype(jnp.float32), 0.0)
    return out.astype(x_btc.dtype)


def _resets(docs_bt: jax.Array, previous_doc_b: jax.Array) -> jax.Array:
    """[B, T] bool: token t starts a new document (its label differs from the token before it)."""
    before = jnp.concatenate([previous_doc_b[:, None], docs_bt[:, :-1]], axis=1)
    return docs_bt != before


def recurrent_gated_delta_rule(q, k, v, g, beta, resets, state):
    """The recurrence token by token. q, k [B, T, H, Dk] (normalised, q scaled), v [B, T, H, Dv],
    g, beta [B, T, H], resets [B, T], state [B, H, Dk, Dv] → (out [B, T, H, Dv] float32, state)."""

    def step(s_bhkv, inputs):
        q_t, k_t, v_t, g_t, beta_t, reset_t = inputs
        keep = jnp.where(reset_t, 0.0, 1.0)[:, None, None, None]
        s_bhkv = s_bhkv * (jnp.exp(g_t)[..., None, None] * keep)
        predicted = jnp.einsum("bhkv,bhk->bhv", s_bhkv, k_t)
        delta = (v_t - predicted) * beta_t[..., None]
        s_bhkv = s_bhkv + k_t[..., :, None] * delta[..., None, :]
        return s_bhkv, jnp.einsum("bhkv,bhk->bhv", s_bhkv, q_t)

    time_major = lambda x: jnp.moveaxis(x.astype(jnp.float32), 1, 0)
    inputs = tuple(map(time_major, (q, k, v, g, beta))) + (jnp.moveaxis(resets, 1, 0),)
    state, out = jax.lax.scan(step, state.astype(jnp.float32), inputs)
    return jnp.moveaxis(out, 0, 1), state


def unit_lower_inverse(strict_lower: jax.Array) -> jax.Array:
    """(I + L)⁻¹ for strictly lower-triangular L [..., n, n] (n a power of two), by doubling: the
    inverses of the diagonal blocks of size s give those of size 2s through
    inv([[A, 0], [C, D]]) = [[A⁻¹, 0], [-D⁻¹ C A⁻¹, D⁻¹]], all blocks of a level at once (log₂ n
    levels of batched matmuls). Plain XLA ops rather than a triangular solve: XLA's CPU solve is a
    LAPACK call, and several running at once on the test suite's 8 fake CPU devices deadlock."""
    n = strict_lower.shape[-1]
    if n & (n - 1):
        raise ValueError(f"unit_lower_inverse needs a power-of-two size, got {n}")
    batch = strict_lower.shape[:-2]
    mm = lambda a, b: jnp.einsum("...ij,...jk->...ik", a, b, precision=jax.lax.Precision.HIGHEST)
    inverses = jnp.ones((*batch, n, 1, 1), strict_lower.dtype)  # the n diagonal 1 x 1 blocks
    size = 1
    while size < n:
        pairs = n // (2 * size)
        blocks = strict_lower.reshape(*batch, pairs, 2 * size, pairs, 2 * size)
        diagonal = jnp.einsum("...iaib->...iab", blocks)  # [..., pairs, 2s, 2s]: the diagonal blocks of size 2s
        coupling = diagonal[..., size:, :size]  # C of each pair
        top, bottom = inverses[..., 0::2, :, :], inverses[..., 1::2, :, :]
        corner = -mm(bottom, mm(coupling, top))
        inverses = jnp.concatenate([jnp.concatenate([top, jnp.zeros_like(corner)], axis=-1),
                                    jnp.concatenate([corner, bottom], axis=-1)], axis=-2)
        size *= 2
    return inverses[..., 0, :, :]


def chunked_gated_delta_rule(q, k, v, g, beta, resets, state, chunk_size: int = CHUNK_SIZE):
    """The same recurrence chunk by chunk (the module docstring); same arguments and results.

    Within a chunk, positions i ≥ j of the same document interact through the decay
    exp(G_i - G_j) (G the cumulative log decay). Documents are runs between resets: a position
    reads the state carried into its chunk only when no reset lies between the chunk's start and
    it, and only the chunk's last run writes the state carried out of it.
    """
    b, t, h, dk = k.shape
    pad = -t % chunk_size
    n = (t + pad) // chunk_size
    # Padding at the end: k = β = g = 0 write nothing and decay nothing, and start no document.
    pad_time = lambda x: jnp.pad(x.astype(jnp.float32), [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    q, k, v, g, beta = map(pad_time, (q, k, v, g, beta))
    run = jnp.cumsum(jnp.pad(resets, [(0, 0), (0, pad)]).astype(jnp.int32), axis=1)  # [B, T']: document index

    # [B, T', H, ...] → [B, N, H, C, ...]: chunks of C positions, heads before positions
    chunks = lambda x: jnp.moveaxis(x.reshape(b, n, chunk_size, *x.shape[2:]), 2, 3)
    q_bnhck = chunks(q)
    k_bnhck = chunks(k)
    v_bnhcv = chunks(v)
    g_bnhc = chunks(g)
    beta_bnhc = chunks(beta)
    run_bnc = run.reshape(b, n, chunk_size)
    # The document the carried-in state belongs to: that of the token before each chunk.
    run_in_bn = jnp.concatenate([jnp.zeros((b, 1), jnp.int32), run_bnc[:, :-1, -1]], axis=1)

    cum_bnhc = jnp.cumsum(g_bnhc, axis=-1)
    causal = jnp.tril(jnp.ones((chunk_size, chunk_size), bool))
    same_run = (run_bnc[..., :, None] == run_bnc[..., None, :])[:, :, None] & causal  # [B, N, 1, C, C]
    gap = cum_bnhc[..., :, None] - cum_bnhc[..., None, :]
    decay_bnhcc = jnp.where(same_run, jnp.exp(jnp.where(same_run, gap, 0.0)), 0.0)  # exp(G_i - G_j), i ≥ j, same run

    reads_state = (run_bnc == run_in_bn[..., None])[:, :, None]  # [B, N, 1, C]
    writes_state = (run_bnc == run_bnc[..., -1:])[:, :, None]
    k_beta = k_bnhck * beta_bnhc[..., None]
    v_beta = v_bnhcv * beta_bnhc[..., None]
    # The UT system (I + strictly-lower(β k kᵀ ⊙ decay)) condenses the chunk's delta-rule updates.
    system = jnp.einsum("bnhik,bnhjk->bnhij", k_beta, k_bnhck) * decay_bnhcc
    inverse = unit_lower_inverse(jnp.where(causal & ~jnp.eye(chunk_size, dtype=bool), system, 0.0))
    solve = lambda rhs: jnp.einsum("...ij,...jd->...id", inverse, rhs, precision=jax.lax.Precision.HIGHEST)
    new_values = solve(v_beta)  # what each position writes, before the carried state's prediction is removed
    state_reads = solve(k_beta * (jnp.exp(cum_bnhc) * reads_state)[..., None])  # how much of it each predicts
    intra = jnp.einsum("bnhik,bnhjk->bnhij", q_bnhck, k_bnhck) * decay_bnhcc
    q_state = q_bnhck * (jnp.exp(cum_bnhc) * reads_state)[..., None]
    k_state = k_bnhck * (jnp.exp(cum_bnhc[..., -1:] - cum_bnhc) * writes_state)[..., None]
    carry_decay = jnp.exp(cum_bnhc[..., -1]) * reads_state[..., -1]  # [B, N, H]: 0 when the chunk ends in a new run

    def chunk_step(s_bhkv, xs):
        new_values_c, state_reads_c, intra_c, q_state_c, k_state_c, carry_decay_c = xs
        corrected = new_values_c - jnp.einsum("bhck,bhkv->bhcv", state_reads_c, s_bhkv)
        out = jnp.einsum("bhck,bhkv->bhcv", q_state_c, s_bhkv) + jnp.einsum("bhij,bhjv->bhiv", intra_c, corrected)
        s_bhkv = s_bhkv * carry_decay_c[..., None, None] + jnp.einsum("bhck,bhcv->bhkv", k_state_c, corrected)
        return s_bhkv, out

    chunk_major = lambda x: jnp.moveaxis(x, 1, 0)
    xs = tuple(map(chunk_major, (new_values, state_reads, intra, q_state, k_state, carry_decay)))
    state, out_nbhcv = jax.lax.scan(chunk_step, state.astype(jnp.float32), xs)
    out = jnp.moveaxis(out_nbhcv, 0, 1)  # [B, N, H, C, Dv]
    out = jnp.moveaxis(out, 2, 3).reshape(b, n * chunk_size, h, -1)[:, :t]
    return out, state


class GatedRMSNorm(nnx.Module):
    """RMSNorm over each head's values, then × SiLU(gate) (transformers' Qwen3_5RMSNormGated: a
    plain scale initialised to one, unlike the model's other, zero-centred norms)."""

    def __init__(self, dim: int, *, config: ModelConfig):
        self.eps = config.rms_norm_eps
        self.scale = nnx.Param(jnp.ones((dim,), config.jnp_param_dtype), logical_axes=("norm",))

    def __call__(self, x: jax.Array, gate: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = (x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)).astype(x.dtype)
        return (self.scale[...].astype(x.dtype) * normed * jax.nn.silu(gate.astype(jnp.float32))).astype(x.dtype)


class GatedDeltaNet(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, hv, dv = config.embed_dim, config.linear_num_value_heads, config.linear_value_head_dim
        self.config = config
        # q | k | v in one projection, as the checkpoint stores it: the convolution runs over all three.
        self.in_proj_qkv = Dense((d,), (config.linear_conv_dim,), ("embed", "linear_channels"), config=config, rngs=rngs)
        self.in_proj_z = Dense((d,), (hv, dv), ("embed", "linear_heads", "head_dim"), config=config, rngs=rngs)
        self.in_proj_b = Dense((d,), (hv,), ("embed", "linear_heads"), config=config, rngs=rngs)
        self.in_proj_a = Dense((d,), (hv,), ("embed", "linear_heads"), config=config, rngs=rngs)
        self.conv = nnx.Param(normal_init(rngs.params(), (config.linear_conv_kernel_dim, config.linear_conv_dim),
                                          config.jnp_param_dtype), logical_axes=("conv_taps", "linear_channels"))
        self.dt_bias = nnx.Param(jnp.ones((hv,), config.jnp_param_dtype), logical_axes=("linear_heads",))
        # transformers draws A uniformly in [0.01, 16]; A_log = log A.
        a = jax.random.uniform(rngs.params(), (hv,), jnp.float32, 0.01, 16.0)
        self.A_log = nnx.Param(jnp.log(a).astype(config.jnp_param_dtype), logical_axes=("linear_heads",))
        self.norm = GatedRMSNorm(dv, config=config)
        self.out_proj = Dense((hv, dv), (d,), ("linear_heads", "head_dim", "embed"), config=config, rngs=rngs)

    def __call__(self, x: jax.Array, docs: jax.Array, state: GDNState | None = None) -> tuple[jax.Array, GDNState]:
        """x [B, T, D], docs [B, T] int (module docstring) → (y [B, T, D], the state after the last token).

        One token with a carried state runs the recurrent form; anything longer the chunked one
        (what transformers does too)."""
        cfg = self.config
        b, t, _ = x.shape
        hk, hv = cfg.linear_num_key_heads, cfg.linear_num_value_heads
        dk, dv = cfg.linear_key_head_dim, cfg.linear_value_head_dim
        docs = docs.astype(jnp.int32)
        if state is None:
            state = GDNState.init(cfg, b)
        qkv = self.in_proj_qkv(x)  # [B, T, C]
        mixed = jax.nn.silu(causal_conv(qkv, docs, self.conv[...], state.conv, state.conv_docs).astype(jnp.float32))
        q, k, v = jnp.split(mixed, [hk * dk, 2 * hk * dk], axis=-1)
        q = l2_normalize(q.reshape(b, t, hk, dk)) * dk ** -0.5
        k = l2_normalize(k.reshape(b, t, hk, dk))
        v = v.reshape(b, t, hv, dv)
        if hv != hk:  # each query/key head serves hv // hk consecutive value heads
            q, k = (jnp.repeat(y, hv // hk, axis=2) for y in (q, k))
        beta = jax.nn.sigmoid(self.in_proj_b(x).astype(jnp.float32))
        g = -jnp.exp(self.A_log[...].astype(jnp.float32)) * jax.nn.softplus(
            self.in_proj_a(x).astype(jnp.float32) + self.dt_bias[...].astype(jnp.float32))
        resets = _resets(docs, state.doc)
        rule = recurrent_gated_delta_rule if t == 1 else chunked_gated_delta_rule
        out_bthv, recurrent = map_row_shards(rule, q, k, v, g, beta, resets, state.recurrent)
        out_bthv = shard_activation(out_bthv.astype(cfg.jnp_dtype), ("act_batch", "act_length", "act_linear_heads", "act_head_dim"))
        y = self.out_proj(self.norm(out_bthv, self.in_proj_z(x)))

        k_hist = cfg.linear_conv_kernel_dim - 1
        window = jnp.concatenate([state.conv.astype(qkv.dtype), qkv], axis=1)[:, -k_hist:]
        window_docs = jnp.concatenate([state.conv_docs, docs], axis=1)[:, -k_hist:]
        new_state = GDNState(conv=window.astype(state.conv.dtype), conv_docs=window_docs, recurrent=recurrent, doc=docs[:, -1])
        return y, new_state
