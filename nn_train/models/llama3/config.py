"""Llama 3.x presets (published checkpoints and tiny test sizes) and Hugging Face config translation."""

from __future__ import annotations

import transformers

from nn_train.models.config import ModelConfig, RopeScaling, fields_from_hf, fields_to_hf

# Shapes from the published config.json of each meta-llama/Llama-3.* checkpoint.
_LLAMA3 = dict(family="llama3", vocab_size=128_256, rope_theta=500_000.0, rms_norm_eps=1e-5,
               max_position_embeddings=131_072, bos_token_id=128_000, eos_token_id=128_001)
_SCALING_3P1 = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
_SCALING_3P2 = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)

PRESETS = {
    "llama3p2_1b": ModelConfig(**_LLAMA3, embed_dim=2048, num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
                               mlp_dim=8192, tie_embeddings=True, rope_scaling=_SCALING_3P2),
    "llama3p2_3b": ModelConfig(**_LLAMA3, embed_dim=3072, num_layers=28, num_heads=24, num_kv_heads=8, head_dim=128,
                               mlp_dim=8192, tie_embeddings=True, rope_scaling=_SCALING_3P2),
    "llama3p1_8b": ModelConfig(**_LLAMA3, embed_dim=4096, num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
                               mlp_dim=14_336, tie_embeddings=False, rope_scaling=_SCALING_3P1),
    "llama3p1_70b": ModelConfig(**_LLAMA3, embed_dim=8192, num_layers=80, num_heads=64, num_kv_heads=8, head_dim=128,
                                mlp_dim=28_672, tie_embeddings=False, rope_scaling=_SCALING_3P1),
    # CPU-sized, for tests.
    "llama3_tiny": ModelConfig(family="llama3", vocab_size=512, embed_dim=64, num_layers=2, num_heads=4, num_kv_heads=1,
                               head_dim=16, mlp_dim=128, rope_theta=500_000.0, rms_norm_eps=1e-5, tie_embeddings=False,
                               max_position_embeddings=1024,
                               rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                        original_max_position_embeddings=64)),
}


def from_hf_config(hf: transformers.PretrainedConfig) -> ModelConfig:
    """Our config from a transformers LlamaConfig; unsupported features are a clear error."""
    if getattr(hf, "attention_bias", False) or getattr(hf, "mlp_bias", False):
        raise ValueError("Llama config has attention_bias or mlp_bias set, which this model does not implement")
    rope = dict(hf.rope_parameters or {})
    rope_type = rope.get("rope_type", "default")
    if rope_type not in ("default", "llama3"):
        raise ValueError(f"Llama config uses rope_type '{rope_type}'; only 'default' and 'llama3' are implemented")
    scaling = None
    if rope_type == "llama3":
        scaling = RopeScaling(
            factor=float(rope["factor"]),
            low_freq_factor=float(rope["low_freq_factor"]),
            high_freq_factor=float(rope["high_freq_factor"]),
            original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
        )
    return ModelConfig(family="llama3", rope_scaling=scaling, qk_norm=False, **fields_from_hf(hf))


def to_hf_config(config: ModelConfig) -> transformers.LlamaConfig:
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None:
        s = config.rope_scaling
        rope = {"rope_type": "llama3", "rope_theta": config.rope_theta, "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor, "original_max_position_embeddings": s.original_max_position_embeddings}
    return transformers.LlamaConfig(**fields_to_hf(config), rope_parameters=rope, architectures=["LlamaForCausalLM"])
