"""The decoder-only transformer (Flax NNX) behind every family: Qwen3, Qwen3-MoE, Qwen3.5 and Llama 3.

    model = Transformer(config, rngs=nnx.Rngs(0))
    logits = model(tokens, positions=positions, segment_ids=segment_ids)   # [B, T, V] float32

Numerics follow the Hugging Face implementations exactly (RMSNorm in float32, rotate-half RoPE
with optional Llama 3 frequency scaling, SwiGLU MLP, grouped-query attention, per-head q/k
RMSNorm for Qwen3; for Qwen3.5 zero-centred norms, partial RoPE, an attention output gate and
Gated DeltaNet layers), so a converted checkpoint gives the same logits. Each layer's token mixer
is attention or Gated DeltaNet (config.layer_types, nn_train.models.gated_deltanet).

Packed sequences: `segment_ids` [B, T] label the documents packed into a row (0 = padding) and
`positions` [B, T] restart at 0 in each; attention is causal within a segment and never crosses
a segment boundary (nor does a Gated DeltaNet layer's state).

Every parameter carries logical axis names (Variable metadata `logical_axes`) and the model
constrains key activations with logical names; nn_train.sharding maps both onto the mesh.

Attention runs through nn_train.models.attention (config.attention: dense, or blockwise with memory
linear in the row length), training and the KV cache alike.

Incremental decoding (eval.sampler) runs the same modules with a `KVCache`:

    cache = KVCache.init(config, batch=B, max_len=S, start=pad)        # pad [B]: left padding per row
    logits, cache = model(prompts, cache=cache)                        # prefill: prompts [B, T], left-padded
    logits, cache = model(next_tokens[:, None], cache=cache)           # one decode step

Rows are left-padded so that every row writes its next token at the same cache slot (one
`dynamic_update_slice`, cheap and shardable): slots [start[b], index) hold row b's tokens, slots
before start[b] hold padding and are never attended to. Positions are derived from the cache
(slot - start[b]), so a row sees the same positions whatever its padding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nn_train.models.attention import Mask, attend
from nn_train.models.config import ModelConfig
from nn_train.models.gated_deltanet import GDNState, GatedDeltaNet
from nn_train.models.layers import MLP, Dense, RMSNorm, normal_init
from nn_train.models.moe import MoE, RouterStats
from nn_train.sharding import shard_activation



class Embed(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.dtype = config.jnp_dtype
        self.embedding = nnx.Param(
            normal_init(rngs.params(), (config.vocab_size, config.embed_dim), config.jnp_param_dtype),
            logical_axes=("vocab", "embed"),
        )
        self.unembed_lora = nnx.data(None)  # an output-side LoRA adapter for tied embeddings (models.lora)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], tokens, axis=0).astype(self.dtype)  # [B, T, D]

    def attend(self, x: jax.Array) -> jax.Array:
        """Tied unembedding: x [B, T, D] → logits [B, T, V] (a 2-D matmul, as in Dense)."""
        embedding = self.embedding[...].astype(self.dtype)
        logits = (x.astype(self.dtype).reshape(-1, x.shape[-1]) @ embedding.T).reshape(*x.shape[:-1], -1)
        if self.unembed_lora is not None:
            logits = logits + self.unembed_lora(x).astype(logits.dtype)
        return logits


def rope_frequencies(config: ModelConfig) -> jax.Array:
    """Inverse frequencies [R/2] over the rotary dims R (config.rotary_dim: the whole head unless
    partial_rotary_factor < 1), with Llama 3 scaling when configured (as in transformers)."""
    dim = config.rotary_dim
    inv_freq = 1.0 / (config.rope_theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    low_freq_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_freq_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return jnp.where(is_medium, smoothed, scaled)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotate-half RoPE on x [B, T, heads, H] at positions [B, T] (the Hugging Face convention:
    dimension i pairs with i + R/2) over the first R = 2·len(inv_freq) dims; the rest pass through."""
    rotary = 2 * inv_freq.shape[0]
    angles = positions.astype(jnp.float32)[..., None, None] * inv_freq  # [B, T, 1, R/2]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = jnp.split(x[..., :rotary].astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)
    return rotated if rotary == x.shape[-1] else jnp.concatenate([rotated, x[..., rotary:]], axis=-1)


class Attention(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, n, k, h = config.embed_dim, config.num_heads, config.num_kv_heads, config.head_dim
        self.config = config
        # With an output gate (Qwen3.5), each head's query projection also makes its gate: [D, N, 2H],
        # the query in [..., :H] and the gate in [..., H:], as the checkpoint lays them out.
        q_width = 2 * h if config.attention_output_gate else h
        self.q_proj = Dense((d,), (n, q_width), ("embed", "heads", "head_dim"), config=config, rngs=rngs)
        self.k_proj = Dense((d,), (k, h), ("embed", "kv_heads", "head_dim"), config=config, rngs=rngs)
        self.v_proj = Dense((d,), (k, h), ("embed", "kv_heads", "head_dim"), config=config, rngs=rngs)
        self.o_proj = Dense((n, h), (d,), ("heads", "head_dim", "embed"), config=config, rngs=rngs)
        if config.qk_norm:
            self.q_norm = RMSNorm(h, config=config)
            self.k_norm = RMSNorm(h, config=config)

    def _qkv(self, x: jax.Array, positions: jax.Array, inv_freq: jax.Array):
        """(queries, keys, values, output gate or None) of x, normed and rotated."""
        cfg = self.config
        q_btnh = self.q_proj(x)
        gate_btnh = None
        if cfg.attention_output_gate:
            q_btnh, gate_btnh = jnp.split(q_btnh, 2, axis=-1)
        k_bskh = self.k_proj(x)
        v_bskh = self.v_proj(x)
        if cfg.qk_norm:
            q_btnh, k_bskh = self.q_norm(q_btnh), self.k_norm(k_bskh)
        q_btnh = apply_rope(q_btnh, positions, inv_freq)
        k_bskh = apply_rope(k_bskh, positions, inv_freq)
        q_btnh = shard_activation(q_btnh, ("act_batch", "act_length", "act_heads", "act_head_dim"))
        k_bskh = shard_activation(k_bskh, ("act_batch", "act_length", "act_kv_heads", "act_head_dim"))
        return q_btnh, k_bskh, v_bskh, gate_btnh

    def _out(self, out_btnh: jax.Array, gate_btnh: jax.Array | None) -> jax.Array:
        if gate_btnh is not None:
            out_btnh = out_btnh * jax.nn.sigmoid(gate_btnh.astype(out_btnh.dtype))
        out_btnh = shard_activation(out_btnh, ("act_batch", "act_length", "act_heads", "act_head_dim"))
        return self.o_proj(out_btnh)

    def _attend(self, q_btnh: jax.Array, k: jax.Array, v: jax.Array, mask: Mask, kv_layout: str = "bskh") -> jax.Array:
        cfg = self.config
        return attend(q_btnh, k, v, mask, backend=cfg.attention, block_size=cfg.attention_block_size, kv_layout=kv_layout)

    def __call__(self, x: jax.Array, positions: jax.Array, mask: Mask, inv_freq: jax.Array) -> jax.Array:
        q_btnh, k_bskh, v_bskh, gate_btnh = self._qkv(x, positions, inv_freq)
        return self._out(self._attend(q_btnh, k_bskh, v_bskh, mask), gate_btnh)

    def extend(
        self, x: jax.Array, positions: jax.Array, mask: Mask, inv_freq: jax.Array,
        cache_k: jax.Array, cache_v: jax.Array, index: jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Writes this chunk's keys/values at cache slots [index, index + T) and attends over the
        whole cache [B, K, S, H] under `mask` (Mask.cache); returns (output, cache_k, cache_v)."""
        q_btnh, k_btkh, v_btkh, gate_btnh = self._qkv(x, positions, inv_freq)
        # Only the chunk is transposed to the cache's heads-major layout, never the whole cache.
        cache_k = jax.lax.dynamic_update_slice(cache_k, k_btkh.transpose(0, 2, 1, 3).astype(cache_k.dtype), (0, 0, index, 0))
        cache_v = jax.lax.dynamic_update_slice(cache_v, v_btkh.transpose(0, 2, 1, 3).astype(cache_v.dtype), (0, 0, index, 0))
        cache_k = shard_activation(cache_k, KV_CACHE_AXES)
        cache_v = shard_activation(cache_v, KV_CACHE_AXES)
        return self._out(self._attend(q_btnh, cache_k, cache_v, mask, kv_layout="bksh"), gate_btnh), cache_k, cache_v


class Block(nnx.Module):
    """One decoder layer: a token mixer (softmax attention, or Gated DeltaNet for a
    "linear_attention" layer) and an MLP (SwiGLU or MoE), each pre-normed with a residual."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, mixer: str = "full_attention"):
        self.input_norm = RMSNorm(config.embed_dim, config=config)
        if mixer == "full_attention":
            self.attn = Attention(config, rngs=rngs)
        else:
            self.linear_attn = GatedDeltaNet(config, rngs=rngs)
        self.post_attn_norm = RMSNorm(config.embed_dim, config=config)
        self.mlp = MoE(config, rngs=rngs) if config.num_experts else MLP(config, rngs=rngs)

    @property
    def is_linear(self) -> bool:
        return hasattr(self, "linear_attn")

    def __call__(self, x: jax.Array, positions: jax.Array, mask: Mask, inv_freq: jax.Array) -> jax.Array:
        return self.forward(x, positions, mask, inv_freq)[0]

    def forward(self, x: jax.Array, positions: jax.Array, mask: Mask, inv_freq: jax.Array) -> tuple[jax.Array, RouterStats | None]:
        """The block, and for an MoE block its RouterStats over the real (non-padding) tokens. A Gated
        DeltaNet layer takes the packed documents from the mask's segment ids."""
        if self.is_linear:
            x = x + self.linear_attn(self.input_norm(x), mask.q_segments)[0]
        else:
            x = x + self.attn(self.input_norm(x), positions, mask, inv_freq)
        return self._mlp(x, valid=mask.q_segments != 0)

    def _mlp(self, x: jax.Array, valid: jax.Array) -> tuple[jax.Array, RouterStats | None]:
        stats = None
        if isinstance(self.mlp, MoE):
            mlp_out, stats = self.mlp.forward(self.post_attn_norm(x), valid=valid)
        else:
            mlp_out = self.mlp(self.post_attn_norm(x))
        return shard_activation(x + mlp_out, ("act_batch", "act_length", "act_embed")), stats

    def extend(self, x, *, positions, mask, inv_freq, layer_cache, index, docs):
        """The block over a chunk of new tokens with its layer's cache: (keys, values) for attention
        (see Attention.extend), a GDNState for Gated DeltaNet, which reads `docs` [B, T] (1: a real
        token, 0: left padding). Returns (x, the layer's new cache)."""
        if self.is_linear:
            mixer_out, layer_cache = self.linear_attn(self.input_norm(x), docs, layer_cache)
        else:
            mixer_out, cache_k, cache_v = self.attn.extend(self.input_norm(x), positions, mask, inv_freq, *layer_cache, index)
            layer_cache = (cache_k, cache_v)
        x = x + mixer_out
        x = x + self.mlp(self.post_attn_norm(x))
        return shard_activation(x, ("act_batch", "act_length", "act_embed")), layer_cache


# Logical axes of a KV cache array [B, S, K, H]: rows over (data, fsdp), kv heads over tensor,
# like the activations they are made from.
KV_CACHE_AXES = ("act_batch", "act_kv_heads", "act_length", "act_head_dim")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """Per-layer keys and values of the tokens seen so far, for incremental decoding.

    Rows are left-padded: slots [start[b], index) of row b hold its tokens (position p of the row
    at slot start[b] + p); slots before start[b] hold padding and are masked out. Every row
    writes its next token at slot `index`, so all rows advance together.
    """

    # Per attention layer [B, K, S, H] in the compute dtype (heads-major: what attention reads, so a
    # decode step copies nothing but its new slot); for scanned layers one stacked [L, B, K, S, H],
    # and for scanned hybrid layers one [G, B, K, S, H] per attention layer of a group (G groups).
    keys: tuple[jax.Array, ...] | jax.Array
    values: tuple[jax.Array, ...] | jax.Array
    start: jax.Array  # [B] int32: the first slot holding a real token of each row
    index: jax.Array  # [] int32: the next slot to write
    # Per Gated DeltaNet layer (Qwen3.5's linear_attention layers): its convolution window and state
    # matrix, whose size does not grow with the row (scanned: per such layer of a group, stacked [G, ...]).
    linear: tuple[GDNState, ...] = ()

    @classmethod
    def init(cls, config: ModelConfig, batch: int, max_len: int, start: jax.Array | None = None) -> "KVCache":
        """An empty cache of `max_len` slots; `start` [B] is each row's left padding (default 0)."""
        shape = (batch, config.num_kv_heads, max_len, config.head_dim)
        start = jnp.zeros((batch,), jnp.int32) if start is None else jnp.asarray(start, jnp.int32)
        attention_layers = config.mixers.count("full_attention")
        linear = tuple(GDNState.init(config, batch) for _ in range(config.num_layers - attention_layers))
        period = config.layer_period
        if config.scan_layers and period == 1:
            zeros = lambda: shard_activation(jnp.zeros((config.num_layers, *shape), config.jnp_dtype), ("layers", *KV_CACHE_AXES))
            keys, values = (zeros(), zeros()) if attention_layers else ((), ())
            linear = () if attention_layers else (_stack_states(linear),)
        elif config.scan_layers:  # per layer of a group, its G layers' caches stacked
            groups = config.num_layers // period
            group_mixers = config.mixers[:period]
            zeros = lambda: shard_activation(jnp.zeros((groups, *shape), config.jnp_dtype), ("layers", *KV_CACHE_AXES))
            keys = tuple(zeros() for mixer in group_mixers if mixer == "full_attention")
            values = tuple(zeros() for mixer in group_mixers if mixer == "full_attention")
            linear = tuple(_stack_states(linear[:groups]) for mixer in group_mixers if mixer == "linear_attention")
        else:
            zeros = lambda: shard_activation(jnp.zeros(shape, config.jnp_dtype), KV_CACHE_AXES)
            keys = tuple(zeros() for _ in range(attention_layers))
            values = tuple(zeros() for _ in range(attention_layers))
        return cls(keys=keys, values=values, start=start, index=jnp.zeros((), jnp.int32), linear=linear)

    @property
    def max_len(self) -> int:
        keys = self.keys if isinstance(self.keys, jax.Array) else self.keys[0]
        return keys.shape[-2]  # the first attention layer's [..., K, S, H], stacked or not

    @property
    def lengths(self) -> jax.Array:
        """[B] tokens held per row (padding excluded)."""
        return self.index - self.start


def _stack_states(states: Sequence[GDNState]) -> GDNState:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


class LayerGroup(nnx.Module):
    """`layer_period` consecutive Blocks of a hybrid model (Qwen3.5: three Gated DeltaNet layers and
    an attention layer): what its scanned layers stack, so every scan step runs one whole period."""

    def __init__(self, blocks: Sequence[Block]):
        self.blocks = nnx.List(blocks)

    def forward(self, x, positions, mask, inv_freq):
        total = None
        for block in self.blocks:
            x, stats = block.forward(x, positions, mask, inv_freq)
            total = stats if total is None else total + stats
        return x, total


_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "offload": jax.checkpoint_policies.offload_dot_with_no_batch_dims("device", "pinned_host"),
}


def stack_layers(modules: Sequence[nnx.Module], axis: str = "layers") -> nnx.Module:
    """One module of the layers' modules (Blocks, or their LoRA adapters) whose every variable holds
    their values stacked on a leading axis (logical axis "layers"): what jax.lax.scan runs over. The
    modules are built one by one first, so a scanned model starts from the loop's weights of a seed.
    (`axis` names another stacking, e.g. "experts" for one adapter per expert.)"""
    graphdef, _ = nnx.split(modules[0])
    stacked = jax.tree.map(lambda *values: jnp.stack(values), *(nnx.state(module) for module in modules))
    add_axis = lambda variable: _add_leading_axis(variable, axis)
    return nnx.merge(graphdef, jax.tree.map(add_axis, stacked, is_leaf=lambda x: isinstance(x, nnx.Variable)))


def _add_leading_axis(variable: nnx.Variable, axis: str) -> nnx.Variable:
    """A copy of a stacked variable whose logical axes start with `axis`."""
    variable = variable.replace(variable.get_value())
    axes = variable.get_metadata().get("logical_axes")
    if axes is not None:
        variable.set_metadata(logical_axes=(axis, *axes))
    return variable


class Transformer(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = Embed(config, rngs=rngs)
        blocks = [Block(config, rngs=rngs, mixer=mixer) for mixer in config.mixers]
        # Scanned: one Block of stacked [L, ...] variables (paths "layers.attn.q_proj.kernel"), or for
        # a hybrid model one LayerGroup of stacked [G, ...] variables, G = L / layer_period
        # ("layers.blocks.3.attn.q_proj.kernel": slice g is layer g * period + 3); else a list of
        # Blocks ("layers.3.attn.q_proj.kernel").
        period = config.layer_period
        if not config.scan_layers:
            self.layers = nnx.List(blocks)
        elif period == 1:
            self.layers = stack_layers(blocks)
        else:
            self.layers = stack_layers([LayerGroup(blocks[g:g + period]) for g in range(0, config.num_layers, period)])
        self.final_norm = RMSNorm(config.embed_dim, config=config)
        if not config.tie_embeddings:
            self.lm_head = Dense((config.embed_dim,), (config.vocab_size,), ("embed", "vocab"), config=config, rngs=rngs)

    def __call__(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> jax.Array | tuple[jax.Array, KVCache]:
        """tokens [B, T] int → logits [B, T, V] float32.

        With a `cache`, the tokens continue each row of the cache (see `extend`) and the result is
        (logits, new cache); positions then come from the cache and segment ids do not apply.
        """
        if cache is not None:
            if positions is not None or segment_ids is not None:
                raise ValueError("with a KV cache, positions come from the cache; do not pass positions or segment_ids")
            return self.extend(tokens, cache)
        return self.logits(self.hidden_states(tokens, positions=positions, segment_ids=segment_ids))

    def hidden_states(self, tokens: jax.Array, *, positions: jax.Array | None = None,
                      segment_ids: jax.Array | None = None) -> jax.Array:
        """tokens [B, T] → the last block's output [B, T, D], before the final norm; `logits` maps it to
        the vocabulary. A loss may do that a chunk of tokens at a time (target_log_probs)."""
        return self.hidden_states_and_router_stats(tokens, positions=positions, segment_ids=segment_ids)[0]

    def hidden_states_and_router_stats(self, tokens: jax.Array, *, positions: jax.Array | None = None,
                                       segment_ids: jax.Array | None = None) -> tuple[jax.Array, RouterStats | None]:
        """hidden_states, and for an MoE model the RouterStats of every layer summed (the input of
        moe.load_balancing_loss); None for a dense model."""
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), dtype=jnp.int32)
        mask = Mask.packed(segment_ids)
        inv_freq = rope_frequencies(self.config)

        x = shard_activation(self.embed(tokens), ("act_batch", "act_length", "act_embed"))
        remat = self.config.remat
        if self.config.scan_layers:
            graphdef, stacked = nnx.split(self.layers)

            def layer_step(x, layer_state):
                return nnx.merge(graphdef, layer_state).forward(x, positions, mask, inv_freq)

            if remat != "none":
                layer_step = jax.checkpoint(layer_step, policy=_REMAT[remat])
            x, per_layer = jax.lax.scan(layer_step, x, stacked)
            return x, None if per_layer is None else jax.tree.map(lambda s: s.sum(axis=0), per_layer)
        total = None
        for block in self.layers:
            if remat == "none":
                x, stats = block.forward(x, positions, mask, inv_freq)
            else:
                x, stats = nnx.remat(lambda blk, *args: blk.forward(*args), policy=_REMAT[remat])(block, x, positions, mask, inv_freq)
            total = stats if total is None else total + stats
        return x, total

    def logits(self, x: jax.Array) -> jax.Array:
        """hidden states [..., D] (hidden_states) → float32 logits [..., V]."""
        x = self.final_norm(x)
        logits = self.embed.attend(x) if self.config.tie_embeddings else self.lm_head(x)
        return shard_activation(logits.astype(jnp.float32), ("act_batch", "act_length", "act_vocab"))

    def extend(self, tokens: jax.Array, cache: KVCache, *, last_only: bool = False) -> tuple[jax.Array, KVCache]:
        """tokens [B, T] written at cache slots [index, index + T) → (logits [B, T, V], cache).

        Prefill is `extend` of the left-padded prompts on an empty cache; decoding is `extend` of
        one token per row. Query t of row b attends to slots [start[b], index + t]; padding
        queries (slots before start[b]) attend to nothing useful and their logits are junk.
        Cost is T × S per layer (the whole cache is attended, masked), so one compiled function
        serves every step of a generation. `last_only` computes logits [B, 1, V] for the last
        token only: what a prefill needs, without a [B, T, V] array for long prompts.
        """
        t = tokens.shape[1]
        slots_t = cache.index + jnp.arange(t, dtype=jnp.int32)  # the slots these tokens occupy
        positions = jnp.maximum(slots_t[None, :] - cache.start[:, None], 0)  # [B, T]; padding gets 0
        # (A model of Gated DeltaNet layers alone keeps no keys: nothing reads a mask then.)
        mask = Mask.cache(cache.start, cache.index, t, cache.max_len) if len(cache.keys) else None
        inv_freq = rope_frequencies(self.config)

        docs = (slots_t[None, :] >= cache.start[:, None]).astype(jnp.int32)  # 1: a real token, 0: left padding
        x = shard_activation(self.embed(tokens), ("act_batch", "act_length", "act_embed"))
        extend_blocks = lambda blocks, x, keys, values, linear: _extend_blocks(
            blocks, x, keys, values, linear, positions=positions, mask=mask, inv_freq=inv_freq, index=cache.index, docs=docs)
        if not self.config.scan_layers:
            x, keys, values, linear = extend_blocks(self.layers, x, cache.keys, cache.values, cache.linear)
        else:
            # One scan step per stacked unit: a Block (its cache one slice of [L, ...]) or a LayerGroup
            # (its layers' caches, one slice of each [G, ...]).
            graphdef, stacked = nnx.split(self.layers)
            grouped = self.config.layer_period > 1
            as_tuple = lambda arrays: arrays if grouped or not isinstance(arrays, jax.Array) else (arrays,)

            def layer_step(x, layer):
                layer_state, keys, values, linear = layer
                unit = nnx.merge(graphdef, layer_state)
                x, keys, values, linear = extend_blocks(unit.blocks if grouped else [unit], x, keys, values, linear)
                return x, (keys, values, linear)

            x, (keys, values, linear) = jax.lax.scan(layer_step, x, (stacked, as_tuple(cache.keys), as_tuple(cache.values), cache.linear))
            if not grouped and isinstance(cache.keys, jax.Array):
                keys, values = keys[0], values[0]
        new_cache = KVCache(keys=keys, values=values, start=cache.start, index=cache.index + t, linear=linear)
        return self.logits(x[:, -1:] if last_only else x), new_cache


def _extend_blocks(blocks, x, keys, values, linear, **inputs) -> tuple[jax.Array, tuple, tuple, tuple]:
    """Blocks in order over a chunk of new tokens, each with its cache: attention layers take the next
    of `keys`/`values`, Gated DeltaNet layers the next of `linear`. Returns x and the new caches."""
    attention_caches, linear_states = iter(zip(keys, values)), iter(linear)
    keys, values, linear = [], [], []
    for block in blocks:
        layer_cache = next(linear_states) if block.is_linear else next(attention_caches)
        x, layer_cache = block.extend(x, layer_cache=layer_cache, **inputs)
        if block.is_linear:
            linear.append(layer_cache)
        else:
            keys.append(layer_cache[0])
            values.append(layer_cache[1])
    return x, tuple(keys), tuple(values), tuple(linear)


def token_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(targets[b, t]) under logits[b, t] (the logits at t predict the token at t+1 of the input).

    To score a sequence `tokens`, pass logits[:, :-1] and tokens[:, 1:].
    """
    logits = logits.astype(jnp.float32)
    # logit - logsumexp: one pass over the vocabulary instead of materialising log_softmax.
    target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return target_logits - jax.nn.logsumexp(logits, axis=-1)


def target_log_probs(model: "Transformer", hidden: jax.Array, targets: jax.Array, chunk_tokens: int = 0) -> jax.Array:
    """log p(targets) [B, T] from hidden states [B, T, D] (Transformer.hidden_states).

    With `chunk_tokens` > 0, the vocabulary projection and its softmax run about `chunk_tokens`
    tokens per device at a time (each device's rows × a span of positions) and are recomputed in
    the backward pass, so the float32 [B, T, V] logits (and the several copies their gradient
    needs) never exist at once: at 10k tokens and Qwen's 152k vocabulary each copy is 6 GB per row.
    Rows whose device share fits one chunk take the whole-row path. Each position's log-probability
    is the same computation either way.
    """
    b, t, d = hidden.shape
    rows_per_device = max(1, b // _data_parallel_devices())
    span = max(1, chunk_tokens // rows_per_device)  # positions per chunk
    if chunk_tokens <= 0 or t <= span:
        return token_log_probs(model.logits(hidden), targets)
    graphdef, state = nnx.split(model)
    chunks = -(-t // span)
    pad = chunks * span - t
    hidden_nbcd = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, chunks, span, d).swapaxes(0, 1)
    targets_nbc = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, chunks, span).swapaxes(0, 1)

    @jax.checkpoint
    def chunk(state, hidden_bcd, targets_bc):
        return token_log_probs(nnx.merge(graphdef, state).logits(hidden_bcd), targets_bc)

    log_probs_nbc = jax.lax.map(lambda xs: chunk(state, *xs), (hidden_nbcd, targets_nbc))
    return log_probs_nbc.swapaxes(0, 1).reshape(b, chunks * span)[:, :t]


def _data_parallel_devices() -> int:
    """How many devices the rows split over (data × fsdp × expert) under the mesh in scope; 1 without one."""
    from nn_train.sharding import data_parallel_size

    return data_parallel_size(jax.sharding.get_abstract_mesh())
