"""Timings shared by the benchmarks (nn_train.benchmark, nn_train.models.attention_benchmark,
nn_train.accel_benchmark): the real train step against the bare forward+backward, and one
attention layer's forward+backward per kernel, and one MoE layer's per dispatch. No flags here, so every benchmark can import it."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn_train.config import default_config
from nn_train.metrics import median_step_seconds, peak_flops, train_flops_per_token
from nn_train.models import token_log_probs
from nn_train.models.attention import Mask, attend
from nn_train.trainer import setup


@dataclasses.dataclass(frozen=True)
class TrainStepTiming:
    model_config: Any
    devices: int
    mesh: dict
    tokens: int  # per step, all devices
    flops: float  # model FLOPs per step, all devices
    step_seconds: float  # the real train step (AdamW, sharded)
    bare_seconds: float  # the bare forward+backward baseline
    peak: float | None  # bf16 peak FLOP/s of one device, when known

    @property
    def mfu(self) -> float | None:
        return self.flops / self.step_seconds / self.devices / self.peak if self.peak else None


def time_train_step(*, preset: str, seq_len: int, batch: int, dtype: str, remat: str, lora: bool, microbatches: int = 1,
                    param_dtype: str = "float32", tensor: int = 1, steps: int = 10, warmup: int = 2) -> TrainStepTiming:
    """Median seconds of the real train step and of the bare forward+backward, same mesh and batch."""
    config = default_config()
    config.model.preset = preset
    config.model.dtype = dtype
    config.model.param_dtype = param_dtype
    config.model.remat = remat
    config.lora.enabled = lora
    config.data.seq_len = seq_len
    config.training.global_batch_size = batch
    config.training.microbatches = microbatches
    config.training.num_steps = 1000
    config.mesh.tensor = tensor
    run = setup(config)

    from nn_train.data import SyntheticSource

    source = SyntheticSource(vocab_size=run.model_config.vocab_size, seq_len=seq_len, num_examples=batch, seed=0)
    device_batch = run.device_batch(source.next_batch(batch, microbatches))
    state = [run.state]

    def train_step():
        state[0], metrics = run.step_fn(state[0], run.frozen, device_batch)
        jax.block_until_ready(metrics)

    graphdef = run.graphdef

    @jax.jit
    def bare_forward_backward(params, frozen, batch):
        def loss(params):
            flat = jax.tree.map(lambda x: x.reshape(-1, x.shape[-1]), batch)
            logits = nnx.merge(graphdef, params, frozen)(flat["inputs"], positions=flat["positions"], segment_ids=flat["segment_ids"])
            return -(token_log_probs(logits, flat["targets"]) * flat["weights"]).sum()

        return jax.value_and_grad(loss)(params)

    def bare_step():
        jax.block_until_ready(bare_forward_backward(state[0]["params"], run.frozen, device_batch))

    with jax.set_mesh(run.mesh):
        step_time = median_step_seconds(train_step, warmup, steps)
        bare_time = median_step_seconds(bare_step, warmup, steps)
    tokens = batch * seq_len
    return TrainStepTiming(
        model_config=run.model_config, devices=run.mesh.size, mesh=dict(run.mesh.shape), tokens=tokens,
        flops=train_flops_per_token(run.model_config, seq_len) * tokens, step_seconds=step_time, bare_seconds=bare_time,
        peak=peak_flops(jax.devices()[0].device_kind, dtype),
    )


def _grad_fn(backend: str, block_size: int):
    def loss(q, k, v, segments):
        return attend(q, k, v, Mask.packed(segments), backend=backend, block_size=block_size).astype(jnp.float32).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def _shapes(config, length: int, dtype=jnp.float32):
    q = jax.ShapeDtypeStruct((1, length, config.num_heads, config.head_dim), dtype)
    kv = jax.ShapeDtypeStruct((1, length, config.num_kv_heads, config.head_dim), dtype)
    return q, kv, kv, jax.ShapeDtypeStruct((1, length), jnp.int32)


def attention_temp_bytes(config, length: int, backend: str, block_size: int) -> int:
    compiled = _grad_fn(backend, block_size).lower(*_shapes(config, length)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def attention_step_seconds(config, length: int, backend: str, block_size: int, steps: int, dtype=jnp.float32) -> float:
    """Median seconds of one attention layer's forward+backward (batch 1, two packed documents)."""
    rng = np.random.default_rng(0)
    q, k, v, _ = _shapes(config, length, dtype)
    args = [jnp.asarray(rng.standard_normal(s.shape), dtype) for s in (q, k, v)]
    segments = jnp.asarray(np.repeat([1, 2], [length // 2, length - length // 2])[None], jnp.int32)  # two packed documents
    fn = _grad_fn(backend, block_size)
    return median_step_seconds(lambda: jax.block_until_ready(fn(*args, segments)), 1, steps)


def moe_layer_step(config, dispatch: str, tokens: int, steps: int) -> tuple[float, float]:
    """(median seconds, compiled temp bytes) of one forward+backward of `config`'s MoE layer under `dispatch`."""
    config = config.replace(moe_dispatch=dispatch)
    from nn_train.models.moe import MoE

    graphdef, params = nnx.split(MoE(config, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (tokens, config.embed_dim), config.jnp_dtype)

    @jax.jit
    def step(params, x):
        loss = lambda p, x: nnx.merge(graphdef, p)(x).astype(jnp.float32).sum()
        return jax.grad(loss, argnums=(0, 1))(params, x)

    temp = step.lower(params, x).compile().memory_analysis().temp_size_in_bytes
    return median_step_seconds(lambda: jax.block_until_ready(step(params, x)), 1, steps), temp
