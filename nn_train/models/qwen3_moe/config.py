"""Qwen3-MoE presets (published checkpoints and a tiny test size) and Hugging Face config translation."""

from __future__ import annotations

import transformers

from nn_train.models.config import ModelConfig, fields_from_hf, fields_to_hf
from nn_train.models.qwen3.config import from_hf_config as qwen3_from_hf_config

# Shapes from the published config.json of Qwen/Qwen3-30B-A3B and Qwen/Qwen3-235B-A22B.
_QWEN3_MOE = dict(family="qwen3_moe", vocab_size=151_936, head_dim=128, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                  qk_norm=True, max_position_embeddings=40_960, tie_embeddings=False, num_experts=128,
                  experts_per_token=8, norm_topk_prob=True, bos_token_id=151_643, eos_token_id=151_645)

PRESETS = {
    "qwen3_30b_a3b": ModelConfig(**_QWEN3_MOE, embed_dim=2048, num_layers=48, num_heads=32, num_kv_heads=4, mlp_dim=6144,
                                 expert_mlp_dim=768),
    "qwen3_235b_a22b": ModelConfig(**_QWEN3_MOE, embed_dim=4096, num_layers=94, num_heads=64, num_kv_heads=4, mlp_dim=12_288,
                                   expert_mlp_dim=1536),
    # CPU-sized, for tests: 8 experts, 2 per token.
    "qwen3_moe_tiny": ModelConfig(family="qwen3_moe", vocab_size=512, embed_dim=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                  head_dim=16, mlp_dim=128, rope_theta=10_000.0, qk_norm=True, tie_embeddings=True,
                                  max_position_embeddings=1024, num_experts=8, experts_per_token=2, expert_mlp_dim=32),
}


def from_hf_config(hf: transformers.PretrainedConfig) -> ModelConfig:
    """Our config from a transformers Qwen3MoeConfig; unsupported features are a clear error."""
    if getattr(hf, "mlp_only_layers", None) or getattr(hf, "decoder_sparse_step", 1) != 1:
        raise ValueError(f"Qwen3-MoE config has dense layers among the sparse ones (mlp_only_layers={hf.mlp_only_layers}, "
                         f"decoder_sparse_step={hf.decoder_sparse_step}); only an MoE MLP in every layer is implemented")
    qwen3_from_hf_config(hf)  # the attention checks Qwen3 and Qwen3-MoE share
    return ModelConfig(family="qwen3_moe", qk_norm=True, **fields_from_hf(hf), num_experts=hf.num_experts,
                       experts_per_token=hf.num_experts_per_tok, expert_mlp_dim=hf.moe_intermediate_size,
                       norm_topk_prob=bool(hf.norm_topk_prob))


def to_hf_config(config: ModelConfig) -> transformers.Qwen3MoeConfig:
    return transformers.Qwen3MoeConfig(
        **fields_to_hf(config),
        num_experts=config.num_experts,
        num_experts_per_tok=config.experts_per_token,
        moe_intermediate_size=config.expert_mlp_dim,
        norm_topk_prob=config.norm_topk_prob,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        architectures=["Qwen3MoeForCausalLM"],
    )
