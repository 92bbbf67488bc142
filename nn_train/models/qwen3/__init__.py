"""Qwen3 dense models: per-head q/k RMSNorm, grouped-query attention, RoPE theta from config.

The module is the shared `nn_train.models.transformer.Transformer` with `qk_norm=True`; the
Hugging Face weight layout is shared with Llama 3 (`nn_train.models.hf_checkpoint`). This package
holds the presets and the translation to and from a Hugging Face `Qwen3Config`.
"""

from nn_train.models.qwen3.config import PRESETS, from_hf_config, to_hf_config

__all__ = ["PRESETS", "from_hf_config", "to_hf_config"]
