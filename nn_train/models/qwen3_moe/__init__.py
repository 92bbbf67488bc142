"""Qwen3-MoE models (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3 attention with a top-k routed
mixture of SwiGLU experts in every layer (nn_train.models.moe).

The module is the shared `nn_train.models.transformer.Transformer` with `num_experts > 0`; the
Hugging Face layout adds the router (`mlp.gate`) and one key per expert (`mlp.experts.<e>.*`) to
Qwen3's (`nn_train.models.hf_checkpoint`). This package holds the presets and the translation to
and from a Hugging Face `Qwen3MoeConfig`.
"""

from nn_train.models.qwen3_moe.config import PRESETS, from_hf_config, to_hf_config

__all__ = ["PRESETS", "from_hf_config", "to_hf_config"]
