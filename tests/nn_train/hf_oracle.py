"""Tiny Hugging Face models (transformers + torch CPU) that serve as the parity oracle, and test helpers."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

REPO_ROOT = Path(__file__).resolve().parents[2]

# Tiny Hugging Face models covering what the parity tests must: GQA ratios 1, 2, 4; tied and
# untied embeddings; default and llama3-scaled RoPE.
HF_CASES = {
    "qwen3_mha_untied": dict(model_type="qwen3", num_key_value_heads=4, tie_word_embeddings=False),
    "qwen3_gqa2_tied": dict(model_type="qwen3", num_key_value_heads=2, tie_word_embeddings=True),
    "qwen3_gqa4_untied": dict(model_type="qwen3", num_key_value_heads=1, tie_word_embeddings=False),
    "llama_gqa4_tied_llama3_rope": dict(model_type="llama", num_key_value_heads=1, tie_word_embeddings=True, rope="llama3"),
    "llama_gqa2_untied": dict(model_type="llama", num_key_value_heads=2, tie_word_embeddings=False, rope="default"),
    # Qwen3-MoE: 8 experts top-2 renormalised, and 4 experts top-2 as the raw softmax weights.
    "qwen3_moe_8x2_gqa2_untied": dict(model_type="qwen3_moe", num_key_value_heads=2, tie_word_embeddings=False, num_experts=8,
                                      num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True),
    "qwen3_moe_4x2_gqa4_tied_unnormed": dict(model_type="qwen3_moe", num_key_value_heads=1, tie_word_embeddings=True, num_experts=4,
                                             num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=False),
    # Qwen3.5: Gated DeltaNet layers (grouped value heads, 4 per 2 key heads) and gated full attention
    # with partial rotary embeddings; dense, and MoE with a shared expert.
    "qwen3_5_gqa2_untied": dict(model_type="qwen3_5", num_key_value_heads=2, tie_word_embeddings=False, num_hidden_layers=4,
                                layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"]),
    "qwen3_5_moe_8x2_gqa4_tied": dict(model_type="qwen3_5_moe", num_key_value_heads=1, tie_word_embeddings=True, num_hidden_layers=3,
                                      layer_types=["full_attention", "linear_attention", "full_attention"], num_experts=8,
                                      num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=40),
}
_QWEN3_5_LINEAR = dict(linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=8,
                       linear_conv_kernel_dim=4)
VOCAB = 300


def build_hf_model(case: str, seed: int = 0, dtype=None):
    """A random tiny transformers model for `case` (norm weights randomised too, so they matter)."""
    torch = pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")
    import transformers

    torch.set_num_threads(1)  # JAX and torch in one process each want every core
    spec = dict(HF_CASES[case])
    model_type, rope = spec.pop("model_type"), spec.pop("rope", "default")
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  head_dim=16, max_position_embeddings=256)
    common.update(spec)
    torch.manual_seed(seed)
    if model_type in ("qwen3_5", "qwen3_5_moe"):
        rope = {"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5}
        if model_type == "qwen3_5":
            model = transformers.Qwen3_5ForCausalLM(transformers.Qwen3_5TextConfig(**common, **_QWEN3_5_LINEAR, rope_parameters=rope))
        else:
            del common["intermediate_size"]
            model = transformers.Qwen3_5MoeForCausalLM(transformers.Qwen3_5MoeTextConfig(**common, **_QWEN3_5_LINEAR, rope_parameters=rope))
    elif model_type == "qwen3":
        config = transformers.Qwen3Config(**common, rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})
        model = transformers.Qwen3ForCausalLM(config)
    elif model_type == "qwen3_moe":
        config = transformers.Qwen3MoeConfig(**common, rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})
        model = transformers.Qwen3MoeForCausalLM(config)
    else:
        rope_parameters = {"rope_type": "default", "rope_theta": 500_000.0}
        if rope == "llama3":  # original context 32 < test lengths, so every scaling regime is exercised
            rope_parameters = {"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
        config = transformers.LlamaConfig(**common, rope_parameters=rope_parameters)
        model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith(("A_log", "dt_bias")):
                param.add_(0.1 * torch.randn_like(param))
            if name.endswith("mlp.gate.weight"):  # a router that prefers some experts clearly, so routing matters
                param.normal_(0.0, 0.5)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def hf_logits(model, tokens: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.float().numpy()


def assert_greedy_generation_matches(hf_model, ours, prompts, new_tokens: int = 8) -> None:
    """Our sampler's greedy continuation of each prompt (rows of different lengths, left-padded
    together) equals transformers' generate() of that prompt alone, token for token."""
    import torch
    from eval.sampler import Sampler
    from eval.types import SamplingParams

    generated = Sampler(ours, None, stop_tokens=(), batch_size=4).generate_tokens(
        prompts, SamplingParams(samples=1, temperature=0.0, max_new_tokens=new_tokens))
    for prompt, tokens in zip(prompts, generated):
        with torch.no_grad():
            out = hf_model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                    do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                    eos_token_id=None, pad_token_id=0)
        assert tokens == out[0, len(prompt):].tolist()


def random_tokens(batch: int = 2, length: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, VOCAB, (batch, length)).astype(np.int32)



def _call(model, tokens, positions, segment_ids):
    return model(tokens, positions=positions, segment_ids=segment_ids)


_jitted_forward = nnx.jit(_call)


def forward(model, tokens, positions=None, segment_ids=None) -> np.ndarray:
    """The model's logits as numpy, through one jitted function (eager op-by-op dispatch of a
    whole forward is far slower on CPU than compiling it once)."""
    as_array = lambda x: None if x is None else jnp.asarray(x)
    return np.asarray(_jitted_forward(model, as_array(tokens), as_array(positions), as_array(segment_ids)))
