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

import jax
from absl import app, flags

from nn_train.models import get_config
from nn_train.timing import attention_step_seconds, attention_temp_bytes

_PRESET = flags.DEFINE_string("preset", "qwen3_8b", "Model preset whose head shapes (N, K, H) are used.")
_LENGTHS = flags.DEFINE_list("lengths", ["2048", "4096", "8192", "16384"], "Row lengths T compiled for memory.")
_BLOCK = flags.DEFINE_integer("block_size", 512, "Key block of the blockwise kernel.")
_TIME_LENGTH = flags.DEFINE_integer("time_length", 1024, "Row length of the timed run (0: no timing).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up.")


def main(argv):
    del argv
    config = get_config(_PRESET.value)
    block = _BLOCK.value
    print(f"attention fwd+bwd, {_PRESET.value} heads (N={config.num_heads}, K={config.num_kv_heads}, H={config.head_dim}), "
          f"float32, batch 1, blockwise key block {block}, on {jax.devices()[0].platform}")
    print("| T | dense temp MiB | blockwise temp MiB | dense / blockwise |")
    print("|---|---|---|---|")
    for length in (int(x) for x in _LENGTHS.value):
        dense, blockwise = attention_temp_bytes(config, length, "dense", block), attention_temp_bytes(config, length, "blockwise", block)
        print(f"| {length:,} | {dense / 2**20:,.0f} | {blockwise / 2**20:,.0f} | {dense / blockwise:.1f}x |")
    if _TIME_LENGTH.value:
        t = _TIME_LENGTH.value
        dense = attention_step_seconds(config, t, "dense", block, _STEPS.value)
        blockwise = attention_step_seconds(config, t, "blockwise", block, _STEPS.value)
        print(f"time at T={t}: dense {dense * 1e3:.1f} ms, blockwise {blockwise * 1e3:.1f} ms; "
              f"ratio dense / blockwise {dense / blockwise:.2f}x")


if __name__ == "__main__":
    app.run(main)
