"""Qwen3 presets (published checkpoints and tiny test sizes) and Hugging Face config translation."""

from __future__ import annotations

import transformers

from nn_train.models.config import ModelConfig, fields_from_hf, fields_to_hf

# Shapes from the published config.json of each Qwen/Qwen3-* checkpoint.
_QWEN3 = dict(family="qwen3", vocab_size=151_936, head_dim=128, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
              qk_norm=True, max_position_embeddings=40_960, bos_token_id=151_643, eos_token_id=151_645)

PRESETS = {
    "qwen3_0p6b": ModelConfig(**_QWEN3, embed_dim=1024, num_layers=28, num_heads=16, num_kv_heads=8, mlp_dim=3072, tie_embeddings=True),
    "qwen3_1p7b": ModelConfig(**_QWEN3, embed_dim=2048, num_layers=28, num_heads=16, num_kv_heads=8, mlp_dim=6144, tie_embeddings=True),
    "qwen3_4b": ModelConfig(**_QWEN3, embed_dim=2560, num_layers=36, num_heads=32, num_kv_heads=8, mlp_dim=9728, tie_embeddings=True),
    "qwen3_8b": ModelConfig(**_QWEN3, embed_dim=4096, num_layers=36, num_heads=32, num_kv_heads=8, mlp_dim=12_288, tie_embeddings=False),
    "qwen3_14b": ModelConfig(**_QWEN3, embed_dim=5120, num_layers=40, num_heads=40, num_kv_heads=8, mlp_dim=17_408, tie_embeddings=False),
    "qwen3_32b": ModelConfig(**_QWEN3, embed_dim=5120, num_layers=64, num_heads=64, num_kv_heads=8, mlp_dim=25_600, tie_embeddings=False),
    # CPU-sized: tiny for tests, small for CPU benchmarks, testbed for the CPU testbed's base model
    # (python -m testbed; testbed_narrow, its default); testbed_gpu for its larger twin (configs/testbed/gpu.py).
    "qwen3_tiny": ModelConfig(family="qwen3", vocab_size=512, embed_dim=64, num_layers=2, num_heads=4, num_kv_heads=2,
                              head_dim=16, mlp_dim=128, rope_theta=10_000.0, qk_norm=True, tie_embeddings=True,
                              max_position_embeddings=1024),
    "qwen3_small": ModelConfig(family="qwen3", vocab_size=4096, embed_dim=256, num_layers=4, num_heads=4, num_kv_heads=2,
                               head_dim=64, mlp_dim=768, rope_theta=10_000.0, qk_norm=True, tie_embeddings=True,
                               max_position_embeddings=2048),
    "qwen3_testbed": ModelConfig(family="qwen3", vocab_size=4096, embed_dim=192, num_layers=4, num_heads=3, num_kv_heads=1,
                                 head_dim=64, mlp_dim=512, rope_theta=10_000.0, qk_norm=True, tie_embeddings=True,
                                 max_position_embeddings=2048),
    # Narrower than qwen3_testbed, 1.7x its tokens/s on 2 cores: in the same minutes it trains enough
    # steps to answer held-out document-only facts (README, "What it shows today").
    "qwen3_testbed_narrow": ModelConfig(family="qwen3", vocab_size=4096, embed_dim=128, num_layers=4, num_heads=2, num_kv_heads=1,
                                        head_dim=64, mlp_dim=384, rope_theta=10_000.0, qk_norm=True, tie_embeddings=True,
                                        max_position_embeddings=2048),
    "qwen3_testbed_gpu": ModelConfig(family="qwen3", vocab_size=16_384, embed_dim=512, num_layers=8, num_heads=8, num_kv_heads=4,
                                     head_dim=64, mlp_dim=1536, rope_theta=10_000.0, qk_norm=True, tie_embeddings=True,
                                     max_position_embeddings=4096),
}


def from_hf_config(hf: transformers.PretrainedConfig) -> ModelConfig:
    """Our config from a transformers Qwen3Config; unsupported features are a clear error."""
    if getattr(hf, "use_sliding_window", False):
        raise ValueError("Qwen3 config uses sliding-window attention, which this model does not implement")
    if getattr(hf, "attention_bias", False):
        raise ValueError("Qwen3 config has attention_bias=true, which this model does not implement")
    rope = hf.rope_parameters or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"Qwen3 config uses rope_type '{rope['rope_type']}'; only the default RoPE is implemented for Qwen3")
    return ModelConfig(family="qwen3", qk_norm=True, **fields_from_hf(hf))


def to_hf_config(config: ModelConfig) -> transformers.Qwen3Config:
    return transformers.Qwen3Config(
        **fields_to_hf(config),
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        architectures=["Qwen3ForCausalLM"],
    )
