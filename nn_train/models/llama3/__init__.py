"""Llama 3.x models: grouped-query attention and RoPE with Llama 3 frequency scaling.

The module is the shared `nn_train.models.transformer.Transformer` (no q/k norm); the Hugging
Face weight layout is shared with Qwen3 (`nn_train.models.hf_checkpoint`). This package holds the
presets and the translation to and from a Hugging Face `LlamaConfig`.
"""

from nn_train.models.llama3.config import PRESETS, from_hf_config, to_hf_config

__all__ = ["PRESETS", "from_hf_config", "to_hf_config"]
