"""Forward+backward throughput of our model against transformers' PyTorch model of the same config.

    python -m nn_train.models.benchmark --preset=qwen3_small --batch=8 --seq_len=256

Both sides run the same shapes from random weights: next-token cross-entropy over the batch,
gradients for every parameter (full fine-tuning), float32, on this host's CPU (JAX on its default
backend). Steady-state time per step excludes compilation/warm-up; the ratio is ours / torch
tokens per second, so > 1 means we are faster.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from nn_train.metrics import median_step_seconds
from nn_train.models import create_model, get_config, param_count, to_hf_config, token_log_probs

_PRESET = flags.DEFINE_string("preset", "qwen3_small", "Model preset (nn_train.models.PRESETS).")
_BATCH = flags.DEFINE_integer("batch", 8, "Sequences per step.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 256, "Tokens per sequence.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation, allocator warm-up).")
_REMAT = flags.DEFINE_enum("remat", "none", ["none", "full", "save_dots"], "Rematerialisation policy of our model.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time transformers' PyTorch model (needs torch from requirements-dev.txt).")


def time_ours(config, tokens: np.ndarray, warmup: int, steps: int) -> float:
    graphdef, params = nnx.split(create_model(config, seed=0), nnx.Param)

    @jax.jit
    def loss_and_grads(params, tokens):
        def loss(params):
            logits = nnx.merge(graphdef, params)(tokens[:, :-1])
            return -token_log_probs(logits, tokens[:, 1:]).mean()

        return jax.value_and_grad(loss)(params)

    tokens = jnp.asarray(tokens)
    return median_step_seconds(lambda: jax.block_until_ready(loss_and_grads(params, tokens)), warmup, steps)


def time_torch(config, tokens: np.ndarray, warmup: int, steps: int) -> float:
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(to_hf_config(config), dtype=torch.float32)
    model.train()
    inputs = torch.as_tensor(tokens, dtype=torch.long)

    def step():
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=inputs, labels=inputs).loss
        loss.backward()

    return median_step_seconds(step, warmup, steps)


def main(argv):
    del argv
    config = get_config(_PRESET.value, remat=_REMAT.value)
    batch, length = _BATCH.value, _SEQ_LEN.value
    tokens = np.random.RandomState(0).randint(0, config.vocab_size, (batch, length + 1)).astype(np.int32)
    step_tokens = batch * length
    device = jax.devices()[0]
    print(f"forward+backward, {_PRESET.value} ({param_count(config) / 1e6:.1f}M params), batch {batch} x {length} tokens, "
          f"float32, remat={_REMAT.value}")
    print(f"host: {os.cpu_count()} CPU cores; JAX backend: {device.platform} ({device.device_kind}), {jax.device_count()} devices")

    ours = time_ours(config, tokens, _WARMUP.value, _STEPS.value)
    print(f"  ours (JAX/XLA, Flax NNX)   {step_tokens / ours:>10,.0f} tokens/s   {ours * 1e3:8.1f} ms/step")
    if not _TORCH.value:
        return
    try:
        import torch
    except ImportError:
        print("  transformers (PyTorch)     skipped: torch is not installed (pip install -r requirements-dev.txt)")
        return
    torch.set_num_threads(os.cpu_count() or 1)
    theirs = time_torch(config, tokens, _WARMUP.value, _STEPS.value)
    print(f"  transformers (PyTorch)     {step_tokens / theirs:>10,.0f} tokens/s   {theirs * 1e3:8.1f} ms/step   (torch {torch.__version__}, CPU)")
    print(f"  ratio ours / transformers  {theirs / ours:10.2f}x")


if __name__ == "__main__":
    app.run(main)
