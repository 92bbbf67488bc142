"""What an accelerator does with this code, in one command (`make bench-accel`, ~8 min on an H100):

    python -m nn_train.accel_benchmark [--sections=full,lora,decode,attention] [size flags]

  full       full fine-tune of a qwen3_1p7b-shape model, bf16 compute, rows of 2,048 tokens: tokens/s
             and MFU of the real train step (nn_train.benchmark.time_train_step), against the bare
             forward+backward
  lora       LoRA r32 + unembedding on a qwen3_8b shape (random weights, bf16 frozen), rows of 4,096
  decode     greedy decoding with the KV-cache sampler: new tokens/s against the HBM roofline (every
             parameter, and the cache's real tokens, read once per decode step)
  attention  one attention layer's forward+backward at 4,096 tokens, qwen3_8b heads, bf16: the
             platform's long-row kernel (Splash on TPU, blockwise elsewhere) against dense

MFU and the roofline need the device's peak bf16 FLOP/s and HBM bandwidth (nn_train.metrics); on
a CPU they print n/a. Every size is a flag, so the test suite runs the whole script at toy sizes
(tests/nn_train/test_accel_benchmark.py) and it cannot rot before a device is lent. Random weights
throughout: nothing is downloaded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

SECTIONS = ("full", "lora", "decode", "attention", "moe")
_SECTIONS = flags.DEFINE_list("sections", list(SECTIONS), "Which measurements to run.")
_FULL_PRESET = flags.DEFINE_string("full_preset", "qwen3_1p7b", "Model shape for the full fine-tune.")
_FULL_SEQ_LEN = flags.DEFINE_integer("full_seq_len", 2048, "Tokens per row, full fine-tune.")
_FULL_BATCH = flags.DEFINE_integer("full_batch", 8, "Rows per step (all devices), full fine-tune.")
_FULL_REMAT = flags.DEFINE_enum("full_remat", "save_dots", ["none", "full", "save_dots"], "Remat, full fine-tune.")
_LORA_PRESET = flags.DEFINE_string("lora_preset", "qwen3_8b", "Model shape for LoRA.")
_LORA_SEQ_LEN = flags.DEFINE_integer("lora_seq_len", 4096, "Tokens per row, LoRA.")
_LORA_BATCH = flags.DEFINE_integer("lora_batch", 4, "Rows per step (all devices), LoRA.")
_LORA_REMAT = flags.DEFINE_enum("lora_remat", "full", ["none", "full", "save_dots"], "Remat, LoRA.")
_DECODE_PRESET = flags.DEFINE_string("decode_preset", "qwen3_1p7b", "Model shape for decoding.")
_DECODE_BATCH = flags.DEFINE_integer("decode_batch", 32, "Prompts per generate call.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 128, "Tokens per prompt.")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 128, "Tokens generated per prompt.")
_ATTENTION_PRESET = flags.DEFINE_string("attention_preset", "qwen3_8b", "Head shapes for the attention kernels.")
_ATTENTION_LENGTH = flags.DEFINE_integer("attention_length", 4096, "Row length of the attention comparison.")
_ATTENTION_BLOCK = flags.DEFINE_integer("attention_block", 512, "Block size of the long-row kernel.")
_MOE_PRESET = flags.DEFINE_string("moe_preset", "qwen3_30b_a3b", "Model shape of the MoE layer (its experts, top-k, widths).")
_MOE_TOKENS = flags.DEFINE_integer("moe_tokens", 8192, "Tokens through the MoE layer per step.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (after warm-up) per measurement.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation).")


def _percent(x: float | None) -> str:
    return f"{x:.1%}" if x is not None else "n/a"


def train_section(title: str, **kwargs) -> None:
    from nn_train.timing import time_train_step

    t = time_train_step(dtype="bfloat16", steps=_STEPS.value, warmup=_WARMUP.value, **kwargs)
    print(f"{title}: {kwargs['batch']} x {kwargs['seq_len']:,} tokens, remat={kwargs['remat']}, mesh {t.mesh}")
    print(f"  train step      {t.tokens / t.step_seconds / t.devices:>10,.0f} tokens/s/device  {t.step_seconds * 1e3:9.1f} ms  "
          f"MFU {_percent(t.mfu)}")
    print(f"  bare fwd+bwd    {t.tokens / t.bare_seconds / t.devices:>10,.0f} tokens/s/device  {t.bare_seconds * 1e3:9.1f} ms  "
          f"(train step / bare {t.bare_seconds / t.step_seconds:.2f}x)")


def decode_section() -> None:
    from eval.sampler import Sampler
    from eval.types import SamplingParams
    from nn_train.metrics import hbm_bandwidth, median_step_seconds
    from nn_train.models import create_model, get_config, param_count

    config = get_config(_DECODE_PRESET.value, dtype="bfloat16", param_dtype="bfloat16")
    batch, prompt_len, new_tokens = _DECODE_BATCH.value, _PROMPT_LEN.value, _NEW_TOKENS.value
    model = create_model(config, seed=0)
    sampler = Sampler(model, None, stop_tokens=(), batch_size=batch, max_len=prompt_len + new_tokens)
    prompts = np.random.RandomState(0).randint(0, config.vocab_size, (batch, prompt_len)).tolist()
    params = SamplingParams(samples=1, temperature=0.0, max_new_tokens=new_tokens)
    seconds = median_step_seconds(lambda: sampler.generate_tokens(prompts, params), _WARMUP.value, _STEPS.value)
    tokens_per_s = batch * new_tokens / seconds
    # The roofline of a decode step: read every parameter once, and each row's cached keys and values
    # (on average prompt + new/2 tokens per row) once; prefill is counted in the measured time only.
    param_bytes = param_count(config) * 2
    kv_bytes = batch * (prompt_len + new_tokens / 2) * config.num_layers * 2 * config.num_kv_heads * config.head_dim * 2
    bandwidth = hbm_bandwidth(jax.devices()[0].device_kind)
    roofline = batch * bandwidth / (param_bytes + kv_bytes) if bandwidth else None
    print(f"decode, {_DECODE_PRESET.value} bf16: batch {batch}, {prompt_len}-token prompts, {new_tokens} new tokens")
    print(f"  sampler         {tokens_per_s:>10,.0f} new tokens/s  {seconds * 1e3:9.1f} ms/call (prefill included)")
    print(f"  HBM roofline    {roofline:>10,.0f} new tokens/s  ({param_bytes / 2**30:.2f} GiB parameters + "
          f"{kv_bytes / 2**30:.2f} GiB cache per step at {bandwidth / 1e12:.2f} TB/s): {tokens_per_s / roofline:.1%} of it"
          if roofline else "  HBM roofline           n/a  (no HBM bandwidth known for this device)")


def attention_section() -> None:
    from nn_train.models import get_config
    from nn_train.models.attention import resolve_backend
    from nn_train.timing import attention_step_seconds

    config = get_config(_ATTENTION_PRESET.value)
    length, block = _ATTENTION_LENGTH.value, _ATTENTION_BLOCK.value
    kernel = resolve_backend("auto", length, length, block)
    dense = attention_step_seconds(config, length, "dense", block, _STEPS.value, jnp.bfloat16)
    fast = attention_step_seconds(config, length, kernel, block, _STEPS.value, jnp.bfloat16)
    print(f"attention fwd+bwd, {_ATTENTION_PRESET.value} heads, bf16, 1 x {length:,} tokens (two packed documents)")
    print(f"  {kernel:<14s}  {fast * 1e3:9.2f} ms   dense {dense * 1e3:9.2f} ms   dense / {kernel} {dense / fast:.2f}x")


def moe_section() -> None:
    from nn_train.models import get_config
    from nn_train.models.moe import resolve_dispatch
    from nn_train.timing import moe_layer_step

    config = get_config(_MOE_PRESET.value, dtype="bfloat16", param_dtype="bfloat16")
    tokens, dispatch = _MOE_TOKENS.value, resolve_dispatch("auto")
    fast, _ = moe_layer_step(config, dispatch, tokens, _STEPS.value)
    dense, _ = moe_layer_step(config, "dense", tokens, _STEPS.value)
    print(f"MoE layer fwd+bwd, {_MOE_PRESET.value} experts (E={config.num_experts}, top-{config.experts_per_token}, "
          f"F={config.expert_mlp_dim}), bf16, {tokens:,} tokens")
    print(f"  {dispatch:<14s}  {fast * 1e3:9.2f} ms   dense {dense * 1e3:9.2f} ms   dense / {dispatch} {dense / fast:.2f}x")


def main(argv):
    del argv
    device = jax.devices()[0]
    print(f"accelerator benchmark on {jax.device_count()} x {device.device_kind} ({device.platform})")
    sections = set(_SECTIONS.value)
    unknown = sections - set(SECTIONS)
    if unknown:
        raise app.UsageError(f"--sections: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if "full" in sections:
        train_section(f"full fine-tune, {_FULL_PRESET.value} shape", preset=_FULL_PRESET.value, seq_len=_FULL_SEQ_LEN.value,
                      batch=_FULL_BATCH.value, remat=_FULL_REMAT.value, lora=False)
    if "lora" in sections:
        train_section(f"LoRA r32, {_LORA_PRESET.value} shape, bf16 frozen weights", preset=_LORA_PRESET.value,
                      seq_len=_LORA_SEQ_LEN.value, batch=_LORA_BATCH.value, remat=_LORA_REMAT.value, lora=True,
                      param_dtype="bfloat16")
    if "decode" in sections:
        decode_section()
    if "attention" in sections:
        attention_section()
    if "moe" in sections:
        moe_section()


if __name__ == "__main__":
    app.run(main)
