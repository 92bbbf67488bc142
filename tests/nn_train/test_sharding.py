"""Sharding on an 8-device CPU mesh (2 data × 2 fsdp × 2 tensor): parameters split as the rules say,
and the sharded forward equals the single-device one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from nn_train.models import create_model, get_config
from nn_train.models.hf_checkpoint import load_hf_model
from nn_train.sharding import logical_to_spec, make_mesh
from tests.nn_train.hf_oracle import forward, random_tokens


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, "tests run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    return make_mesh(data=2, fsdp=2, tensor=2)


def _sharded_forward(model, tokens, mesh):
    graphdef, state = nnx.split(model)
    batch_sharding = jax.sharding.NamedSharding(mesh, P(("data", "fsdp", "expert"), None))

    @jax.jit
    def run(state, tokens):
        return nnx.merge(graphdef, state)(tokens)

    with jax.set_mesh(mesh):
        return run(state, jax.device_put(tokens, batch_sharding))


def test_parameters_are_sharded_as_the_rules_say(mesh):
    config = get_config("qwen3_tiny")  # 4 heads, 2 kv heads: both split over tensor=2
    model = create_model(config, seed=0, mesh=mesh)
    attn, mlp = model.layers[0].attn, model.layers[0].mlp
    expected = {
        "embedding [vocab, embed]": (model.embed.embedding, P("tensor", "fsdp")),
        "q_proj [embed, heads, head_dim]": (attn.q_proj.kernel, P("fsdp", "tensor", None)),
        "k_proj [embed, kv_heads, head_dim]": (attn.k_proj.kernel, P("fsdp", "tensor", None)),
        "o_proj [heads, head_dim, embed]": (attn.o_proj.kernel, P("tensor", None, "fsdp")),
        "gate_proj [embed, mlp]": (mlp.gate_proj.kernel, P("fsdp", "tensor")),
        "down_proj [mlp, embed]": (mlp.down_proj.kernel, P("tensor", "fsdp")),
        "q_norm [head_dim]": (attn.q_norm.scale, P(None)),
    }
    for name, (variable, spec) in expected.items():
        array = variable[...]
        assert array.sharding.spec == spec, name
        # Each device really holds only its block.
        assert array.addressable_shards[0].data.size == array.size // np.prod([mesh.shape[a] for a in spec if a] or [1]), name


def test_an_axis_the_mesh_does_not_divide_is_replicated(mesh):
    model = create_model(get_config("llama3_tiny"), seed=0, mesh=mesh)  # one kv head
    assert model.layers[0].attn.k_proj.kernel[...].sharding.spec == P("fsdp", None, None)
    assert logical_to_spec(("kv_heads",), (1,), mesh) == P(None)
    assert logical_to_spec(("kv_heads",), (2,), mesh) == P("tensor")


@pytest.mark.parametrize("preset", ["qwen3_tiny", "llama3_tiny"])
def test_sharded_forward_equals_single_device(mesh, preset):
    tokens = jnp.asarray(random_tokens(4, 32) % 512)
    single = forward(create_model(get_config(preset), seed=0), tokens)
    sharded_model = create_model(get_config(preset), seed=0, mesh=mesh)
    sharded = _sharded_forward(sharded_model, tokens, mesh)
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(sharded), single, atol=1e-5)


def test_hugging_face_checkpoint_loads_straight_into_shards(mesh, hf_checkpoints):
    _, directory = hf_checkpoints("qwen3_mha_untied")
    single = load_hf_model(directory)
    sharded = load_hf_model(directory, mesh=mesh)
    kernel = sharded.layers[1].mlp.up_proj.kernel[...]
    assert kernel.sharding.spec == P("fsdp", "tensor")
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(single.layers[1].mlp.up_proj.kernel[...]))
    tokens = jnp.asarray(random_tokens(4, 24))
    np.testing.assert_allclose(np.asarray(_sharded_forward(sharded, tokens, mesh)), forward(single, tokens), atol=1e-5)


@pytest.mark.parametrize(
    "sizes, message",
    [
        (dict(data=3, fsdp=1, tensor=1), r"do not divide the 8 devices"),
        (dict(data=-1, fsdp=-1, tensor=2), r"at most one axis may be -1"),
        (dict(data=2, fsdp=2, tensor=1), r"use 4 of 8 devices"),
        (dict(data=1, fsdp=2, expert=3, tensor=1), r"mesh sizes \{'data': 1, 'fsdp': 2, 'expert': 3, 'tensor': 1\} do not divide the 8 devices"),
        (dict(data=1, fsdp=-1, expert=-1, tensor=1), r"at most one axis may be -1"),
    ],
)
def test_bad_mesh_sizes(sizes, message):
    with pytest.raises(ValueError, match=message):
        make_mesh(**sizes)


def test_fill_axis_and_unknown_logical_axis():
    assert dict(make_mesh(data=2, fsdp=-1, tensor=2).shape) == {"data": 2, "fsdp": 2, "expert": 1, "tensor": 2}
    assert dict(make_mesh(data=1, fsdp=-1, tensor=2, expert=2).shape) == {"data": 1, "fsdp": 2, "expert": 2, "tensor": 2}
    with pytest.raises(KeyError, match="logical axis 'moe_groups' has no rule"):
        logical_to_spec(("moe_groups",))
