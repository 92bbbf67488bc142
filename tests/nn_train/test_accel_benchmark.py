"""`make bench-accel` at toy sizes on CPU, so the script a lent accelerator will run cannot rot:
every section runs the real train step, sampler and kernels and prints its line (MFU and the HBM
roofline are n/a on a CPU: no peak or bandwidth is known for it)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.nn_train.hf_oracle import REPO_ROOT

TOY = ["--full_preset=qwen3_tiny", "--full_seq_len=64", "--full_batch=8", "--lora_preset=qwen3_tiny", "--lora_seq_len=64",
       "--lora_batch=8", "--decode_preset=qwen3_tiny", "--decode_batch=2", "--prompt_len=8", "--new_tokens=8",
       "--attention_preset=qwen3_tiny", "--attention_length=256", "--attention_block=64", "--moe_preset=qwen3_moe_tiny",
       "--moe_tokens=64", "--steps=1", "--warmup=1"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "nn_train.accel_benchmark", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


def test_every_section_prints_its_measurement():
    result = _run(*TOY)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^full fine-tune, qwen3_tiny shape: 8 x 64 tokens, remat=save_dots", out, re.M), out
    assert re.search(r"^LoRA r32, qwen3_tiny shape, bf16 frozen weights: 8 x 64 tokens, remat=full", out, re.M), out
    assert len(re.findall(r"^  train step\s+[\d,]+ tokens/s/device\s+[\d.]+ ms  MFU n/a$", out, re.M)) == 2, out
    assert re.search(r"^  sampler\s+[\d,]+ new tokens/s", out, re.M) and "HBM roofline           n/a" in out, out
    assert re.search(r"^  blockwise\s+[\d.]+ ms   dense\s+[\d.]+ ms   dense / blockwise [\d.]+x$", out, re.M), out
    assert re.search(r"^MoE layer fwd\+bwd, qwen3_moe_tiny experts \(E=8, top-2, F=32\), bf16, 64 tokens$", out, re.M), out
    assert re.search(r"^  blocked\s+[\d.]+ ms   dense\s+[\d.]+ ms   dense / blocked [\d.]+x$", out, re.M), out  # auto on a CPU


def test_an_unknown_section_is_one_line():
    result = _run("--sections=full,speed", *TOY)
    assert result.returncode != 0
    assert "--sections: unknown speed; choose from full, lora, decode, attention, moe" in result.stderr
