"""Qwen3.5 presets (published MoE checkpoints and tiny test sizes) and Hugging Face config translation."""

from __future__ import annotations

import transformers

from nn_train.models.config import ModelConfig, fields_from_hf, fields_to_hf

FULL_ATTENTION_INTERVAL = 4  # every 4th layer is full attention, the others Gated DeltaNet (transformers' default)


def hybrid_layer_types(num_layers: int, interval: int = FULL_ATTENTION_INTERVAL) -> tuple[str, ...]:
    return tuple("full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(num_layers))


_QWEN3_5 = dict(vocab_size=248_320, head_dim=256, rope_theta=10_000_000.0, partial_rotary_factor=0.25, rms_norm_eps=1e-6,
                qk_norm=True, attention_output_gate=True, norm_unit_offset=True, max_position_embeddings=262_144,
                tie_embeddings=False, linear_key_head_dim=128, linear_value_head_dim=128, linear_num_key_heads=16,
                linear_conv_kernel_dim=4)
_TINY = dict(vocab_size=512, embed_dim=64, num_layers=4, layer_types=hybrid_layer_types(4), num_heads=4, num_kv_heads=2,
             head_dim=16, partial_rotary_factor=0.25, rope_theta=10_000.0, qk_norm=True, attention_output_gate=True,
             norm_unit_offset=True, tie_embeddings=True, max_position_embeddings=1024, linear_num_key_heads=2,
             linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16, linear_conv_kernel_dim=4)

# Shapes from the published configs of Qwen/Qwen3.5-35B-A3B and Qwen/Qwen3.5-397B-A17B (MaxText's
# qwen3.5-*.yml agree). Their special tokens come from the checkpoint's config when one is loaded.
PRESETS = {
    "qwen3_5_35b_a3b": ModelConfig(family="qwen3_5_moe", **_QWEN3_5, embed_dim=2048, num_layers=40,
                                   layer_types=hybrid_layer_types(40), num_heads=16, num_kv_heads=2, mlp_dim=512,
                                   linear_num_value_heads=32, num_experts=256, experts_per_token=8, expert_mlp_dim=512,
                                   shared_expert_mlp_dim=512),
    "qwen3_5_397b_a17b": ModelConfig(family="qwen3_5_moe", **_QWEN3_5, embed_dim=4096, num_layers=60,
                                     layer_types=hybrid_layer_types(60), num_heads=32, num_kv_heads=2, mlp_dim=1024,
                                     linear_num_value_heads=64, num_experts=512, experts_per_token=10, expert_mlp_dim=1024,
                                     shared_expert_mlp_dim=1024),
    # CPU-sized, for tests: three Gated DeltaNet layers and one full-attention layer.
    "qwen3_5_tiny": ModelConfig(family="qwen3_5", **_TINY, mlp_dim=128),
    "qwen3_5_moe_tiny": ModelConfig(family="qwen3_5_moe", **_TINY, mlp_dim=32, num_experts=8, experts_per_token=2,
                                    expert_mlp_dim=32, shared_expert_mlp_dim=48),
}


def from_hf_config(hf: transformers.PretrainedConfig) -> ModelConfig:
    """Our config from a transformers Qwen3.5 config: the text-only one, or a vision-language model's
    (its text_config); unsupported features are a clear error."""
    text = hf.get_text_config()
    name = type(text).__name__
    if getattr(text, "attention_bias", False):
        raise ValueError(f"{name} has attention_bias=true, which this model does not implement")
    if getattr(text, "hidden_act", "silu") != "silu":
        raise ValueError(f"{name} has hidden_act '{text.hidden_act}'; only silu is implemented")
    rope = text.rope_parameters or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"{name} uses rope_type '{rope['rope_type']}'; only the default RoPE is implemented for Qwen3.5")
    moe = bool(getattr(text, "num_experts", 0))
    fields = fields_from_hf(text)
    fields.update(
        family="qwen3_5_moe" if moe else "qwen3_5",
        qk_norm=True, attention_output_gate=True, norm_unit_offset=True,
        partial_rotary_factor=float(rope.get("partial_rotary_factor", 1.0)),
        layer_types=tuple(text.layer_types),
        linear_num_key_heads=text.linear_num_key_heads, linear_num_value_heads=text.linear_num_value_heads,
        linear_key_head_dim=text.linear_key_head_dim, linear_value_head_dim=text.linear_value_head_dim,
        linear_conv_kernel_dim=text.linear_conv_kernel_dim,
    )
    if moe:  # transformers' Qwen3.5 router always renormalises its top-k weights
        fields.update(num_experts=text.num_experts, experts_per_token=text.num_experts_per_tok,
                      expert_mlp_dim=text.moe_intermediate_size, shared_expert_mlp_dim=text.shared_expert_intermediate_size,
                      norm_topk_prob=True)
    return ModelConfig(**fields)


def to_hf_config(config: ModelConfig) -> transformers.PretrainedConfig:
    if not (config.norm_unit_offset and config.attention_output_gate and config.qk_norm):
        raise ValueError("a Qwen3.5 config has zero-centred norms, an attention output gate and q/k norms; this one lacks some")
    fields = fields_to_hf(config)
    fields.update(
        layer_types=list(config.mixers),
        linear_num_key_heads=config.linear_num_key_heads, linear_num_value_heads=config.linear_num_value_heads,
        linear_key_head_dim=config.linear_key_head_dim, linear_value_head_dim=config.linear_value_head_dim,
        linear_conv_kernel_dim=config.linear_conv_kernel_dim,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta, "partial_rotary_factor": config.partial_rotary_factor},
    )
    if config.family == "qwen3_5":
        return transformers.Qwen3_5TextConfig(**fields, architectures=["Qwen3_5ForCausalLM"])
    if not config.norm_topk_prob:
        raise ValueError("transformers' Qwen3.5-MoE always renormalises the top-k routing weights; norm_topk_prob=False has no counterpart")
    del fields["intermediate_size"]
    return transformers.Qwen3_5MoeTextConfig(
        **fields, num_experts=config.num_experts, num_experts_per_tok=config.experts_per_token,
        moe_intermediate_size=config.expert_mlp_dim, shared_expert_intermediate_size=config.shared_expert_mlp_dim,
        architectures=["Qwen3_5MoeForCausalLM"],
    )
