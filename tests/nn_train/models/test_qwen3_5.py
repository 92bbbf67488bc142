"""Qwen3.5: the Gated DeltaNet recurrence in its two forms, packed documents, decoding against the full
forward, parity and greedy generation against transformers, hub vision-language checkpoints, a
sharded run, training, and bad configs. (The short-row logits parity and the export round trip also
run in test_hf_checkpoint.py's parametrized cases.)"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn_train.models import create_model, get_config, param_count
from nn_train.models import gated_deltanet as gdn
from nn_train.models.hf_checkpoint import load_hf_model
from nn_train.models.transformer import KVCache
from nn_train.sharding import make_mesh
from tests.nn_train.hf_oracle import assert_greedy_generation_matches, forward, hf_logits, random_tokens

CASES = ("qwen3_5_gqa2_untied", "qwen3_5_moe_8x2_gqa4_tied")


def _recurrence_inputs(b=2, t=150, h=2, dk=16, dv=8, seed=0):
    keys = jax.random.split(jax.random.key(seed), 5)
    q = gdn.l2_normalize(jax.random.normal(keys[0], (b, t, h, dk))) * dk ** -0.5
    k = gdn.l2_normalize(jax.random.normal(keys[1], (b, t, h, dk)))
    v = jax.random.normal(keys[2], (b, t, h, dv))
    g = -0.3 * jnp.abs(jax.random.normal(keys[3], (b, t, h)))
    beta = jax.nn.sigmoid(jax.random.normal(keys[4], (b, t, h)))
    resets = np.zeros((b, t), bool)
    resets[0, [0, 37, 64, 130]] = True  # a document starting mid-chunk, one on a chunk boundary
    resets[1, [1, 100]] = True  # and row 1's carried-in state survives its first token
    state = 0.5 * jax.random.normal(jax.random.key(seed + 1), (b, h, dk, dv))
    return q, k, v, g, beta, jnp.asarray(resets), state


def test_the_chunked_and_recurrent_forms_agree_forward_and_backward():
    inputs = _recurrence_inputs()
    out_c, state_c = jax.jit(gdn.chunked_gated_delta_rule)(*inputs)
    out_r, state_r = jax.jit(gdn.recurrent_gated_delta_rule)(*inputs)
    np.testing.assert_allclose(out_c, out_r, atol=2e-5)
    np.testing.assert_allclose(state_c, state_r, atol=2e-5)
    weights = jax.random.normal(jax.random.key(9), out_c.shape)

    def objective(rule):
        def f(q, k, v, g, beta, state):
            out, final = rule(q, k, v, g, beta, inputs[5], state)
            return jnp.sum(out * weights) + jnp.sum(final)
        return jax.jit(jax.grad(f, argnums=range(6)))(*inputs[:5], inputs[6])

    for name, chunked, recurrent in zip("q k v g beta state".split(), objective(gdn.chunked_gated_delta_rule),
                                        objective(gdn.recurrent_gated_delta_rule)):
        np.testing.assert_allclose(chunked, recurrent, atol=1e-4, err_msg=name)
        assert np.abs(recurrent).max() > 0, name


@pytest.mark.parametrize("case", CASES)
def test_logits_match_transformers_over_several_chunks(hf_checkpoints, case):
    hf_model, directory = hf_checkpoints(case)
    tokens = random_tokens(batch=2, length=150, seed=1)  # 3 chunks of 64
    assert np.abs(forward(load_hf_model(directory), tokens) - hf_logits(hf_model, tokens)).max() < 1e-4


def test_packed_documents_do_not_see_each_other():
    model = create_model(get_config("qwen3_5_tiny"), seed=1)
    a, b = random_tokens(1, 41, seed=2) % 512, random_tokens(1, 90, seed=3) % 512  # b straddles a chunk boundary
    packed = np.concatenate([a, b], axis=1)
    segments = np.concatenate([np.full((1, 41), 1), np.full((1, 90), 2)], axis=1)
    positions = np.concatenate([np.arange(41), np.arange(90)])[None]
    logits = forward(model, packed, positions, segments)
    np.testing.assert_allclose(logits[:, :41], forward(model, a), atol=1e-5)
    np.testing.assert_allclose(logits[:, 41:], forward(model, b), atol=1e-5)


def test_decoding_with_the_cache_equals_the_full_forward():
    # (The MoE model's decoding is checked against transformers' in the greedy generation test.)
    model = create_model(get_config("qwen3_5_tiny"), seed=4)
    rows = random_tokens(2, 75, seed=5) % 512
    pad = np.array([0, 6])  # row 1 is 6 tokens shorter: left-padded
    prompt_len, steps = 70, 5
    prompts = rows[:, :prompt_len].copy()
    prompts[1] = np.concatenate([np.zeros(6, np.int32), rows[1, :prompt_len - 6]])
    extend = nnx.jit(lambda m, t, c: m.extend(t, c))
    logits, cache = extend(model, jnp.asarray(prompts), KVCache.init(model.config, 2, prompt_len + steps, pad))
    assert len(cache.linear) == 3 and len(cache.keys) == 1  # 3 Gated DeltaNet layers, 1 attention layer
    decoded = [np.asarray(logits[:, -1])]
    for step in range(steps - 1):
        next_tokens = np.array([rows[0, prompt_len + step], rows[1, prompt_len - 6 + step]])
        logits, cache = extend(model, jnp.asarray(next_tokens)[:, None], cache)
        decoded.append(np.asarray(logits[:, 0]))
    for row, length in ((0, prompt_len), (1, prompt_len - 6)):
        full = forward(model, rows[row:row + 1, :length + steps - 1])[0]
        for step in range(steps):
            np.testing.assert_allclose(decoded[step][row], full[length - 1 + step], atol=2e-5, err_msg=f"row {row} step {step}")


@pytest.mark.parametrize("case", CASES)
def test_greedy_generation_matches_transformers_token_for_token(hf_checkpoints, case):
    pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")
    hf_model, directory = hf_checkpoints(case)
    prompts = [list(p) for p in random_tokens(batch=2, length=70, seed=6)]  # a prefill over two chunks
    prompts[1] = prompts[1][:9]  # rows of different lengths: the sampler left-pads
    assert_greedy_generation_matches(hf_model, load_hf_model(directory), prompts)


def test_a_hub_vision_language_checkpoint_loads_its_text_model(hf_checkpoints, tmp_path):
    from safetensors.numpy import load_file, save_file

    hf_model, directory = hf_checkpoints("qwen3_5_moe_8x2_gqa4_tied")
    tensors = load_file(directory / "model.safetensors")
    # The hub's layout: the text model under model.language_model., beside a vision tower and an MTP head.
    renamed = {k.replace("model.", "model.language_model.", 1) if k.startswith("model.") else k: v for k, v in tensors.items()}
    renamed["model.visual.blocks.0.attn.qkv.weight"] = np.zeros((3, 3), np.float32)
    renamed["mtp.fc.weight"] = np.zeros((3, 3), np.float32)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    text_config = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_5_moe", "architectures": ["Qwen3_5MoeForConditionalGeneration"],
                                                      "text_config": text_config, "tie_word_embeddings": True}))
    ours = load_hf_model(tmp_path)
    assert ours.config == load_hf_model(directory).config
    tokens = random_tokens(batch=2, length=20)
    assert np.abs(forward(ours, tokens) - hf_logits(hf_model, tokens)).max() < 1e-4


def _loss(model, tokens):
    logits = model(tokens)
    return -jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), tokens[:, 1:, None], axis=-1).mean()


@pytest.mark.parametrize("mesh_shape", [dict(data=2, fsdp=2, tensor=2),
                                        # ~35 s; the expert axis itself is covered in test_expert_parallel.py
                                        pytest.param(dict(data=1, fsdp=2, tensor=2, expert=2), marks=pytest.mark.slow)])
def test_a_sharded_forward_and_gradient_on_8_devices_equal_one_device(mesh_shape):
    config = get_config("qwen3_5_moe_tiny", moe_dispatch="blocked", num_layers=2, layer_types=("linear_attention", "full_attention"))
    tokens = jnp.asarray(random_tokens(batch=4, length=80) % 512)
    single = create_model(config, seed=2)
    mesh = make_mesh(**mesh_shape)
    sharded = create_model(config, seed=2, mesh=mesh)
    with jax.set_mesh(mesh):
        np.testing.assert_allclose(forward(sharded, tokens), forward(single, tokens), atol=1e-5)
        sharded_grads = nnx.state(nnx.jit(nnx.grad(_loss))(sharded, tokens), nnx.Param)
    single_grads = dict(nnx.to_flat_state(nnx.state(nnx.jit(nnx.grad(_loss))(single, tokens), nnx.Param)))
    for path, grad in nnx.to_flat_state(sharded_grads):
        np.testing.assert_allclose(grad.get_value(), single_grads[path].get_value(), atol=1e-6, err_msg=str(path))
    conv_grad = single_grads[("layers", 0, "linear_attn", "conv")].get_value()
    assert np.abs(conv_grad).max() > 0, "gradients reach the Gated DeltaNet convolution"


@pytest.mark.slow  # a whole training run (~25 s); LoRA's targets and stacking are checked in the scanned test
def test_a_lora_run_adapts_the_gated_deltanet_projections(tmp_path):
    from nn_train.trainer import train
    from tests.nn_train.test_trainer import losses, restored_params, tiny_config

    summary = train(tiny_config(**{"model.preset": "qwen3_5_tiny", "training.num_steps": 4, "checkpoint.schedule": "final"}), tmp_path)
    assert summary["checkpoints"] == [4] and all(np.isfinite(list(losses(tmp_path).values())))
    _, state = restored_params(tmp_path, 4)
    adapters = {jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(state["params"])}
    assert any("linear_attn" in name and "in_proj_qkv" in name for name in adapters)
    assert any("['attn']" in name and "q_proj" in name for name in adapters)


def test_published_sizes():
    # Qwen3.5-35B-A3B: 35B parameters, 3B active; Qwen3.5-397B-A17B: 397B, 17B active (model cards).
    # Active: what a token multiplies by (its experts, not the others; not the input embedding lookup).
    # The shape formula counts the built model exactly (checked on the tiny shapes: building the
    # published ones abstractly takes a minute).
    for preset in ("qwen3_5_tiny", "qwen3_5_moe_tiny"):
        assert param_count(get_config(preset)) == get_config(preset).approx_param_count
    for preset, total, active in (("qwen3_5_35b_a3b", 35, 3), ("qwen3_5_397b_a17b", 397, 17)):
        config = get_config(preset)
        count = config.approx_param_count
        assert abs(count / 1e9 - total) / total < 0.03, preset
        inactive = config.num_layers * 3 * config.embed_dim * config.expert_mlp_dim * (config.num_experts - config.experts_per_token)
        lookup = config.vocab_size * config.embed_dim
        assert abs((count - inactive - lookup) / 1e9 - active) / active < 0.05, preset


def test_bad_hybrid_configs_are_named():
    with pytest.raises(ValueError, match="layer_types has 3 entries for num_layers=4"):
        get_config("qwen3_5_tiny", layer_types=("linear_attention",) * 3)
    with pytest.raises(ValueError, match=r"layer_types \['sliding_attention'\] are not among"):
        get_config("qwen3_5_tiny", layer_types=("sliding_attention",) * 4)
    with pytest.raises(ValueError, match=r"linear_num_value_heads \(3\) must be a multiple of linear_num_key_heads \(2\)"):
        get_config("qwen3_5_tiny", linear_num_value_heads=3)


def test_scanned_hybrid_layers_are_the_loop_loaded_decoded_exported_and_adapted_alike(hf_checkpoints, tmp_path):
    from safetensors.numpy import load_file

    from nn_train.models.lora import LoRAConfig, apply_lora, export_peft

    hf_model, directory = hf_checkpoints("qwen3_5_gqa2_untied")
    config = load_hf_model(directory).config.replace(num_layers=8, layer_types=tuple(get_config("qwen3_5_tiny").mixers * 2))
    loop, scanned = create_model(config.replace(scan_layers=False), seed=5), create_model(config.replace(scan_layers=True), seed=5)
    assert scanned.layers.blocks[0].linear_attn.conv.get_value().shape == (2, 4, 96)  # [G, K, C]: 2 groups of 4 layers
    tokens = random_tokens(batch=2, length=70, seed=7)
    np.testing.assert_allclose(forward(scanned, tokens), forward(loop, tokens), atol=1e-5)
    extend = nnx.jit(lambda m, t, c: m.extend(t, c))
    caches = {}
    for name, model in (("loop", loop), ("scanned", scanned)):
        logits, cache = extend(model, jnp.asarray(tokens[:, :66]), KVCache.init(model.config, 2, 70, np.array([0, 3])))
        step, _ = extend(model, jnp.asarray(tokens[:, 66:67]), cache)
        caches[name] = (np.asarray(logits[:, -1]), np.asarray(step[:, 0]))
    for a, b in zip(caches["loop"], caches["scanned"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    from nn_train.models.hf_checkpoint import export_hf_model

    export_hf_model(scanned, tmp_path / "scanned")
    export_hf_model(loop, tmp_path / "loop")
    a, b = load_file(tmp_path / "scanned" / "model.safetensors"), load_file(tmp_path / "loop" / "model.safetensors")
    assert sorted(a) == sorted(b) and "model.layers.6.linear_attn.conv1d.weight" in a
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    lora = LoRAConfig(rank=2, alpha=4)
    for model in (loop, scanned):
        apply_lora(model, lora, rngs=nnx.Rngs(3))
    peft = {name: load_file(tmp_path / name / "adapter_model.safetensors")
            for name, model in (("loop_peft", loop), ("scanned_peft", scanned)) if export_peft(model, tmp_path / name, lora)}
    assert sorted(peft["loop_peft"]) == sorted(peft["scanned_peft"])
    assert "base_model.model.model.layers.6.linear_attn.in_proj_qkv.lora_A.weight" in peft["loop_peft"]
    for key, value in peft["loop_peft"].items():
        np.testing.assert_array_equal(value, peft["scanned_peft"][key], err_msg=key)
