"""Steady-state training throughput and MFU of the real train step, on whatever devices exist.

    python -m nn_train.benchmark --preset=qwen3_0p6b --seq_len=2048 --batch=16 --dtype=bfloat16 [--lora]

Random initial weights and synthetic tokens drive `nn_train.trainer.setup`'s jitted step (the
one training runs), over a mesh of every device (fsdp = all by default). The baseline, timed in
the same run on the same mesh and batch, is the bare forward+backward of the model (no optimizer,
no accumulation): the ratio shows what the rest of the step costs. The same script serves CPU,
GPU and TPU; MFU needs a device in nn_train.metrics.PEAK_BF16_FLOPS and bf16 compute.
"""

from __future__ import annotations

import jax
from absl import app, flags

from nn_train.models import param_count
from nn_train.timing import time_train_step

_PRESET = flags.DEFINE_string("preset", "qwen3_small", "Model preset.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 256, "Tokens per row.")
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch (rows per step).")
_MICROBATCHES = flags.DEFINE_integer("microbatches", 1, "Gradient accumulation steps.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (parameters stay float32).")
_REMAT = flags.DEFINE_enum("remat", "none", ["none", "full", "save_dots"], "Rematerialisation policy.")
_LORA = flags.DEFINE_bool("lora", False, "LoRA rank 32 with the unembedding (the paper's recipe) instead of full fine-tuning.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first.")
_TENSOR = flags.DEFINE_integer("tensor", 1, "Tensor-parallel mesh size (the rest is fsdp).")


def main(argv):
    del argv
    timing = time_train_step(preset=_PRESET.value, seq_len=_SEQ_LEN.value, batch=_BATCH.value, dtype=_DTYPE.value,
                             remat=_REMAT.value, lora=_LORA.value, microbatches=_MICROBATCHES.value, tensor=_TENSOR.value,
                             steps=_STEPS.value, warmup=_WARMUP.value)
    devices, step_time, bare_time = timing.devices, timing.step_seconds, timing.bare_seconds
    tokens = timing.tokens
    device = jax.devices()[0]
    mode = "LoRA r32 + unembedding" if _LORA.value else "full fine-tune"
    print(f"train step, {_PRESET.value} ({param_count(timing.model_config) / 1e9:.3f}B params), {mode}, batch {_BATCH.value} x "
          f"{_SEQ_LEN.value} tokens, {_MICROBATCHES.value} microbatch(es), compute {_DTYPE.value}, remat={_REMAT.value}")
    print(f"devices: {devices} x {device.device_kind} ({device.platform}); mesh {timing.mesh}")
    print(f"  train step (AdamW, sharded)     {tokens / step_time / devices:>12,.0f} tokens/s/device   {step_time * 1e3:9.1f} ms/step")
    print(f"  TFLOP/s/device                  {timing.flops / step_time / devices / 1e12:12.3f}")
    print(f"  MFU                             {timing.mfu:12.1%}" if timing.mfu is not None else
          f"  MFU                             {'n/a':>12}   (no bf16 peak known for {device.device_kind} / {_DTYPE.value})")
    print(f"  baseline: bare forward+backward {tokens / bare_time / devices:>12,.0f} tokens/s/device   {bare_time * 1e3:9.1f} ms/step")
    print(f"  ratio train step / bare         {bare_time / step_time:12.2f}x")


if __name__ == "__main__":
    app.run(main)
