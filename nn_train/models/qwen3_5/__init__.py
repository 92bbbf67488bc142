"""Qwen3.5 text models, dense (`qwen3_5`) and mixture-of-experts (`qwen3_5_moe`, Qwen3.5-35B-A3B and
Qwen3.5-397B-A17B): a hybrid of Gated DeltaNet linear-attention layers (nn_train.models.gated_deltanet)
and gated full-attention layers, three to one, with zero-centred RMSNorms, partial rotary
embeddings and, for the MoE models, a shared expert beside the routed ones.

The module is the shared `nn_train.models.transformer.Transformer` (config.layer_types picks each
layer's mixer); the Hugging Face layout is transformers' text-only Qwen3_5(Moe)ForCausalLM, and
hub checkpoints of the vision-language models load too (nn_train.models.hf_checkpoint). This
package holds the presets and the translation to and from the Hugging Face configs.
"""

from nn_train.models.qwen3_5.config import PRESETS, from_hf_config, to_hf_config

__all__ = ["PRESETS", "from_hf_config", "to_hf_config"]
