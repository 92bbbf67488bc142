"""Attention memory and speed: the blockwise kernel against the dense one, in the same run.

    python -m nn_train.models.attention_benchmark --preset=qwen3_8b --lengths=2048,4096,8192,16384

Memory: one attention layer's forward+backward (gradients for q, k and v) of the preset's head
shapes, one row of packed segments, is lowered and compiled for this host without running it, and
XLA's `memory_analysis()` gives its temporary bytes; nothing of that size is allocated, so the
lengths may exceed this machine's memory. The dense kernel grows 4x per doubled row, the blockwise
one 2x (linear in T). Speed: both kernels run forward+backward at --time_length; the ratio is
dense / blockwise seconds (> 1: blockwise faster).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from nn_train.models import get_config
from nn_train.models.attention import Mask, attend

_PRESET = flags.DEFINE_string("preset", "qwen3_8b", "Model preset whose head shapes (N, K, H) are used.")
_LENGTHS = flags.DEFINE_list("lengths", ["2048", "4096", "8192", "16384"], "Row lengths T compiled for memory.")
_BLOCK = flags.DEFINE_integer("block_size", 512, "Key block of the blockwise kernel.")
_TIME_LENGTH = flags.DEFINE_integer("time_length", 1024, "Row length of the timed run (0: no timing).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up.")


def _grad_fn(backend: str, block_size: int):
    def loss(q, k, v, segments):
        return attend(q, k, v, Mask.packed(segments), backend=backend, block_size=block_size).astype(jnp.float32).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def _shapes(config, length: int):
    q = jax.ShapeDtypeStruct((1, length, config.num_heads, config.head_dim), jnp.float32)
    kv = jax.ShapeDtypeStruct((1, length, config.num_kv_heads, config.head_dim), jnp.float32)
    return q, kv, kv, jax.ShapeDtypeStruct((1, length), jnp.int32)


def temp_bytes(config, length: int, backend: str, block_size: int) -> int:
    compiled = _grad_fn(backend, block_size).lower(*_shapes(config, length)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def step_seconds(config, length: int, backend: str, block_size: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    q, k, v, _ = _shapes(config, length)
    args = [jnp.asarray(rng.standard_normal(s.shape), jnp.float32) for s in (q, k, v)]
    segments = jnp.asarray(np.repeat([1, 2], [length // 2, length - length // 2])[None], jnp.int32)  # two packed documents
    fn = _grad_fn(backend, block_size)
    jax.block_until_ready(fn(*args, segments))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args, segments))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv):
    del argv
    config = get_config(_PRESET.value)
    block = _BLOCK.value
    print(f"attention fwd+bwd, {_PRESET.value} heads (N={config.num_heads}, K={config.num_kv_heads}, H={config.head_dim}), "
          f"float32, batch 1, blockwise key block {block}, on {jax.devices()[0].platform}")
    print("| T | dense temp MiB | blockwise temp MiB | dense / blockwise |")
    print("|---|---|---|---|")
    for length in (int(x) for x in _LENGTHS.value):
        dense, blockwise = temp_bytes(config, length, "dense", block), temp_bytes(config, length, "blockwise", block)
        print(f"| {length:,} | {dense / 2**20:,.0f} | {blockwise / 2**20:,.0f} | {dense / blockwise:.1f}x |")
    if _TIME_LENGTH.value:
        t = _TIME_LENGTH.value
        dense = step_seconds(config, t, "dense", block, _STEPS.value)
        blockwise = step_seconds(config, t, "blockwise", block, _STEPS.value)
        print(f"time at T={t}: dense {dense * 1e3:.1f} ms, blockwise {blockwise * 1e3:.1f} ms; "
              f"ratio dense / blockwise {dense / blockwise:.2f}x")


if __name__ == "__main__":
    app.run(main)
