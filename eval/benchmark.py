"""Generation throughput of eval.sampler against transformers' PyTorch `generate`, same weights.

    python -m eval.benchmark --preset=qwen3_small --batch=8 --prompt_len=64 --new_tokens=64

Our model is created from the preset (random weights), exported to a Hugging Face checkpoint
and loaded by transformers, so both sides hold identical weights. Both decode greedily with a KV
cache from the same batch of prompts (equal lengths: no padding on either side) for exactly
`new_tokens` tokens (no stop token), float32, on this host's CPU (JAX on its default backend).
Time per call is the median after warm-up (compilation excluded); the ratio is ours / torch
new tokens per second, so > 1 means we are faster. The first rows' tokens are compared too.
"""

from __future__ import annotations

import os
import tempfile

import jax
import numpy as np
from absl import app, flags

from eval.sampler import Sampler
from eval.types import SamplingParams
from nn_train.metrics import median_step_seconds
from nn_train.models import create_model, get_config, param_count
from nn_train.models.hf_checkpoint import export_hf_model

_PRESET = flags.DEFINE_string("preset", "qwen3_small", "Model preset (nn_train.models.PRESETS).")
_BATCH = flags.DEFINE_integer("batch", 8, "Prompts per generate call.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 64, "Tokens per prompt.")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 64, "Tokens generated per prompt.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed calls (after warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed calls first (compilation, allocator warm-up).")
_TORCH = flags.DEFINE_bool("torch", True, "Also time transformers' generate (needs torch from requirements-dev.txt).")


def main(argv):
    del argv
    config = get_config(_PRESET.value)
    batch, prompt_len, new_tokens = _BATCH.value, _PROMPT_LEN.value, _NEW_TOKENS.value
    prompts = np.random.RandomState(0).randint(0, config.vocab_size, (batch, prompt_len)).astype(np.int32)
    generated = batch * new_tokens
    device = jax.devices()[0]
    print(f"greedy generation, {_PRESET.value} ({param_count(config) / 1e6:.1f}M params), batch {batch}, "
          f"{prompt_len}-token prompts, {new_tokens} new tokens, float32")
    print(f"host: {os.cpu_count()} CPU cores; JAX backend: {device.platform} ({device.device_kind}), {jax.device_count()} devices")

    model = create_model(config, seed=0)
    sampler = Sampler(model, None, stop_tokens=(), batch_size=batch)
    params = SamplingParams(samples=1, temperature=0.0, max_new_tokens=new_tokens)
    rows = [list(p) for p in prompts]
    ours_tokens = []
    ours = median_step_seconds(lambda: ours_tokens.append(sampler.generate_tokens(rows, params)), _WARMUP.value, _STEPS.value)
    print(f"  ours (JAX KV-cache sampler)  {generated / ours:>10,.0f} new tokens/s   {ours * 1e3:8.1f} ms/call")
    if not _TORCH.value:
        return
    try:
        import torch
        import transformers
    except ImportError:
        print("  transformers (PyTorch)       skipped: torch is not installed (pip install -r requirements-dev.txt)")
        return
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as directory:
        export_hf_model(model, os.path.join(directory, "hf"))
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(directory, "hf"), dtype=torch.float32).eval()
    inputs = torch.as_tensor(prompts, dtype=torch.long)
    theirs_tokens = []

    def hf_generate():
        with torch.no_grad():
            out = hf_model.generate(inputs, attention_mask=torch.ones_like(inputs), do_sample=False, max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0)
        theirs_tokens.append(out[:, prompt_len:].tolist())

    theirs = median_step_seconds(hf_generate, _WARMUP.value, _STEPS.value)
    print(f"  transformers generate        {generated / theirs:>10,.0f} new tokens/s   {theirs * 1e3:8.1f} ms/call   "
          f"(torch {torch.__version__}, CPU)")
    print(f"  ratio ours / transformers    {theirs / ours:10.2f}x")
    same = sum(a == b for a, b in zip(ours_tokens[-1], theirs_tokens[-1]))
    print(f"  identical greedy outputs     {same} of {batch} rows")


if __name__ == "__main__":
    app.run(main)
