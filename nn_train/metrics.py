"""Training metrics: model FLOPs, MFU against a table of peak device FLOP/s, and the writers.

FLOPs convention (as in PaLM and MaxText), per trained token:
  matmul:    6 · (parameters in matmuls: every projection, MLP and the unembedding; not the
             embedding lookup or norms) — forward 2, backward 4, whether or not a weight is frozen
  attention: 6 · 2 · layers · heads · head_dim · seq_len / 2 — the two attention products, halved
             for the causal mask (only the lower triangle is needed)
LoRA runs skip the frozen weights' gradient (about a third of the matmul work) but are still
counted with the full-model convention, so MFU stays comparable across runs.

Peak FLOP/s per device (dense, no sparsity) from the vendors' datasheets:
  NVIDIA H100 SXM / H200: 989 TFLOP/s bf16 (H100 datasheet; H200 product brief)
  NVIDIA A100: 312 TFLOP/s bf16 (A100 datasheet)
  Cloud TPU v4: 275, v5e: 197, v5p: 459, v6e (Trillium): 918 TFLOP/s bf16 (cloud.google.com/tpu/docs)
Float32 training has no entry (tensor cores run TF32 or plain FP32 depending on flags), nor does
a CPU: MFU is then reported as n/a.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from nn_train.models.config import ModelConfig

PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e reports device_kind "TPU v5 lite"
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,  # v6e
    "TPU v6e": 918e12,
}


# HBM bandwidth of one device in bytes/s (vendor figures; H100 / H200 are the SXM parts), keyed
# like PEAK_BF16_FLOPS by a substring of jax's device_kind.
HBM_BYTES_PER_S = {
    "H100": 3.35e12,
    "H200": 4.8e12,
    "A100": 2.04e12,
    "TPU v4": 1.2e12,
    "TPU v5 lite": 8.19e11,
    "TPU v5e": 8.19e11,
    "TPU v5p": 2.765e12,
    "TPU v5": 2.765e12,
    "TPU v6 lite": 1.64e12,
    "TPU v6e": 1.64e12,
}


def hbm_bandwidth(device_kind: str) -> float | None:
    """HBM bytes/s of one device, or None when unknown (CPU, new chips)."""
    return _for_device_kind(HBM_BYTES_PER_S, device_kind)


def _for_device_kind(table: dict[str, float], device_kind: str) -> float | None:
    """The first entry whose name is in `device_kind` (case-insensitive); None when none is."""
    return next((value for name, value in table.items() if name.lower() in device_kind.lower()), None)


def matmul_params(config: ModelConfig) -> int:
    """The weights one token multiplies by: every projection, a token's experts, the unembedding."""
    d, n, k, h = config.embed_dim, config.num_heads, config.num_kv_heads, config.head_dim
    attention = d * n * h * (3 if config.attention_output_gate else 2) + d * k * h * 2  # q (+ gate), o; k, v
    hv, dv = config.linear_num_value_heads, config.linear_value_head_dim
    linear = d * (config.linear_conv_dim + 2 * hv * dv + 2 * hv)  # in_proj qkv, z, a, b; out_proj
    mixers = sum(attention if mixer == "full_attention" else linear for mixer in config.mixers)
    return mixers + config.num_layers * config.active_mlp_params + d * config.vocab_size  # + unembedding (tied or not)


def train_flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """6 × matmul weights + attention's score and value products (causal: half the row on average) +
    for Gated DeltaNet layers, their chunked recurrence (per value head: the state read and write,
    4·Dk·Dv, and the chunk's in-chunk products, 2·64·(Dk + Dv))."""
    mixers = config.mixers
    attention = 2 * mixers.count("full_attention") * config.num_heads * config.head_dim * seq_len / 2
    dk, dv = config.linear_key_head_dim, config.linear_value_head_dim
    linear = mixers.count("linear_attention") * config.linear_num_value_heads * (4 * dk * dv + 2 * 64 * (dk + dv))
    return 6.0 * matmul_params(config) + 6.0 * attention + 6.0 * linear


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """Peak dense FLOP/s of one device for `dtype`, or None when unknown (CPU, float32, new chips)."""
    if dtype != "bfloat16":
        return None
    return _for_device_kind(PEAK_BF16_FLOPS, device_kind)


def median_step_seconds(step, warmup: int, steps: int) -> float:
    """Median seconds per step of `step()`, which must block until its result is ready."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class MetricsWriter:
    """One record per logged step to metrics.jsonl and TensorBoard event files (process 0 only)."""

    def __init__(self, workdir: Path, *, enabled: bool = True):
        self.enabled = enabled
        self._tensorboard = None
        self._jsonl = None
        if enabled:
            workdir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self._jsonl.flush()  # a killed run keeps every line it logged
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._tensorboard.add_scalar(f"train/{key}", value, step)

    def flush(self) -> None:
        """Puts every record written so far into the files (TensorBoard buffers its events)."""
        if self.enabled:
            self._tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()
