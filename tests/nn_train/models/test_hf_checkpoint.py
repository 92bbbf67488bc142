"""Hugging Face interop: exact logits parity with transformers, round trips, and clear mismatch errors."""

from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nn_train.models import config_from_hf, create_model, get_config
from nn_train.models.hf_checkpoint import CheckpointError, export_hf_model, load_hf_model
from tests.nn_train.hf_oracle import REPO_ROOT, HF_CASES, build_hf_model, forward, hf_logits, random_tokens

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_logits_match_transformers(hf_checkpoints, case):
    hf_model, directory = hf_checkpoints(case)
    ours = load_hf_model(directory)
    assert ours.config.tie_embeddings == HF_CASES[case]["tie_word_embeddings"]
    assert ours.config.num_kv_heads == HF_CASES[case]["num_key_value_heads"]
    tokens = random_tokens(batch=3, length=48)
    error = np.abs(forward(ours, tokens) - hf_logits(hf_model, tokens)).max()
    assert error < 1e-4


def test_llama3_rope_scaling_is_applied(hf_checkpoints):
    # Guard against a parity test that passes because scaling never mattered: without it, logits differ.
    hf_model, directory = hf_checkpoints("llama_gqa4_tied_llama3_rope")
    scaled = load_hf_model(directory)
    unscaled = load_hf_model(directory, rope_scaling=None)
    tokens = random_tokens(length=48)
    assert np.abs(forward(scaled, tokens) - forward(unscaled, tokens)).max() > 1e-3


@pytest.mark.parametrize("case", ["qwen3_gqa2_tied", "llama_gqa2_untied", "qwen3_moe_8x2_gqa2_untied", "qwen3_5_moe_8x2_gqa4_tied"])
def test_round_trip_ours_export_transformers(hf_checkpoints, tmp_path, case):
    hf_model, directory = hf_checkpoints(case)
    ours = load_hf_model(directory)
    out = export_hf_model(ours, tmp_path / "export")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    tokens = random_tokens()
    np.testing.assert_allclose(hf_logits(reloaded, tokens), hf_logits(hf_model, tokens), atol=1e-6)
    hf_model_type = {"llama3": "llama", "qwen3_5": "qwen3_5_text", "qwen3_5_moe": "qwen3_5_moe_text"}.get(ours.config.family, ours.config.family)
    assert json.loads((out / "config.json").read_text())["model_type"] == hf_model_type


def test_export_of_a_fresh_model_loads_back_identically(tmp_path):
    model = create_model(get_config("qwen3_tiny"), seed=3)
    out = export_hf_model(model, tmp_path / "fresh")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    tokens = random_tokens(length=24) % 512
    np.testing.assert_allclose(hf_logits(reloaded, tokens), forward(model, tokens), atol=1e-4)
    again = load_hf_model(out)
    np.testing.assert_array_equal(forward(again, tokens), forward(model, tokens))


def test_sharded_safetensors_with_index(hf_checkpoints, tmp_path):
    hf_model, directory = hf_checkpoints("qwen3_mha_untied")
    ours = load_hf_model(directory)
    out = export_hf_model(ours, tmp_path / "sharded", max_shard_bytes=100_000)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    # Both transformers and our loader read the sharded form.
    tokens = random_tokens()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    np.testing.assert_allclose(hf_logits(reloaded, tokens), hf_logits(hf_model, tokens), atol=1e-6)
    np.testing.assert_array_equal(forward(load_hf_model(out), tokens), forward(ours, tokens))


def test_bf16_checkpoint(tmp_path):
    hf_model = build_hf_model("qwen3_gqa2_tied", seed=1, dtype=torch.bfloat16)
    hf_model.save_pretrained(tmp_path / "bf16")
    assert next(iter(load_file(tmp_path / "bf16" / "model.safetensors").values())).dtype.name == "bfloat16"
    tokens = random_tokens()
    # Loaded into float32 parameters, the bf16 weights give the float32 forward of those same weights
    # (the reference is re-loaded in float32: casting the bf16 model would keep RoPE buffers rounded).
    ours = load_hf_model(tmp_path / "bf16", param_dtype="float32")
    reference = hf_logits(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.float32), tokens)
    assert np.abs(forward(ours, tokens) - reference).max() < 1e-4
    # Kept in bf16 with bf16 compute, they stay close to it.
    ours_bf16 = load_hf_model(tmp_path / "bf16", param_dtype="bfloat16", dtype="bfloat16")
    assert ours_bf16.embed.embedding[...].dtype == jnp.bfloat16
    assert np.abs(forward(ours_bf16, tokens) - reference).max() < 0.1


# ---------------------------------------------------------------------------------------------
# Mismatches and bad input


@pytest.fixture
def checkpoint_copy(hf_checkpoints, tmp_path):
    _, directory = hf_checkpoints("qwen3_mha_untied")
    copy = tmp_path / "ckpt"
    shutil.copytree(directory, copy)
    return copy


def _rewrite(directory, change):
    tensors = load_file(directory / "model.safetensors")
    change(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def test_missing_unexpected_and_mismatched_keys_in_one_error(checkpoint_copy):
    def change(tensors):
        del tensors["model.layers.1.self_attn.q_norm.weight"]
        tensors["model.layers.9.mlp.extra.weight"] = np.zeros((2, 2), np.float32)
        tensors["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"][:200]

    _rewrite(checkpoint_copy, change)
    with pytest.raises(CheckpointError) as error:
        load_hf_model(checkpoint_copy)
    message = str(error.value)
    assert "does not match the model config" in message
    assert "1 missing keys: model.layers.1.self_attn.q_norm.weight" in message
    assert "1 unexpected keys: model.layers.9.mlp.extra.weight" in message
    assert "1 shape mismatches: model.embed_tokens.weight: checkpoint [200, 64], model expects [300, 64]" in message


def test_config_that_does_not_describe_the_checkpoint(checkpoint_copy):
    with pytest.raises(CheckpointError, match=r"missing keys: lm_head\.weight|unexpected keys: lm_head\.weight"):
        load_hf_model(checkpoint_copy, tie_embeddings=True)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(build_hf_model("qwen3_gqa2_tied").config.to_dict()))
    with pytest.raises(CheckpointError, match=r"has no model\.safetensors or model\.safetensors\.index\.json"):
        load_hf_model(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"neither a checkpoint directory nor a Hugging Face hub id"):
        load_hf_model(tmp_path / "missing" / "dir")


def test_unsupported_model_type():
    with pytest.raises(ValueError, match=r"model_type 'gpt2' is not supported; supported: qwen3, qwen3_moe, qwen3_5, qwen3_5_text, qwen3_5_moe, qwen3_5_moe_text, llama"):
        config_from_hf({"model_type": "gpt2"})


def test_export_refuses_to_overwrite(tmp_path):
    model = create_model(get_config("qwen3_tiny"))
    export_hf_model(model, tmp_path / "out")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        export_hf_model(model, tmp_path / "out")
    export_hf_model(model, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left behind


def test_hub_id_that_cannot_be_downloaded_says_so(tmp_path):
    # A real hub lookup, made to fail fast and offline (no network is used).
    import os
    import subprocess
    import sys

    code = "from nn_train.models.hf_checkpoint import load_hf_model\nload_hf_model('nobody/no-such-model')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "FileNotFoundError: 'nobody/no-such-model' is not a local directory, and downloading it as a Hugging Face hub id failed" in result.stderr
