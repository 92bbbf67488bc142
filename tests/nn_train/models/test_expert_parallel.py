"""Expert parallelism (the `expert` mesh axis) on 8 CPU devices: the tiny Qwen3-MoE's logits,
gradients and training steps on meshes with expert = 2 or 4 (mixed with data, fsdp, tensor) equal
the single-device ones; each device really holds and runs only its E/ep experts; bad expert axes
are refused in one line before anything compiles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from nn_train.config import ConfigError
from nn_train.models import create_model, get_config
from nn_train.models import moe
from nn_train.sharding import make_mesh
from tests.nn_train.hf_oracle import forward, random_tokens

E, F = 8, 32  # qwen3_moe_tiny: 8 experts of width 32, 2 per token


def _mesh(**sizes):
    assert jax.device_count() == 8, "tests run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    return make_mesh(**{"data": 1, "fsdp": 1, "tensor": 1, **sizes})


def _spy_on_dispatch(monkeypatch, dispatch):
    """Records the expert kernels' shapes each dispatch call sees (at trace time)."""
    seen = []
    name = {"ragged": "_ragged_dispatch", "blocked": "_blocked_dispatch", "dense": "_dense_dispatch"}[dispatch]
    original = getattr(moe, name)

    def spy(x, weights, experts, gate, up, down):
        seen.append((gate.shape, down.shape))
        return original(x, weights, experts, gate, up, down)

    monkeypatch.setattr(moe, name, spy)
    return seen


@pytest.mark.parametrize("sizes, dispatch, tokens_shape", [
    (dict(data=2, expert=2, tensor=2), "ragged", (4, 16)),
    (dict(fsdp=2, expert=4), "blocked", (4, 16)),
    (dict(expert=4, tensor=2), "dense", (4, 16)),
    (dict(data=2, fsdp=2, expert=2), "blocked", (1, 3)),  # 3 tokens: replicated over the expert axis (the psum path)
])
def test_forward_on_an_expert_mesh_equals_one_device(monkeypatch, sizes, dispatch, tokens_shape):
    config = get_config("qwen3_moe_tiny", moe_dispatch=dispatch)
    tokens = jnp.asarray(random_tokens(*tokens_shape) % 512)
    single = forward(create_model(config, seed=2), tokens)
    mesh = _mesh(**sizes)
    model = create_model(config, seed=2, mesh=mesh)
    seen = _spy_on_dispatch(monkeypatch, dispatch)
    with jax.set_mesh(mesh):
        sharded = forward(model, tokens)
    np.testing.assert_allclose(sharded, single, atol=1e-5, rtol=0)
    ep, tp = sizes["expert"], sizes.get("tensor", 1)
    assert seen and set(seen) == {((E // ep, 64, F // tp), (E // ep, F // tp, 64))}, "each device runs only its E/ep experts"


def test_expert_kernels_are_split_over_the_expert_axis():
    mesh = _mesh(fsdp=2, expert=2, tensor=2)
    model = create_model(get_config("qwen3_moe_tiny"), seed=0, mesh=mesh)
    mlp = model.layers[0].mlp
    gate, down = mlp.experts.gate_proj[...], mlp.experts.down_proj[...]
    assert gate.sharding.spec == P("expert", "fsdp", "tensor")
    assert down.sharding.spec == P("expert", "tensor", "fsdp")
    assert gate.addressable_shards[0].data.shape == (E // 2, 64 // 2, F // 2)
    # Everything else treats the expert axis as more fsdp: the router and attention split embed over both.
    assert mlp.router.kernel[...].sharding.spec == P(("fsdp", "expert"), None)
    assert model.layers[0].attn.q_proj.kernel[...].sharding.spec == P(("fsdp", "expert"), "tensor", None)


def _loss(model, tokens):
    logits = model(tokens)
    return -jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), tokens[:, 1:, None], axis=-1).mean()


@pytest.mark.parametrize("dispatch", ["ragged", "blocked"])
def test_loss_and_gradients_on_an_expert_mesh_equal_one_device(dispatch):
    config = get_config("qwen3_moe_tiny", moe_dispatch=dispatch)
    tokens = jnp.asarray(random_tokens(4, 16) % 512)

    def loss_and_grads(model):
        graphdef, state = nnx.split(model)

        @jax.jit
        def run(state, tokens):
            return jax.value_and_grad(lambda s: _loss(nnx.merge(graphdef, s), tokens))(state)

        loss, grads = run(state, tokens)
        return float(loss), {jax.tree_util.keystr(p): np.asarray(g) for p, g in jax.tree_util.tree_leaves_with_path(grads)}

    one_loss, one = loss_and_grads(create_model(config, seed=3))
    mesh = _mesh(data=2, expert=2, tensor=2)
    with jax.set_mesh(mesh):
        ep_loss, ep = loss_and_grads(create_model(config, seed=3, mesh=mesh))
    assert abs(ep_loss - one_loss) < 1e-6
    assert one.keys() == ep.keys()
    for name in one:
        np.testing.assert_allclose(ep[name], one[name], atol=1e-6, rtol=1e-5, err_msg=name)
    experts = next(g for n, g in one.items() if "experts" in n and "gate_proj" in n)
    assert (np.abs(experts).reshape(E, -1).max(axis=1) > 0).sum() >= 4, "the gradients reach experts on both halves of the axis"


def test_a_training_step_on_an_expert_mesh_equals_one_device():
    """The trainer's own step (setup: its shardings, batch split, optimizer): loss, gradient norm and
    updated parameters of one full fine-tuning step, on 1 device and on expert 4 x tensor 2."""
    from nn_train.trainer import setup
    from tests.nn_train.test_trainer import tiny_config

    common = {"model.preset": "qwen3_moe_tiny", "lora.enabled": False, "optimizer.learning_rate": 1e-3}
    runs = {"one": setup(tiny_config(**common, **{"mesh.num_devices": 1, "mesh.fsdp": 1})),
            "ep": setup(tiny_config(**common, **{"mesh.fsdp": 1, "mesh.expert": 4, "mesh.tensor": 2}))}
    gate = runs["ep"].state["params"]["layers"][0]["mlp"]["experts"]["gate_proj"]
    assert gate.sharding.spec == P("expert", None, "tensor")
    assert runs["ep"].batch_sharding.spec == P(None, ("data", "fsdp", "expert"), None)
    host_batch = runs["one"].source.next_batch(8, 1)
    out = {}
    for name, run in runs.items():
        with jax.set_mesh(run.mesh):
            state, metrics = run.step_fn(run.state, run.frozen, run.device_batch(host_batch))
        out[name] = (jax.device_get(metrics), jax.tree.map(np.asarray, state["params"]))
    (one_metrics, one_params), (ep_metrics, ep_params) = out["one"], out["ep"]
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(ep_metrics[key], one_metrics[key], rtol=1e-5, err_msg=key)
    for path, a in jax.tree_util.tree_leaves_with_path(ep_params):
        b = one_params
        for entry in path:
            b = b[entry.key]
        # Adam's first step is about lr * g / |g| per element: where g is near zero, float noise in g moves
        # it by up to ~3e-6 here (lr 1e-3); a wrong expert's output or gradient moves it by ~lr.
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=jax.tree_util.keystr(path))


def test_a_dense_model_takes_the_expert_axis_as_more_data_parallelism():
    tokens = jnp.asarray(random_tokens(4, 16) % 512)
    single = forward(create_model(get_config("qwen3_tiny"), seed=0), tokens)
    mesh = _mesh(data=2, expert=4)
    with jax.set_mesh(mesh):
        np.testing.assert_allclose(forward(create_model(get_config("qwen3_tiny"), seed=0, mesh=mesh), tokens), single, atol=1e-5)


def test_an_expert_axis_that_does_not_divide_the_experts_is_one_line_before_compiling():
    from nn_train.config import validate_config
    from nn_train.plan import plan
    from nn_train.trainer import setup
    from tests.nn_train.test_trainer import tiny_config

    message = r"num_experts \(8\) is not divisible by mesh.expert \(3\)"
    six = {"model.preset": "qwen3_moe_tiny", "mesh.num_devices": 6, "mesh.fsdp": 2, "mesh.expert": 3, "training.global_batch_size": 6}
    with pytest.raises(ConfigError, match=rf"^config key 'mesh.expert': {message}"):
        setup(tiny_config(**six))
    with pytest.raises(ConfigError, match=rf"^config key 'mesh.expert': {message}"):
        plan(tiny_config(**six))
    with pytest.raises(ValueError, match=message):  # building a model on such a mesh directly
        create_model(get_config("qwen3_moe_tiny"), mesh=make_mesh(fsdp=2, expert=3, devices=jax.devices()[:6]))
    with pytest.raises(ConfigError, match=r"^config keys 'mesh.data/fsdp/expert/tensor' = \[1, -1, 0, 1\]: sizes must be positive"):
        validate_config(tiny_config(**{"mesh.expert": 0}))
    with pytest.raises(ConfigError, match=r"mesh sizes \{'data': 1, 'fsdp': 1, 'expert': 3, 'tensor': 1\} do not divide the 8 devices"):
        setup(tiny_config(**{"model.preset": "qwen3_moe_tiny", "mesh.fsdp": 1, "mesh.expert": 3}))
    with pytest.raises(ConfigError, match=r"6 rows per microbatch .* do not split over the 4 data-parallel devices \(mesh data × fsdp × expert\)"):
        setup(tiny_config(**{"model.preset": "qwen3_moe_tiny", "mesh.num_devices": 4, "mesh.fsdp": 1, "mesh.expert": 4,
                             "training.global_batch_size": 6}))


def test_a_config_saved_before_the_expert_axis_builds_its_mesh():
    from nn_train.trainer import build_mesh
    from tests.nn_train.test_trainer import tiny_config

    config = tiny_config(**{"mesh.data": 2, "mesh.tensor": 2})
    del config.mesh["expert"]
    assert dict(build_mesh(config).shape) == {"data": 2, "fsdp": 2, "expert": 1, "tensor": 2}
