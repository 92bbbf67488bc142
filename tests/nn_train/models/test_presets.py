"""Presets: sizes of the real checkpoints from abstract shapes, Hugging Face config translation."""

from __future__ import annotations

import pytest

from nn_train.models import PRESETS, config_from_hf, get_config, param_count, to_hf_config

# Published parameter counts. Llama: exact totals of the released safetensors; Qwen3: the model
# cards' totals, quoted to 0.1B (0.6B to 0.01B).
LLAMA_EXACT = {
    "llama3p2_1b": 1_235_814_400,
    "llama3p2_3b": 3_212_749_824,
    "llama3p1_8b": 8_030_261_248,
    "llama3p1_70b": 70_553_706_496,
}
QWEN3_BILLIONS = {"qwen3_0p6b": (0.60, 0.01), "qwen3_1p7b": (1.7, 0.05), "qwen3_4b": (4.0, 0.05),
                  "qwen3_8b": (8.2, 0.05), "qwen3_14b": (14.8, 0.05), "qwen3_32b": (32.8, 0.05)}
# Qwen3 model cards also quote non-embedding sizes.
QWEN3_NON_EMBEDDING_BILLIONS = {"qwen3_0p6b": 0.44, "qwen3_1p7b": 1.4, "qwen3_4b": 3.6, "qwen3_8b": 6.95,
                                "qwen3_14b": 13.2, "qwen3_32b": 31.2}


@pytest.mark.parametrize("preset", sorted(LLAMA_EXACT))
def test_llama_presets_match_published_sizes_exactly(preset):
    assert param_count(get_config(preset)) == LLAMA_EXACT[preset]


@pytest.mark.parametrize("preset", sorted(QWEN3_BILLIONS))
def test_qwen3_presets_match_published_sizes(preset):
    config = get_config(preset)
    total = param_count(config)
    billions, tolerance = QWEN3_BILLIONS[preset]
    assert abs(total / 1e9 - billions) <= tolerance
    embedding_params = config.vocab_size * config.embed_dim * (1 if config.tie_embeddings else 2)
    assert round((total - embedding_params) / 1e9, 2) == pytest.approx(QWEN3_NON_EMBEDDING_BILLIONS[preset], abs=0.05)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_survive_hugging_face_config_round_trip(preset):
    config = get_config(preset)
    assert config_from_hf(to_hf_config(config).to_dict()) == config


def test_unknown_preset_names_the_nearest():
    with pytest.raises(ValueError, match=r"unknown model preset 'qwen3_1.7b'; did you mean 'qwen3_1p7b'\?"):
        get_config("qwen3_1.7b")


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match=r"num_heads \(6\) must be a multiple of num_kv_heads \(4\).*remat 'always'"):
        get_config("qwen3_tiny", num_heads=6, num_kv_heads=4, remat="always")


def test_unsupported_hugging_face_features_are_refused():
    hf = to_hf_config(get_config("qwen3_tiny")).to_dict()
    with pytest.raises(ValueError, match="sliding-window attention"):
        config_from_hf({**hf, "use_sliding_window": True, "sliding_window": 64})
    llama = to_hf_config(get_config("llama3_tiny")).to_dict()
    with pytest.raises(ValueError, match="rope_type 'yarn'"):
        config_from_hf({**llama, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}})
