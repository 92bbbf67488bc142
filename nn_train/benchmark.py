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
from flax import nnx

from nn_train.config import default_config
from nn_train.metrics import peak_flops, train_flops_per_token
from nn_train.models import param_count, token_log_probs
from nn_train.metrics import median_step_seconds
from nn_train.trainer import setup

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
    config = default_config()
    config.model.preset = _PRESET.value
    config.model.dtype = _DTYPE.value
    config.model.remat = _REMAT.value
    config.lora.enabled = _LORA.value
    config.data.seq_len = _SEQ_LEN.value
    config.training.global_batch_size = _BATCH.value
    config.training.microbatches = _MICROBATCHES.value
    config.training.num_steps = 1000
    config.mesh.tensor = _TENSOR.value
    run = setup(config)

    from nn_train.data import SyntheticSource

    source = SyntheticSource(vocab_size=run.model_config.vocab_size, seq_len=_SEQ_LEN.value, num_examples=_BATCH.value, seed=0)
    batch = run.device_batch(source.next_batch(_BATCH.value, _MICROBATCHES.value))
    state = [run.state]

    def train_step():
        state[0], metrics = run.step_fn(state[0], run.frozen, batch)
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
        jax.block_until_ready(bare_forward_backward(state[0]["params"], run.frozen, batch))

    with jax.set_mesh(run.mesh):
        step_time = median_step_seconds(train_step, _WARMUP.value, _STEPS.value)
        bare_time = median_step_seconds(bare_step, _WARMUP.value, _STEPS.value)

    devices = run.mesh.size
    tokens = _BATCH.value * _SEQ_LEN.value
    flops = train_flops_per_token(run.model_config, _SEQ_LEN.value) * tokens
    device = jax.devices()[0]
    peak = peak_flops(device.device_kind, _DTYPE.value)
    mode = "LoRA r32 + unembedding" if _LORA.value else "full fine-tune"
    print(f"train step, {_PRESET.value} ({param_count(run.model_config) / 1e9:.3f}B params), {mode}, batch {_BATCH.value} x "
          f"{_SEQ_LEN.value} tokens, {_MICROBATCHES.value} microbatch(es), compute {_DTYPE.value}, remat={_REMAT.value}")
    print(f"devices: {devices} x {device.device_kind} ({device.platform}); mesh {dict(run.mesh.shape)}")
    print(f"  train step (AdamW, sharded)     {tokens / step_time / devices:>12,.0f} tokens/s/device   {step_time * 1e3:9.1f} ms/step")
    print(f"  TFLOP/s/device                  {flops / step_time / devices / 1e12:12.3f}")
    print(f"  MFU                             {flops / step_time / devices / peak:12.1%}" if peak else
          f"  MFU                             {'n/a':>12}   (no bf16 peak known for {device.device_kind} / {_DTYPE.value})")
    print(f"  baseline: bare forward+backward {tokens / bare_time / devices:>12,.0f} tokens/s/device   {bare_time * 1e3:9.1f} ms/step")
    print(f"  ratio train step / bare         {bare_time / step_time:12.2f}x")


if __name__ == "__main__":
    app.run(main)
