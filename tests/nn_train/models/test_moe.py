"""Qwen3-MoE: the ragged (grouped-matmul) dispatch against the dense reference, scanned layers,
greedy generation against transformers, a sharded forward, training, and bad configs.
(Logits parity and the export round trip run in test_hf_checkpoint.py's parametrized cases.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn_train.models import config_from_hf, create_model, get_config
from nn_train.models.hf_checkpoint import export_hf_model, load_hf_model
from nn_train.sharding import make_mesh
from tests.nn_train.hf_oracle import assert_greedy_generation_matches, forward, hf_logits, random_tokens

CASE = "qwen3_moe_8x2_gqa2_untied"


def _loss(model, tokens):
    logits = model(tokens)
    return -jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), tokens[:, 1:, None], axis=-1).mean()


@pytest.mark.parametrize("dispatch, tokens_shape", [("ragged", (3, 24)), ("blocked", (3, 24)), ("blocked", (2, 1))])
def test_dropless_dispatch_equals_the_dense_reference_forward_and_backward(dispatch, tokens_shape):
    tokens = jnp.asarray(random_tokens(*tokens_shape) % 512)
    models = {d: create_model(get_config("qwen3_moe_tiny", moe_dispatch=d), seed=1) for d in (dispatch, "dense")}
    np.testing.assert_allclose(forward(models[dispatch], tokens), forward(models["dense"], tokens), atol=1e-5)
    if tokens_shape[1] == 1:
        return  # a decode-sized step: forward only
    grads = {d: nnx.state(nnx.grad(_loss)(m, tokens), nnx.Param) for d, m in models.items()}
    for path, dropless in nnx.to_flat_state(grads[dispatch]):
        dense = dict(nnx.to_flat_state(grads["dense"]))[path]
        np.testing.assert_allclose(dropless.get_value(), dense.get_value(), atol=1e-6, err_msg=str(path))
    experts = grads[dispatch]["layers"][0]["mlp"]["experts"]["gate_proj"].get_value()
    assert (np.abs(experts).reshape(8, -1).max(axis=1) > 0).sum() >= 2, "gradients reach the routed experts"
    assert np.abs(grads[dispatch]["layers"][0]["mlp"]["router"]["kernel"].get_value()).max() > 0, "and the router"


def test_auto_dispatch_is_ragged_on_accelerators_and_dense_on_cpu():
    from nn_train.models.moe import resolve_dispatch

    assert [resolve_dispatch("auto", p) for p in ("gpu", "tpu", "cpu")] == ["ragged", "ragged", "blocked"]
    assert resolve_dispatch("ragged", "cpu") == "ragged"


def test_routing_picks_k_experts_and_renormalises_only_when_asked():
    model = create_model(get_config("qwen3_moe_tiny"), seed=0)
    x = jax.random.normal(jax.random.key(0), (10, 64))
    weights, experts = model.layers[0].mlp.route(x)
    assert weights.shape == experts.shape == (10, 2)
    assert all(len(set(row)) == 2 for row in np.asarray(experts).tolist())
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    raw = create_model(get_config("qwen3_moe_tiny", norm_topk_prob=False), seed=0).layers[0].mlp.route(x)[0]
    assert float(raw.sum(-1).max()) < 1.0 - 1e-3


def test_scanned_layers_load_the_same_checkpoint_and_export_it_unchanged(hf_checkpoints, tmp_path):
    hf_model, directory = hf_checkpoints(CASE)
    loop, scanned = load_hf_model(directory, scan_layers=False), load_hf_model(directory, scan_layers=True)
    assert scanned.layers.mlp.experts.gate_proj.get_value().shape == (2, 8, 64, 32)  # [L, E, D, F]
    tokens = random_tokens(batch=2, length=32)
    np.testing.assert_allclose(forward(scanned, tokens), forward(loop, tokens), atol=1e-5)
    assert np.abs(forward(scanned, tokens) - hf_logits(hf_model, tokens)).max() < 1e-4
    from safetensors.numpy import load_file

    export_hf_model(scanned, tmp_path / "scanned")
    export_hf_model(loop, tmp_path / "loop")
    a, b = load_file(tmp_path / "scanned" / "model.safetensors"), load_file(tmp_path / "loop" / "model.safetensors")
    assert sorted(a) == sorted(b) and "model.layers.1.mlp.experts.7.down_proj.weight" in a
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_greedy_generation_matches_transformers_token_for_token(hf_checkpoints):
    pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")
    hf_model, directory = hf_checkpoints(CASE)
    prompts = [list(p) for p in random_tokens(batch=2, length=9, seed=4)]
    prompts[1] = prompts[1][:5]  # rows of different lengths: the sampler left-pads
    assert_greedy_generation_matches(hf_model, load_hf_model(directory), prompts)


@pytest.mark.parametrize("dispatch", ["ragged", "blocked", "dense"])
def test_a_sharded_forward_on_8_devices_equals_one_device(dispatch):
    config = get_config("qwen3_moe_tiny", moe_dispatch=dispatch)
    tokens = jnp.asarray(random_tokens(batch=4, length=16) % 512)
    single = forward(create_model(config, seed=2), tokens)
    mesh = make_mesh(2, 2, 2)
    sharded_model = create_model(config, seed=2, mesh=mesh)
    experts = sharded_model.layers[0].mlp.experts.gate_proj.get_value()
    assert len(experts.sharding.device_set) == 8
    with jax.set_mesh(mesh):
        sharded = forward(sharded_model, tokens)
    np.testing.assert_allclose(sharded, single, atol=1e-5)


def test_a_lora_run_adapts_the_attention_and_every_expert(tmp_path):
    from nn_train.trainer import train
    from tests.nn_train.test_trainer import losses, restored_params, tiny_config

    summary = train(tiny_config(**{"model.preset": "qwen3_moe_tiny", "training.num_steps": 6, "checkpoint.schedule": "final"}),
                    tmp_path)  # the default targets: attention and MLP projections, here the experts'
    assert summary["checkpoints"] == [6] and all(np.isfinite(list(losses(tmp_path).values())))
    _, state = restored_params(tmp_path, 6)
    adapters = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state["params"])}
    expert_b = [name for name in adapters if "experts" in name and name.endswith("['b']")]
    assert len(expert_b) == 2 * 3 and any("q_proj" in name for name in adapters)  # 2 layers x gate, up, down
    assert {adapters[name].shape for name in expert_b} == {(8, 4, 32), (8, 4, 64)}  # B [E, r, F] (gate, up), [E, r, D] (down)
    assert all(np.abs(adapters[name]).max() > 0 for name in expert_b), "every expert adapter's B moved from zero"


def test_expert_adapters_merge_exactly_scan_like_the_loop_and_refuse_peft(tmp_path):
    import transformers

    from nn_train.models.lora import LoRAConfig, apply_lora, export_peft, lora_modules, merge_lora

    tokens = jnp.asarray(random_tokens(2, 16) % 512)
    config = LoRAConfig(rank=4, alpha=8, train_unembedding=False)
    model = create_model(get_config("qwen3_moe_tiny", scan_layers=False), seed=0)
    assert "layers.1.mlp.down_proj" in apply_lora(model, config, rngs=nnx.Rngs(1))
    loop = lora_modules(model)
    for i, adapter in enumerate(loop.values()):  # as if trained: B away from zero
        adapter.b.set_value(0.05 * jax.random.normal(jax.random.key(i), adapter.b.get_value().shape))
    scanned_model = create_model(get_config("qwen3_moe_tiny", scan_layers=True), seed=0)
    assert "layers.mlp.down_proj" in apply_lora(scanned_model, config, rngs=nnx.Rngs(1))
    for name, adapter in lora_modules(scanned_model).items():  # [L, E, ...]: layer i is the loop's layer i
        per_layer = [loop[name.replace("layers.", f"layers.{i}.", 1)] for i in range(2)]
        np.testing.assert_array_equal(adapter.a.get_value(), np.stack([a.a.get_value() for a in per_layer]), err_msg=name)
        adapter.b.set_value(jnp.stack([a.b.get_value() for a in per_layer]))
    outputs = {False: (forward(model, tokens),), True: (forward(scanned_model, tokens),)}
    np.testing.assert_allclose(outputs[True][0], outputs[False][0], atol=1e-5)
    base = forward(create_model(get_config("qwen3_moe_tiny"), seed=0), tokens)
    assert np.abs(outputs[False][0] - base).max() > 1e-3, "the adapters change the output"
    merged = merge_lora(model)
    np.testing.assert_allclose(forward(merged, tokens), outputs[False][0], atol=1e-5)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(export_hf_model(merged, tmp_path / "merged"))
    assert np.abs(hf_logits(reloaded, np.array(tokens)) - outputs[False][0]).max() < 1e-4
    with pytest.raises(ValueError, match=r"adapters on MoE experts \(layers\.0\.mlp\.gate_proj, \.\.\.\) have no PEFT export yet"):
        export_peft(model, tmp_path / "adapter", LoRAConfig(rank=4, alpha=8))


def test_full_fine_tuning_of_a_moe_model_trains_router_and_experts(tmp_path):
    from nn_train.trainer import train
    from tests.nn_train.test_trainer import losses, restored_params, tiny_config

    train(tiny_config(**{"model.preset": "qwen3_moe_tiny", "lora.enabled": False, "training.num_steps": 4,
                         "checkpoint.schedule": "final"}), tmp_path)
    run = losses(tmp_path)
    assert run[4] < run[1]
    _, state = restored_params(tmp_path, 4)
    start = nnx.state(create_model(get_config("qwen3_moe_tiny"), seed=0), nnx.Param)
    for name in ("router", "experts"):
        trained = jax.tree.leaves(state["params"]["layers"]["0"]["mlp"][name])
        initial = jax.tree.leaves(start["layers"][0]["mlp"][name])
        assert any(np.abs(np.asarray(t) - np.asarray(i.get_value() if hasattr(i, "get_value") else i)).max() > 0
                   for t, i in zip(trained, initial)), name


@pytest.mark.parametrize("overrides, message", [
    (dict(experts_per_token=9), r"experts_per_token must be in 1..num_experts \(8\), got 9"),
    (dict(expert_mlp_dim=0), r"expert_mlp_dim must be positive with experts"),
    (dict(moe_dispatch="sparse"), r"moe_dispatch 'sparse' is not one of auto, ragged, blocked, dense"),
])
def test_bad_moe_settings_are_one_line(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_config("qwen3_moe_tiny", **overrides)


def test_a_checkpoint_with_dense_layers_among_the_sparse_ones_is_refused():
    with pytest.raises(ValueError, match=r"mlp_only_layers=\[0\].*only an MoE MLP in every layer is implemented"):
        config_from_hf({"model_type": "qwen3_moe", "num_hidden_layers": 2, "mlp_only_layers": [0]})


def test_the_published_shapes_are_usable_abstractly():
    from nn_train.metrics import matmul_params
    from nn_train.models import param_count

    config = get_config("qwen3_30b_a3b")
    assert config.scan_layers  # 30B parameters: scanned by default
    total = param_count(config)
    assert 30.0e9 < total < 31.0e9, total  # "30B"
    active = matmul_params(config) + config.vocab_size * config.embed_dim  # a token's matmuls, plus its embedding row
    assert 3.0e9 < active < 3.6e9, active  # "A3B"


def test_attention_adapters_of_a_moe_model_export_to_peft_and_agree(hf_checkpoints, tmp_path):
    peft = pytest.importorskip("peft", reason="peft (requirements-dev.txt) checks the adapter format")
    import json

    import transformers

    from nn_train.models.lora import LoRAConfig, export_peft
    from tests.nn_train.models.test_lora import _with_trained_adapters

    hf_model, directory = hf_checkpoints(CASE)
    model = load_hf_model(directory)
    config = LoRAConfig(rank=4, alpha=16, targets=(r"attn\.(q|k|v|o)_proj",))
    _with_trained_adapters(model, config, seed=2)
    out = export_peft(model, tmp_path / "adapter", config, base_model=str(directory))
    assert set(json.loads((out / "adapter_config.json").read_text())["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "lm_head"}
    peft_model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(directory), out).eval()
    tokens = random_tokens()
    assert np.abs(hf_logits(peft_model, tokens) - forward(model, tokens)).max() < 1e-4


def test_the_blocked_dispatch_is_exact_when_every_token_picks_the_same_experts():
    from nn_train.models.moe import _blocked_dispatch, _dense_dispatch, block_rows

    assert [block_rows(16, 8), block_rows(4096 * 8, 128), block_rows(3, 8)] == [8, 128, 8]
    m, e = 37, 8  # 74 pairs, all in experts 3 and 5: two full groups, six empty ones
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (m, 16))
    gate, up = (jax.random.normal(k, (e, 16, 12)) for k in keys[1:3])
    down = jax.random.normal(keys[3], (e, 12, 16))
    experts = jnp.tile(jnp.asarray([[3, 5]], jnp.int32), (m, 1))
    weights = jax.nn.softmax(jax.random.normal(keys[0], (m, 2)))
    np.testing.assert_allclose(_blocked_dispatch(x, weights, experts, gate, up, down),
                               _dense_dispatch(x, weights, experts, gate, up, down), rtol=1e-5, atol=1e-4)


def test_full_fine_tuning_on_a_2x2x2_mesh_takes_the_single_device_steps(tmp_path):
    """Gradients through the per-device dispatch (rows over data x fsdp, experts' F over tensor)."""
    from nn_train.trainer import train
    from tests.nn_train.test_trainer import losses, tiny_config

    common = {"model.preset": "qwen3_moe_tiny", "lora.enabled": False, "training.num_steps": 4, "training.microbatches": 2,
              "checkpoint.schedule": "final"}
    train(tiny_config(**common, **{"mesh.num_devices": 1, "mesh.fsdp": 1}), tmp_path / "one")
    train(tiny_config(**common, **{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2}), tmp_path / "eight")
    one, eight = losses(tmp_path / "one"), losses(tmp_path / "eight")
    np.testing.assert_allclose([eight[s] for s in sorted(one)], [one[s] for s in sorted(one)], rtol=1e-4)
    assert one[4] < one[1]


def test_the_run_config_chooses_the_dispatch_and_names_a_bad_one():
    from nn_train.config import ConfigError, model_overrides, validate_config
    from tests.nn_train.test_trainer import tiny_config

    config = tiny_config(**{"model.preset": "qwen3_moe_tiny", "model.moe_dispatch": "ragged"})
    validate_config(config)
    assert model_overrides(config)["moe_dispatch"] == "ragged"
    with pytest.raises(ConfigError, match=r"config key 'model.moe_dispatch' is 'sparse'; choose one of: auto, ragged, blocked, dense"):
        validate_config(tiny_config(**{"model.moe_dispatch": "sparse"}))


def test_the_load_balancing_loss_equals_transformers_over_real_tokens(hf_checkpoints):
    torch = pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    from nn_train.models.moe import load_balancing_loss

    hf_model, directory = hf_checkpoints(CASE)
    tokens = random_tokens(batch=2, length=20, seed=7)
    valid = np.ones_like(tokens)
    valid[1, 14:] = 0  # right padding, left out of the loss on both sides
    with torch.no_grad():
        out = hf_model(torch.as_tensor(tokens), attention_mask=torch.as_tensor(valid), output_router_logits=True)
        expected = float(load_balancing_loss_func(out.router_logits, 8, 2, torch.as_tensor(valid)))
    for scan in (False, True):
        model = load_hf_model(directory, scan_layers=scan)
        _, stats = nnx.jit(lambda m, t, s: m.hidden_states_and_router_stats(t, segment_ids=s))(model, jnp.asarray(tokens), jnp.asarray(valid))
        assert float(stats.tokens) == 2 * (20 + 14)  # two layers' real tokens
        assert abs(float(load_balancing_loss(stats)) - expected) < 1e-5, (scan, expected)
    assert 2.0 < expected < 8.0  # k when balanced; routing is uneven here


def test_the_aux_loss_is_logged_and_its_weight_moves_the_router(tmp_path):
    from nn_train.trainer import train
    from tests.nn_train.test_trainer import losses, restored_params, tiny_config

    common = {"model.preset": "qwen3_moe_tiny", "lora.enabled": False, "training.num_steps": 3, "checkpoint.schedule": "final"}
    train(tiny_config(**common), tmp_path / "off")
    train(tiny_config(**common, **{"training.router_aux_loss_weight": 10.0}), tmp_path / "on")
    import json
    records = [json.loads(line) for line in (tmp_path / "off" / "metrics.jsonl").read_text().splitlines()]
    assert all(1.9 < r["router_aux_loss"] < 8.0 for r in records)
    assert losses(tmp_path / "off")[1] == losses(tmp_path / "on")[1], "the logged loss is the cross-entropy alone"
    router = lambda run: np.asarray(restored_params(tmp_path / run, 3)[1]["params"]["layers"]["0"]["mlp"]["router"]["kernel"])
    assert np.abs(router("on") - router("off")).max() > 1e-4
    dense = tmp_path / "dense"
    train(tiny_config(**{"training.num_steps": 1, "checkpoint.schedule": "final"}), dense)
    assert "router_aux_loss" not in json.loads((dense / "metrics.jsonl").read_text().splitlines()[-1])
