"""The model zoo: presets, Hugging Face config translation, and model creation (sharded or not).

    config = get_config("qwen3_1p7b", dtype="bfloat16", remat="full")
    config = config_from_hf("/path/to/hf_checkpoint")            # or a config.json dict
    model = create_model(config, seed=0, mesh=mesh)               # random init, already sharded
    n = param_count(config)                                       # from abstract shapes, no allocation

Loading real weights: nn_train.models.hf_checkpoint.load_hf_model.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any, Mapping

import jax
import transformers
from flax import nnx
from jax.sharding import Mesh

from nn_train.models import llama3, qwen3, qwen3_5, qwen3_moe
from nn_train.models.config import ModelConfig, RopeScaling
from nn_train.models.transformer import Transformer, target_log_probs, token_log_probs
from nn_train.sharding import state_shardings

_FAMILIES = {"qwen3": qwen3, "qwen3_moe": qwen3_moe, "qwen3_5": qwen3_5, "qwen3_5_moe": qwen3_5, "llama3": llama3}
# Hugging Face model_type → our family (Qwen3.5's vision-language types: their text model).
_HF_MODEL_TYPES = {"qwen3": "qwen3", "qwen3_moe": "qwen3_moe", "qwen3_5": "qwen3_5", "qwen3_5_text": "qwen3_5",
                   "qwen3_5_moe": "qwen3_5_moe", "qwen3_5_moe_text": "qwen3_5_moe", "llama": "llama3"}
PRESETS: dict[str, ModelConfig] = {**qwen3.PRESETS, **qwen3_moe.PRESETS, **qwen3_5.PRESETS, **llama3.PRESETS}

__all__ = [
    "PRESETS",
    "ModelConfig",
    "RopeScaling",
    "Transformer",
    "abstract_model",
    "config_from_hf",
    "create_model",
    "get_config",
    "param_count",
    "to_hf_config",
    "target_log_probs",
    "token_log_probs",
]


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name, with field overrides (e.g. dtype="bfloat16", remat="full")."""
    if name not in PRESETS:
        hint = difflib.get_close_matches(name, PRESETS, n=1)
        also = f"did you mean '{hint[0]}'? " if hint else ""
        raise ValueError(f"unknown model preset '{name}'; {also}presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace(**overrides)


def config_from_hf(source: str | Path | Mapping[str, Any] | transformers.PretrainedConfig, **overrides: Any) -> ModelConfig:
    """Our config from a Hugging Face checkpoint directory, a config.json path or dict, or a config object."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no Hugging Face config at '{path}'; point at a checkpoint directory holding config.json")
        source = json.loads(path.read_text())
    if isinstance(source, Mapping):
        model_type = source.get("model_type")
        if model_type not in _HF_MODEL_TYPES:
            raise ValueError(f"Hugging Face model_type '{model_type}' is not supported; supported: {', '.join(_HF_MODEL_TYPES)}")
        source = transformers.AutoConfig.for_model(**source)
    family = _HF_MODEL_TYPES.get(source.model_type)
    if family is None:
        raise ValueError(f"Hugging Face model_type '{source.model_type}' is not supported; supported: {', '.join(_HF_MODEL_TYPES)}")
    return _FAMILIES[family].from_hf_config(source).replace(**overrides)


def to_hf_config(config: ModelConfig) -> transformers.PretrainedConfig:
    return _FAMILIES[config.family].to_hf_config(config)


def abstract_model(config: ModelConfig) -> Transformer:
    """The model with ShapeDtypeStruct leaves: shapes and metadata, no memory."""
    return nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))


def param_count(config: ModelConfig) -> int:
    state = nnx.state(abstract_model(config), nnx.Param)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(state))


def create_model(config: ModelConfig, *, seed: int = 0, mesh: Mesh | None = None) -> Transformer:
    """A randomly initialised model; with a mesh, every parameter is created directly in its shard."""
    if mesh is None:
        return Transformer(config, rngs=nnx.Rngs(seed))
    graphdef, abstract_state = nnx.split(abstract_model(config))
    shardings = state_shardings(abstract_state, mesh)

    @jax.jit(out_shardings=shardings)
    def init():
        return nnx.state(Transformer(config, rngs=nnx.Rngs(seed)))

    return nnx.merge(graphdef, init())
