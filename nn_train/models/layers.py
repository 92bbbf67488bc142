"""The building blocks every model family shares: the normal initialiser, Dense, RMSNorm and the
SwiGLU MLP.

Dense matmuls and RMSNorm follow the Hugging Face numerics (module docstrings of
nn_train.models.transformer); nn_train.models.moe builds its router, experts and shared expert
from them too.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from nn_train.models.config import ModelConfig
from nn_train.sharding import shard_activation


def normal_init(key: jax.Array, shape: Sequence[int], dtype) -> jax.Array:
    """normal(0.02) as Hugging Face initialises these models; drawn in float32 and then cast,
    so a bfloat16 model starts from the same weights as a float32 one."""
    return (0.02 * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


class Dense(nnx.Module):
    """A linear map contracting the trailing `in_shape` dims of x into `out_shape` (no bias).

    The kernel is stored [*in_shape, *out_shape] with the given logical axes, e.g. a query
    projection is [D, N, H] with ("embed", "heads", "head_dim"). A LoRA adapter
    (nn_train.models.lora) may be attached as `self.lora`; its output is added.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        logical_axes: Sequence[str],
        *,
        config: ModelConfig,
        rngs: nnx.Rngs,
    ):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.dtype = config.jnp_dtype
        shape = self.in_shape + self.out_shape
        self.kernel = nnx.Param(normal_init(rngs.params(), shape, config.jnp_param_dtype), logical_axes=tuple(logical_axes))
        self.lora = nnx.data(None)  # data, not static: an adapter may be attached later

    def __call__(self, x: jax.Array) -> jax.Array:
        # One 2-D matmul [rows, fan_in] @ [fan_in, fan_out]: XLA's CPU backend runs this about
        # twice as fast as the equivalent tensordot/einsum over 3-D operands (forward and backward),
        # and on accelerators the reshapes are free.
        batch_shape = x.shape[: x.ndim - len(self.in_shape)]
        fan_in, fan_out = math.prod(self.in_shape), math.prod(self.out_shape)
        kernel = self.kernel[...].astype(self.dtype).reshape(fan_in, fan_out)
        y = (x.astype(self.dtype).reshape(-1, fan_in) @ kernel).reshape(*batch_shape, *self.out_shape)
        if self.lora is not None:
            y = y + self.lora(x).astype(y.dtype)
        return y


class RMSNorm(nnx.Module):
    """RMSNorm over the last axis. Llama / Qwen3: scale (init 1) × norm(x) cast to x's dtype.
    With config.norm_unit_offset (Qwen3.5's zero-centred norm): norm(x) · (1 + scale) in float32,
    scale initialised to 0, then cast (the order transformers uses for each)."""

    def __init__(self, dim: int, *, config: ModelConfig):
        self.eps = config.rms_norm_eps
        self.unit_offset = config.norm_unit_offset
        init = jnp.zeros if self.unit_offset else jnp.ones
        self.scale = nnx.Param(init((dim,), config.jnp_param_dtype), logical_axes=("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        if self.unit_offset:
            return (normed * (1.0 + self.scale[...].astype(jnp.float32))).astype(x.dtype)
        return self.scale[...].astype(x.dtype) * normed.astype(x.dtype)


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) · up(x)), of width `mlp_dim` (default config.mlp_dim)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, mlp_dim: int | None = None):
        d, f = config.embed_dim, mlp_dim or config.mlp_dim
        self.gate_proj = Dense((d,), (f,), ("embed", "mlp"), config=config, rngs=rngs)
        self.up_proj = Dense((d,), (f,), ("embed", "mlp"), config=config, rngs=rngs)
        self.down_proj = Dense((f,), (d,), ("mlp", "embed"), config=config, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden_btf = jax.nn.silu(self.gate_proj(x)) * self.up_proj(x)
        hidden_btf = shard_activation(hidden_btf, ("act_batch", "act_length", "act_mlp"))
        return self.down_proj(hidden_btf)
