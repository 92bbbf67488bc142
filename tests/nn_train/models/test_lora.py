"""LoRA: only adapters are trainable, merging is exact, PEFT exports load in peft and agree."""

from __future__ import annotations

import contextlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn_train.models import create_model, get_config
from nn_train.models.hf_checkpoint import export_hf_model, load_hf_model
from nn_train.models.lora import LoRAConfig, apply_lora, export_peft, lora_modules, merge_lora
from tests.nn_train.hf_oracle import forward, hf_logits, random_tokens

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")


def _with_trained_adapters(model, config: LoRAConfig, seed: int = 0):
    """Attaches adapters and gives B random values, as if trained (B starts at zero)."""
    adapted = apply_lora(model, config, rngs=nnx.Rngs(seed))
    for i, adapter in enumerate(lora_modules(model).values()):
        adapter.b.set_value(0.05 * jax.random.normal(jax.random.key(seed * 1000 + i), adapter.b.get_value().shape))
    return adapted


def test_adapters_start_at_the_base_model_and_are_the_only_lora_params():
    model = create_model(get_config("qwen3_tiny"), seed=0)
    tokens = jnp.asarray(random_tokens(2, 16) % 512)
    before = forward(model, tokens)
    adapted = apply_lora(model, LoRAConfig(rank=4, alpha=8), rngs=nnx.Rngs(1))
    assert len(adapted) == 2 * 7 + 1  # 7 projections per layer, plus the (tied) unembedding
    np.testing.assert_array_equal(forward(model, tokens), before)  # B = 0
    lora_leaves = jax.tree.leaves(nnx.state(model, nnx.LoRAParam))
    assert len(lora_leaves) == 2 * len(adapted)
    base = nnx.state(model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam)))
    assert len(jax.tree.leaves(base)) == len(jax.tree.leaves(nnx.state(create_model(get_config("qwen3_tiny")), nnx.Param)))


def test_gradients_flow_only_to_adapters():
    model = create_model(get_config("llama3_tiny"), seed=0)
    apply_lora(model, LoRAConfig(rank=4, alpha=8, train_unembedding=False), rngs=nnx.Rngs(1))
    graphdef, lora_params, rest = nnx.split(model, nnx.LoRAParam, ...)
    tokens = jnp.asarray(random_tokens(2, 16) % 512)

    def loss(lora_params):
        return nnx.merge(graphdef, lora_params, rest)(tokens).mean()

    grads = jax.jit(jax.grad(loss))(lora_params)
    assert {type(v) for v in jax.tree.leaves(grads, is_leaf=lambda x: isinstance(x, nnx.Variable))} == {nnx.LoRAParam}
    assert any(np.abs(np.asarray(g)).max() > 0 for g in jax.tree.leaves(grads))


def test_targets_by_name_pattern_and_targets_matching_nothing():
    model = create_model(get_config("qwen3_tiny"))
    adapted = apply_lora(model, LoRAConfig(rank=2, targets=(r"attn\.(q|v)_proj",), train_unembedding=False), rngs=nnx.Rngs(0))
    assert adapted == ["layers.0.attn.q_proj", "layers.0.attn.v_proj", "layers.1.attn.q_proj", "layers.1.attn.v_proj"]
    with pytest.raises(ValueError, match=r"LoRA targets attn\\\.qkv match no module; module paths look like: layers\.0\.attn\.k_proj"):
        apply_lora(create_model(get_config("qwen3_tiny")), LoRAConfig(targets=(r"attn\.qkv",)), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("case", ["qwen3_mha_untied", "llama_gqa4_tied_llama3_rope"])
def test_merged_export_matches_unmerged_forward(hf_checkpoints, tmp_path, case):
    _, directory = hf_checkpoints(case)
    model = load_hf_model(directory)
    _with_trained_adapters(model, LoRAConfig(rank=4, alpha=8))
    tokens = random_tokens()
    unmerged = forward(model, tokens)
    merged = merge_lora(model)
    assert not lora_modules(merged)
    assert np.abs(forward(merged, tokens) - unmerged).max() < 1e-5
    with pytest.raises(ValueError, match="has LoRA adapters; export merge_lora"):
        export_hf_model(model, tmp_path / "unmerged")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(export_hf_model(merged, tmp_path / "merged"))
    assert np.abs(hf_logits(reloaded, tokens) - unmerged).max() < 1e-4


@pytest.mark.parametrize("case", ["qwen3_gqa2_tied", "llama_gqa2_untied"])
def test_peft_export_loads_in_peft_and_agrees(hf_checkpoints, tmp_path, case):
    peft = pytest.importorskip("peft", reason="peft (requirements-dev.txt) checks the adapter format")
    hf_model, directory = hf_checkpoints(case)
    model = load_hf_model(directory)
    config = LoRAConfig(rank=4, alpha=16)
    _with_trained_adapters(model, config, seed=1)
    out = export_peft(model, tmp_path / "adapter", config, base_model=str(directory))
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == 16
    assert set(adapter_config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}
    base = transformers.AutoModelForCausalLM.from_pretrained(directory)
    # peft warns that an adapter on a tied lm_head cannot be merged into the shared matrix (our
    # merge_lora unties for that reason); the adapter itself applies exactly.
    tied = hf_model.config.tie_word_embeddings
    with pytest.warns(UserWarning, match="tie_word_embeddings") if tied else contextlib.nullcontext():
        peft_model = peft.PeftModel.from_pretrained(base, out).eval()
    tokens = random_tokens()
    assert np.abs(hf_logits(peft_model, tokens) - forward(model, tokens)).max() < 1e-4

