"""A mixture-of-experts MLP: a softmax top-k router and SwiGLU experts held as stacked weights.

    moe = MoE(config, rngs=rngs)       # config.num_experts experts, config.experts_per_token per token
    y = moe(x)                          # [B, T, D] → [B, T, D]

Routing (Qwen3-MoE, as transformers computes it): router logits x·W_r in float32, softmax over
the experts, the top k kept, renormalised to sum to 1 when `norm_topk_prob`. Each token's output
is the weighted sum of its k experts' SwiGLU outputs, down(silu(gate(x)) · up(x)).

Dispatch (config.moe_dispatch):
  ragged  dropless: the (token, expert) pairs are sorted by expert and each expert's rows go
          through one grouped matmul, `jax.lax.ragged_dot`, so compute is k/E of the dense one
          and no token is ever dropped for capacity;
  dense   every expert on every token, combined with the routing weights: E/k times the work,
          the plain-einsum reference the ragged path is tested against;
  auto    ragged on GPU and TPU, dense on CPU: XLA's CPU backend has no grouped matmul and
          emulates ragged_dot with a dense one per expert over all M·k rows, k times the dense
          dispatch's cost (measured: 0.70x dense at top-2, 0.33x at top-4;
          nn_train.models.moe_benchmark).

Expert weights are [E, D, F] (gate, up) and [E, F, D] (down), logical axes ("experts", ...). The
experts axis is replicated for now (nn_train.sharding): D and F shard like a dense MLP's.
Kept free of Qwen specifics beyond the routing rule, so DeepSeek-style models can reuse it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nn_train.models.config import ModelConfig
from nn_train.models.layers import Dense, normal_init


class Experts(nnx.Module):
    """E SwiGLU experts as three stacked kernels."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        e, d, f = config.num_experts, config.embed_dim, config.expert_mlp_dim
        dtype = config.jnp_param_dtype
        # Each expert initialised as its own [D, F] / [F, D] matrix would be (fan-in of one expert).
        init = lambda key, shape: jax.vmap(lambda k: normal_init(k, shape, dtype))(jax.random.split(key, e))
        self.gate_proj = nnx.Param(init(rngs.params(), (d, f)), logical_axes=("experts", "embed", "mlp"))
        self.up_proj = nnx.Param(init(rngs.params(), (d, f)), logical_axes=("experts", "embed", "mlp"))
        self.down_proj = nnx.Param(init(rngs.params(), (f, d)), logical_axes=("experts", "mlp", "embed"))


class MoE(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.router = Dense((config.embed_dim,), (config.num_experts,), ("embed", "experts"), config=config, rngs=rngs)
        self.experts = Experts(config, rngs=rngs)

    def route(self, x_md: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Tokens [M, D] → (weights [M, k] in the compute dtype, expert ids [M, k] int32)."""
        cfg = self.config
        kernel = self.router.kernel[...].astype(jnp.float32)
        probs = jax.nn.softmax(x_md.astype(jnp.float32) @ kernel, axis=-1)
        weights, experts = jax.lax.top_k(probs, cfg.experts_per_token)
        if cfg.norm_topk_prob:
            weights = weights / weights.sum(axis=-1, keepdims=True)
        return weights.astype(cfg.jnp_dtype), experts.astype(jnp.int32)

    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        x_md = x.astype(cfg.jnp_dtype).reshape(-1, x.shape[-1])
        weights, experts = self.route(x_md)
        gate, up, down = (p[...].astype(cfg.jnp_dtype) for p in (self.experts.gate_proj, self.experts.up_proj, self.experts.down_proj))
        if resolve_dispatch(cfg.moe_dispatch) == "dense":
            y_md = _dense_dispatch(x_md, weights, experts, gate, up, down)
        else:
            y_md = _ragged_dispatch(x_md, weights, experts, gate, up, down)
        return y_md.reshape(x.shape).astype(x.dtype)


def resolve_dispatch(dispatch: str, platform: str | None = None) -> str:
    """The dispatch `auto` means on this platform (module docstring); others as given."""
    if dispatch != "auto":
        return dispatch
    return "ragged" if (platform or jax.default_backend()) in ("gpu", "tpu") else "dense"


def _dense_dispatch(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd) -> jax.Array:
    """Every expert on every token; the routing weights (zero off the top k) pick the sum."""
    combine_me = jnp.einsum("mk,mke->me", weights_mk, jax.nn.one_hot(experts_mk, gate_edf.shape[0], dtype=weights_mk.dtype))
    hidden_emf = jax.nn.silu(jnp.einsum("md,edf->emf", x_md, gate_edf)) * jnp.einsum("md,edf->emf", x_md, up_edf)
    out_emd = jnp.einsum("emf,efd->emd", hidden_emf, down_efd)
    return jnp.einsum("emd,me->md", out_emd, combine_me)


def _ragged_dispatch(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd) -> jax.Array:
    """The M·k (token, expert) pairs sorted by expert, one grouped matmul per projection, then
    gathered back to their tokens and summed with the routing weights."""
    m, k = experts_mk.shape
    num_experts = gate_edf.shape[0]
    flat_experts = experts_mk.reshape(-1)  # pair p = token p // k, its (p % k)-th expert
    order = jnp.argsort(flat_experts, stable=True)
    rows = x_md[order // k]  # [M·k, D], grouped by expert
    group_sizes = jnp.bincount(flat_experts, length=num_experts).astype(jnp.int32)
    hidden = jax.nn.silu(jax.lax.ragged_dot(rows, gate_edf, group_sizes)) * jax.lax.ragged_dot(rows, up_edf, group_sizes)
    out = jax.lax.ragged_dot(hidden, down_efd, group_sizes)  # [M·k, D], still grouped by expert
    unsorted = out[jnp.argsort(order)].reshape(m, k, -1)  # back to (token, its k-th expert)
    return jnp.einsum("mkd,mk->md", unsorted, weights_mk)
