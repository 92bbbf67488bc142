"""Scanned layers (config.scan_layers): the same model as the layer loop, stacked.

A scanned model of a seed holds the loop's weights stacked on a leading "layers" axis, computes the
same logits, gradients and KV-cache decoding under every remat policy, and loads, exports, adapts
(LoRA, PEFT) and shards like the loop: the Hugging Face files are the same either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P
from safetensors.numpy import load_file

from nn_train.models import ModelConfig, create_model, get_config
from nn_train.models.config import REMAT_POLICIES
from nn_train.models.hf_checkpoint import export_hf_model, load_hf_model
from nn_train.models.lora import LoRAConfig, apply_lora, export_peft, lora_modules, merge_lora
from nn_train.models.transformer import KVCache, Transformer
from nn_train.sharding import make_mesh
from tests.nn_train.hf_oracle import forward, hf_logits, random_tokens

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")

LAYERS = 3


def _pair(**overrides) -> tuple[Transformer, Transformer]:
    """(loop, scanned) models of one seed."""
    config = get_config("qwen3_tiny", num_layers=LAYERS, **overrides)
    return (Transformer(config.replace(scan_layers=False), rngs=nnx.Rngs(0)),
            Transformer(config.replace(scan_layers=True), rngs=nnx.Rngs(0)))


def _packed_batch():
    tokens = jnp.asarray(random_tokens(2, 24) % 512)
    segment_ids = jnp.asarray(np.repeat([[1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1]], 4, axis=1), jnp.int32)
    positions = jnp.asarray(np.concatenate([np.r_[0:8, 0:12, 0:4], np.r_[0:24]]).reshape(2, 24), jnp.int32)
    return tokens, positions, segment_ids


def test_size_decides_by_default_and_old_saved_configs_are_loops():
    assert get_config("qwen3_0p6b").scan_layers and get_config("qwen3_8b").scan_layers
    assert not get_config("qwen3_tiny").scan_layers and not get_config("qwen3_testbed_gpu").scan_layers
    assert get_config("qwen3_tiny", scan_layers=True).scan_layers
    saved = get_config("qwen3_8b").to_dict()
    del saved["scan_layers"]  # a config saved before the field existed
    assert ModelConfig.from_dict(saved).scan_layers is False


def test_weights_are_the_loops_stacked():
    loop, scanned = _pair()
    kernel = scanned.layers.attn.q_proj.kernel
    assert kernel.get_value().shape == (LAYERS, 64, 4, 16)
    assert kernel.get_metadata()["logical_axes"] == ("layers", "embed", "heads", "head_dim")
    for i in range(LAYERS):
        np.testing.assert_array_equal(kernel.get_value()[i], loop.layers[i].attn.q_proj.kernel.get_value())
        np.testing.assert_array_equal(scanned.layers.mlp.down_proj.kernel.get_value()[i], loop.layers[i].mlp.down_proj.kernel.get_value())


@pytest.mark.parametrize("remat", REMAT_POLICIES)
def test_logits_and_gradients_match_the_loop(remat):
    loop, scanned = _pair(remat=remat)
    tokens, positions, segment_ids = _packed_batch()

    def loss(model):
        return (model(tokens, positions=positions, segment_ids=segment_ids) ** 2).mean()

    loop_loss, loop_grads = nnx.jit(nnx.value_and_grad(loss))(loop)
    scan_loss, scan_grads = nnx.jit(nnx.value_and_grad(loss))(scanned)
    np.testing.assert_allclose(scan_loss, loop_loss, rtol=1e-6)
    np.testing.assert_allclose(forward(scanned, tokens, positions, segment_ids), forward(loop, tokens, positions, segment_ids), atol=1e-5)
    for i in range(LAYERS):
        for module in ("q_proj", "o_proj"):
            stacked = scan_grads["layers"]["attn"][module]["kernel"].get_value()[i]
            np.testing.assert_allclose(stacked, loop_grads["layers"][i]["attn"][module]["kernel"].get_value(), atol=1e-6)
        np.testing.assert_allclose(scan_grads["layers"]["mlp"]["up_proj"]["kernel"].get_value()[i],
                                   loop_grads["layers"][i]["mlp"]["up_proj"]["kernel"].get_value(), atol=1e-6)
    np.testing.assert_allclose(scan_grads["embed"]["embedding"].get_value(), loop_grads["embed"]["embedding"].get_value(), atol=1e-6)


def test_kv_cache_prefill_and_decode_match_the_loop():
    loop, scanned = _pair()
    prompts = jnp.asarray(random_tokens(2, 10) % 512)
    start = jnp.asarray([0, 3], jnp.int32)  # row 1 left-padded by 3
    outputs = {}
    for name, model in (("loop", loop), ("scanned", scanned)):
        cache = KVCache.init(model.config, batch=2, max_len=16, start=start)
        prefill, cache = nnx.jit(lambda m, t, c: m.extend(t, c))(model, prompts, cache)
        step, cache = nnx.jit(lambda m, t, c: m.extend(t, c))(model, prompts[:, -1:], cache)
        outputs[name] = (np.asarray(prefill), np.asarray(step), cache)
    assert outputs["scanned"][2].keys.shape == (LAYERS, 2, 2, 16, 16)  # one stacked [L, B, K, S, H] array per kind
    np.testing.assert_allclose(outputs["scanned"][0], outputs["loop"][0], atol=1e-5)
    np.testing.assert_allclose(outputs["scanned"][1], outputs["loop"][1], atol=1e-5)
    for i in range(LAYERS):
        np.testing.assert_allclose(outputs["scanned"][2].keys[i], outputs["loop"][2].keys[i], atol=1e-6)
    assert int(outputs["scanned"][2].index) == 11


def test_hf_checkpoint_loads_into_either_layout_and_exports_the_same_files(hf_checkpoints, tmp_path):
    hf_model, directory = hf_checkpoints("qwen3_gqa2_tied")
    loop = load_hf_model(directory, scan_layers=False)
    scanned = load_hf_model(directory, scan_layers=True)
    assert scanned.layers.attn.k_proj.kernel.get_value().shape[0] == 2
    tokens = random_tokens(batch=2, length=32)
    assert np.abs(forward(scanned, tokens) - hf_logits(hf_model, tokens)).max() < 1e-4
    loop_files = load_file(export_hf_model(loop, tmp_path / "loop") / "model.safetensors")
    scanned_files = load_file(export_hf_model(scanned, tmp_path / "scanned") / "model.safetensors")
    assert sorted(scanned_files) == sorted(loop_files)
    for key, tensor in loop_files.items():
        np.testing.assert_array_equal(scanned_files[key], tensor, err_msg=key)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "scanned")
    np.testing.assert_allclose(hf_logits(reloaded, tokens), hf_logits(hf_model, tokens), atol=1e-6)


def _trained_adapters(model, config):
    apply_lora(model, config, rngs=nnx.Rngs(1))
    for i, adapter in enumerate(lora_modules(model).values()):
        adapter.b.set_value(0.05 * jax.random.normal(jax.random.key(i), adapter.b.get_value().shape))


def test_lora_on_stacked_layers_is_the_loops_lora():
    loop, scanned = _pair()
    config = LoRAConfig(rank=4, alpha=8)
    loop_names = apply_lora(loop, config, rngs=nnx.Rngs(1))
    scan_names = apply_lora(scanned, config, rngs=nnx.Rngs(1))
    assert len(loop_names) == LAYERS * 7 + 1 and len(scan_names) == 7 + 1
    stacked_a = lora_modules(scanned)["layers.attn.v_proj"].a.get_value()
    assert stacked_a.shape == (LAYERS, 64, 4)
    for i in range(LAYERS):  # drawn in the loop's order: the same random A
        np.testing.assert_array_equal(stacked_a[i], lora_modules(loop)[f"layers.{i}.attn.v_proj"].a.get_value())
    # Give B the same nonzero values in both, then the adapted models and their merges agree.
    for name, adapter in lora_modules(scanned).items():
        if name.startswith("layers."):
            b = 0.05 * jax.random.normal(jax.random.key(len(name)), adapter.b.get_value().shape)
            adapter.b.set_value(b)
            for i in range(LAYERS):
                lora_modules(loop)[name.replace("layers.", f"layers.{i}.", 1)].b.set_value(b[i])
    tokens = random_tokens(2, 16) % 512
    np.testing.assert_allclose(forward(scanned, tokens), forward(loop, tokens), atol=1e-5)
    merged = merge_lora(scanned)
    assert not lora_modules(merged) and merged.config.scan_layers
    np.testing.assert_allclose(forward(merged, tokens), forward(scanned, tokens), atol=1e-5)


def test_peft_export_of_stacked_adapters_names_every_layer(tmp_path):
    config = LoRAConfig(rank=4, alpha=8)
    loop, scanned = _pair()
    _trained_adapters(loop, config)
    _trained_adapters(scanned, config)
    loop_keys = load_file(export_peft(loop, tmp_path / "loop", config) / "adapter_model.safetensors")
    scanned_tensors = load_file(export_peft(scanned, tmp_path / "scanned", config) / "adapter_model.safetensors")
    assert sorted(scanned_tensors) == sorted(loop_keys)
    assert "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight" in scanned_tensors
    stacked_b = lora_modules(scanned)["layers.mlp.down_proj"].b.get_value()
    np.testing.assert_array_equal(scanned_tensors["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"],
                                  np.asarray(stacked_b[1]).reshape(4, -1).T)


def test_lora_dropout_with_scanned_layers_is_refused():
    _, scanned = _pair()
    with pytest.raises(ValueError, match="dropout is not supported with scanned layers"):
        apply_lora(scanned, LoRAConfig(rank=4, alpha=8, dropout=0.1), rngs=nnx.Rngs(1))


def test_stacked_parameters_shard_like_the_loops():
    mesh = make_mesh(1, 4, 2)
    model = create_model(get_config("qwen3_tiny", num_layers=LAYERS, scan_layers=True), mesh=mesh)
    assert model.layers.attn.q_proj.kernel[...].sharding.spec == P(None, "fsdp", "tensor", None)
    assert model.layers.mlp.down_proj.kernel[...].sharding.spec == P(None, "tensor", "fsdp")


def test_the_sampler_generates_the_loops_tokens():
    from eval.sampler import Sampler
    from eval.types import SamplingParams

    loop, scanned = _pair()
    prompts = [list(map(int, random_tokens(1, n, seed=n)[0] % 512)) for n in (3, 9)]  # unequal: left padding
    for params in (SamplingParams(samples=1, temperature=0.0, max_new_tokens=6),
                   SamplingParams(samples=1, temperature=1.0, top_p=0.9, max_new_tokens=6, seed=3)):
        expected = Sampler(loop, max_len=32, stop_tokens=()).generate_tokens(prompts, params)
        assert Sampler(scanned, max_len=32, stop_tokens=()).generate_tokens(prompts, params) == expected
        assert [len(row) for row in expected] == [6, 6]
