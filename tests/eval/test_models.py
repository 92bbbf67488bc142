"""Loading what to evaluate: every saved step of a LoRA run (adapters restored, then merged) and of a
full fine-tune equals the trainer's checkpointed parameters; a Hugging Face directory loads with
its tokenizer; mistakes give one-line errors."""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from eval.models import ModelLoadError, checkpoint_steps, iter_run, load, load_hf, load_run
from nn_train.models import create_model, get_config
from nn_train.models.hf_checkpoint import export_hf_model
from nn_train.models.lora import lora_modules, merge_lora
from nn_train.sharding import make_mesh
from nn_train.trainer import train
from tests.nn_train.hf_oracle import REPO_ROOT, forward

TOKENS = np.random.RandomState(0).randint(0, 320, (2, 24)).astype(np.int32)


def tiny_run_config(**overrides):
    """configs/train/cpu_tiny_lora.py on one device, 4 steps, a checkpoint every 2, vocabulary 320."""
    spec = importlib.util.spec_from_file_location("cpu_tiny_lora", REPO_ROOT / "configs" / "train" / "cpu_tiny_lora.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    settings = {"data.seq_len": 32, "training.num_steps": 4, "checkpoint.every_steps": 2, "mesh.num_devices": 1,
                "mesh.fsdp": 1, **overrides}
    for dotted, value in settings.items():
        group, key = dotted.split(".")
        config[group][key] = value
    return config


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lora")
    train(tiny_run_config(), workdir)
    return workdir


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    train(tiny_run_config(**{"lora.enabled": False}), workdir)
    return workdir


def checkpointed_params(workdir, step):
    """The trainer's trainable parameters at `step`, read back independently of eval.models."""
    return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")["params"]


def assert_same_arrays(ours, saved):
    """Equal pytrees of arrays, matching keys by name (Orbax gives layer indices back as strings)."""
    flat = lambda tree: {tuple(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    ours, saved = flat(ours), flat(saved)
    assert sorted(ours) == sorted(saved) and ours
    for key, value in ours.items():
        np.testing.assert_array_equal(value, saved[key], err_msg=str(key))


def test_every_step_of_a_lora_run_loads_with_the_trainers_adapters(lora_run, tokenizer):
    assert checkpoint_steps(lora_run) == [2, 4]
    unmerged = list(iter_run(lora_run, "all", tokenizer=tokenizer, merge=False))
    assert [(m.step, m.name) for m in unmerged] == [(2, f"{lora_run.name}@2"), (4, f"{lora_run.name}@4")]
    for loaded in unmerged:
        adapters = nnx.to_pure_dict(nnx.state(loaded.model, nnx.LoRAParam))
        assert len(jax.tree.leaves(adapters)) == 2 * len(lora_modules(loaded.model)) > 0
        assert_same_arrays(adapters, checkpointed_params(lora_run, loaded.step))
    assert loaded.run_config.lora.enabled and loaded.tokenizer is tokenizer

    merged = load_run(lora_run, step="latest", tokenizer=tokenizer)
    assert merged.step == 4 and not lora_modules(merged.model)
    np.testing.assert_allclose(forward(merged.model, TOKENS), forward(merge_lora(unmerged[1].model), TOKENS), atol=1e-6)
    np.testing.assert_allclose(forward(merged.model, TOKENS), forward(unmerged[1].model, TOKENS), atol=1e-4)
    assert np.abs(forward(unmerged[0].model, TOKENS) - forward(unmerged[1].model, TOKENS)).max() > 1e-3, "steps differ"


def test_a_full_fine_tune_loads_its_checkpointed_parameters(full_run, tokenizer):
    loaded = load(full_run, step=2, tokenizer=tokenizer)
    assert_same_arrays(nnx.to_pure_dict(nnx.state(loaded.model, nnx.Param)), checkpointed_params(full_run, 2))
    base = create_model(loaded.model.config, seed=loaded.run_config.training.seed)
    assert np.abs(forward(loaded.model, TOKENS) - forward(base, TOKENS)).max() > 1e-3, "trained, not the base"
    # Restored straight into the shards of a 2x2x2 mesh: the same parameters, spread over 8 devices.
    mesh = make_mesh(2, 2, 2)
    sharded = load(full_run, step=2, tokenizer=tokenizer, mesh=mesh)
    kernel = sharded.model.layers[0].mlp.up_proj.kernel[...]
    assert len(kernel.sharding.device_set) == 8 and kernel.sharding.shard_shape(kernel.shape) != kernel.shape
    assert_same_arrays(nnx.to_pure_dict(nnx.state(sharded.model, nnx.Param)), checkpointed_params(full_run, 2))
    assert sharded.sampler().mesh is mesh


def test_a_hugging_face_directory_loads_with_its_tokenizer(tmp_path, tokenizer):
    model = create_model(get_config("qwen3_tiny", vocab_size=320), seed=5)
    directory = export_hf_model(model, tmp_path / "hf-tiny")
    tokenizer.save_pretrained(directory)
    loaded = load(directory)
    assert (loaded.name, loaded.step, len(loaded.tokenizer)) == ("hf-tiny", -1, 320)
    np.testing.assert_allclose(forward(loaded.model, TOKENS), forward(model, TOKENS), atol=1e-5)
    assert load_hf(directory, dtype="bfloat16").model.config.dtype == "bfloat16"
    assert loaded.sampler().name == "hf-tiny"


def test_mistakes_give_one_line_errors(tmp_path, lora_run, tokenizer):
    def message(call) -> str:
        with pytest.raises(ModelLoadError) as caught:
            call()
        text = str(caught.value)
        assert "\n" not in text
        return text

    assert message(lambda: load(tmp_path)) == f"no checkpoint in {tmp_path / 'checkpoints'}; train first or pass an HF directory"
    (tmp_path / "checkpoints").mkdir()
    assert message(lambda: load_run(tmp_path)).startswith("no checkpoint in")
    assert message(lambda: load_run(lora_run, step=3, tokenizer=tokenizer)) == (
        f"step 3 is not in {lora_run / 'checkpoints'}; saved steps: 2, 4")
    assert "names no tokenizer" in message(lambda: load_run(lora_run))  # synthetic data: no tokenizer in the config
    assert message(lambda: load_run(lora_run, tokenizer=tmp_path / "missing")).startswith(
        f"cannot load a tokenizer from '{tmp_path / 'missing'}'")
    assert "no config.json" in message(lambda: load_hf(tmp_path))
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
    assert "model_type 'gpt2' is not supported" in message(lambda: load(tmp_path / "gpt2"))

