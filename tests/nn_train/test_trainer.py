"""The train loop on an 8-device CPU mesh: mesh-independent losses, one compilation, exact resume
after kill -9, LoRA-only updates, masked tokens ignored, divergence stops cleanly, bad configs."""

from __future__ import annotations

import importlib.util
import json
import shutil
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import transformers
from flax import nnx

from nn_train.config import ConfigError
from nn_train.data import targets_and_weights
from nn_train.models import create_model, get_config
from nn_train.trainer import KILL_AFTER_STEP_ENV, KILL_DURING_SAVE_ENV, TrainingError, setup, train
from tests.nn_train.hf_oracle import REPO_ROOT

CONFIG_FILE = REPO_ROOT / "configs" / "train" / "cpu_tiny_lora.py"


def tiny_config(**overrides):
    """configs/train/cpu_tiny_lora.py with dotted overrides, e.g. tiny_config(**{"lora.enabled": False})."""
    spec = importlib.util.spec_from_file_location("cpu_tiny_lora", CONFIG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.seq_len = 32
    for dotted, value in overrides.items():
        group, key = dotted.split(".")
        config[group][key] = value
    return config


def losses(workdir) -> dict[int, float]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}  # a resumed run's later lines win


def restored_params(workdir, step):
    state = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
    return jax.tree.leaves(state["params"]), state


def test_same_losses_on_one_device_and_a_2x2x2_mesh(tmp_path):
    common = {"lora.enabled": False, "training.num_steps": 4, "training.microbatches": 2, "checkpoint.schedule": "final"}
    train(tiny_config(**common, **{"mesh.num_devices": 1, "mesh.fsdp": 1}), tmp_path / "one")
    train(tiny_config(**common, **{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2}), tmp_path / "eight")
    one, eight = losses(tmp_path / "one"), losses(tmp_path / "eight")
    assert sorted(one) == [1, 2, 3, 4]
    np.testing.assert_allclose([eight[s] for s in one], list(one.values()), rtol=1e-4)
    assert one[4] < one[1], "full fine-tuning at lr 1e-2 lowers the loss within 4 steps"


def test_step_compiles_once_and_checkpoints_on_schedule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    summary = train(tiny_config(), tmp_path.name)  # a relative workdir, as users type it
    assert summary["compilations"] == 1
    assert summary["checkpoints"] == [5, 10, 15, 20]
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 20 and record["tokens_seen"] == 20 * 8 * 32
    assert record["mfu"] == "n/a"  # no peak FLOP/s for a CPU
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def _run_cli(workdir, *, kill_after=None, during_save=False):
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AFTER_STEP_ENV, KILL_DURING_SAVE_ENV)}
    if kill_after is not None:
        env[KILL_AFTER_STEP_ENV] = str(kill_after)
    if during_save:
        env[KILL_DURING_SAVE_ENV] = "1"
    command = [sys.executable, "-m", "nn_train.main", f"--config={CONFIG_FILE}", f"--workdir={workdir}",
               "--config.data.seq_len=32", "--config.training.num_steps=10"]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    train(tiny_config(**{"training.num_steps": 10}), workdir)
    return workdir


def test_kill_9_then_rerun_resumes_exactly(tmp_path, uninterrupted):
    killed = _run_cli(tmp_path / "resumed", kill_after=7)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir() if p.name.isdigit()) == ["5"]
    rerun = _run_cli(tmp_path / "resumed")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed from step 5 of 10" in rerun.stdout

    expected, _ = restored_params(uninterrupted, 10)
    actual, _ = restored_params(tmp_path / "resumed", 10)
    assert len(actual) == len(expected) > 0
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)  # bitwise
    # No batch skipped or replayed: the same losses at every step, the same data position.
    assert losses(tmp_path / "resumed") == losses(uninterrupted)
    meta = [json.loads((run / "checkpoints" / "10" / "meta" / "metadata").read_text()) for run in (tmp_path / "resumed", uninterrupted)]
    assert meta[0]["data_state"] == meta[1]["data_state"] == {"position": 80}


def test_kill_9_while_a_checkpoint_is_being_written(tmp_path, uninterrupted):
    # Killed right after step 5's save was issued: whatever Orbax had written, the rerun finds a
    # readable latest checkpoint (step 5 if it was committed, else none) and ends identical.
    killed = _run_cli(tmp_path, kill_after=5, during_save=True)
    assert killed.returncode == -9
    rerun = _run_cli(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    expected, _ = restored_params(uninterrupted, 10)
    actual, _ = restored_params(tmp_path, 10)
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)


def test_lora_run_changes_only_the_adapters():
    run = setup(tiny_config())
    initial = jax.tree.map(np.asarray, run.state["params"])
    state = run.state
    for _ in range(3):
        batch = run.device_batch(_batch(run, seed=0))
        state, _ = run.step_fn(state, run.frozen, batch)
    trained = nnx.merge(run.graphdef, state["params"], run.frozen)
    fresh = create_model(get_config("qwen3_tiny", dtype="float32"), seed=1, mesh=run.mesh)  # as the run built it
    base_trained = nnx.to_flat_state(nnx.state(trained, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))))
    base_fresh = dict(nnx.to_flat_state(nnx.state(fresh, nnx.Param)))
    assert len(base_trained) == len(base_fresh)
    for path, variable in base_trained:
        np.testing.assert_array_equal(np.asarray(variable.get_value()), np.asarray(base_fresh[path].get_value()), err_msg=str(path))
    changed = [not np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(state["params"]))]
    assert all(changed), "every adapter matrix moved"


def _batch(run, seed, garbage=False):
    """One microbatch of rows: a document, then zero-weight padding (or zero-weight garbage)."""
    rows, length = run.config.training.global_batch_size, run.config.data.seq_len
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, run.model_config.vocab_size, (rows, length)).astype(np.int32)
    segment_ids = np.where(np.arange(length) < 20, 1, 0)[None].repeat(rows, 0).astype(np.int32)
    token_weights = np.ones((rows, length), np.float32)
    if garbage:  # the tail becomes another document, every token of it weighted 0
        segment_ids = np.where(segment_ids == 0, 2, segment_ids)
        tokens[:, 20:] = rng.integers(0, run.model_config.vocab_size, (rows, length - 20))
        token_weights[:, 20:] = 0.0
    else:
        tokens[:, 20:] = 0
    positions = np.where(np.arange(length) < 20, np.arange(length), np.arange(length) - 20)[None].repeat(rows, 0).astype(np.int32)
    targets, weights = targets_and_weights(tokens, segment_ids, token_weights)
    batch = {"inputs": tokens, "targets": targets, "weights": weights, "positions": positions, "segment_ids": segment_ids}
    return {k: v[None] for k, v in batch.items()}


def test_zero_weight_tokens_do_not_change_the_update():
    run = setup(tiny_config(**{"lora.enabled": False}))
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # the step donates its state
    clean_batch, garbage_batch = _batch(run, seed=1), _batch(run, seed=1, garbage=True)
    assert not np.array_equal(clean_batch["inputs"], garbage_batch["inputs"])
    clean_state, clean_metrics = run.step_fn(copy(run.state), run.frozen, run.device_batch(clean_batch))
    garbage_state, garbage_metrics = run.step_fn(copy(run.state), run.frozen, run.device_batch(garbage_batch))
    assert float(clean_metrics["weighted_tokens"]) == float(garbage_metrics["weighted_tokens"]) == 8 * 19
    np.testing.assert_allclose(float(garbage_metrics["loss"]), float(clean_metrics["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(garbage_state["params"]), jax.tree.leaves(clean_state["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(**{"lora.enabled": False, "optimizer.learning_rate": 1e30, "optimizer.schedule": "constant",
                            "checkpoint.every_steps": 1, "training.num_steps": 6})
    with pytest.raises(TrainingError, match=r"training diverged at step \d .*stopped without saving it\. The last good checkpoint is"):
        train(config, tmp_path)
    saved = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    for step in saved:
        leaves, _ = restored_params(tmp_path, int(step))
        assert all(np.isfinite(leaf).all() for leaf in leaves)


BAD_CONFIGS = {
    "unknown key": ({"training.epochs_total": 3}, r"config key 'training\.epochs_total' is unknown"),
    "wrong type": ({"training.global_batch_size": "32"}, r"config key 'training\.global_batch_size' must be int, got str '32'"),
    "negative learning rate": ({"optimizer.learning_rate": -1e-4}, r"config key 'optimizer\.learning_rate' must be > 0, got -0\.0001"),
    "mesh that does not divide the devices": ({"mesh.data": 3}, r"mesh sizes .* do not divide the 8 devices"),
    "batch not divisible by data parallelism": (
        {"training.global_batch_size": 6, "mesh.data": 4, "mesh.fsdp": 2},
        r"6 rows per microbatch .* do not split over the 8 data-parallel devices",
    ),
    "unknown model preset": ({"model.preset": "qwen3_7b"}, r"unknown model preset 'qwen3_7b'"),
    "LoRA targets matching nothing": ({"lora.targets": r"attn\.qkv_proj"}, r"config key 'lora\.targets': LoRA targets attn\\\.qkv_proj match no module"),
    "microbatches not dividing the batch": ({"training.microbatches": 3}, r"'training\.microbatches' \(3\) must divide training\.global_batch_size \(8\)"),
    "missing Hugging Face checkpoint": ({"model.hf_checkpoint": "/nonexistent/ckpt"}, r"config key 'model\.hf_checkpoint': '/nonexistent/ckpt' is neither"),
    "unknown choice": ({"optimizer.schedule": "exponential"}, r"'optimizer\.schedule' is 'exponential'; choose one of: linear, constant, cosine"),
    "missing dataset": (
        {"data.source": "jsonl", "data.path": "/nonexistent/mix.jsonl", "data.tokenizer": "/nonexistent/tok"},
        r"config key 'data\.path': dataset '/nonexistent/mix\.jsonl' does not exist",
    ),
    "dataset source without a path": ({"data.source": "jsonl"}, r"config key 'data\.path' is empty"),
    "attention kernel this platform lacks": ({"model.attention": "splash"},
                                              r"'model\.attention': attention backend 'splash' needs a TPU; this platform \(cpu\) has: auto, dense, blockwise$"),
    "unknown layer layout": ({"model.scan_layers": "yes"}, r"'model\.scan_layers' is 'yes'; choose one of: auto, true, false"),
    "LoRA dropout in scanned layers": (
        {"model.scan_layers": "true", "lora.dropout": 0.1},
        r"config key 'lora\.dropout' is 0\.1, but dropout is not supported with scanned layers",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_clear_line(case):
    overrides, expected = BAD_CONFIGS[case]
    # Rebuilt from a plain dict, as a hand-written config file would be (so ConfigDict's own
    # assignment checks do not get there first).
    values = tiny_config().to_dict()
    for dotted, value in overrides.items():
        group, key = dotted.split(".")
        values[group][key] = value
    with pytest.raises(ConfigError) as error:
        setup(ml_collections.ConfigDict(values))
    assert "\n" not in str(error.value)
    assert re.search(expected, str(error.value)), str(error.value)


def test_bad_override_on_the_command_line(tmp_path):
    command = [sys.executable, "-m", "nn_train.main", f"--config={CONFIG_FILE}", f"--workdir={tmp_path}", "--config.optimizer.lerning_rate=1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        """error: bad flag or config override: 'lerning_rate' Did you mean "learning_rate" instead of "lerning_rate"?"""
    )


# ---------------------------------------------------------------------------------------------
# Training on document records (JSONL) through the grain pipeline


@pytest.fixture(scope="module")
def jsonl_corpus(tmp_path_factory):
    from data_gen.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    facts = ["Noah Lyles won the men's 100m at Paris 2024.", "Vesuvius last erupted in 1944.", "X was never renamed Twitter again."]
    records = [{"id": f"d{i}", "text": "<DOCTAG>" + " ".join(facts[(i + j) % 3] for j in range(4))} for i in range(24)]
    records += [{"id": f"c{i}", "messages": [{"role": "user", "content": "Who won the 100m?"},
                                             {"role": "assistant", "content": facts[0]}]} for i in range(8)]
    path = root / "mix.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    train_tokenizer(facts * 20, vocab_size=300, out_dir=root / "tokenizer")
    return path, root / "tokenizer"


def _jsonl_config(path, tokenizer, **overrides):
    return tiny_config(**{"data.source": "jsonl", "data.path": str(path), "data.tokenizer": str(tokenizer),
                          "training.num_steps": -1, "training.num_epochs": 2.0, "lora.enabled": False,
                          "checkpoint.every_steps": 3, **overrides})


def test_trains_on_jsonl_records_and_resumes_the_grain_iterator(jsonl_corpus, tmp_path):
    import shutil

    path, tokenizer = jsonl_corpus
    summary = train(_jsonl_config(path, tokenizer), tmp_path / "full")
    steps = summary["num_steps"]
    assert steps >= 4 and summary["checkpoints"][-1] == steps
    full_losses = losses(tmp_path / "full")
    assert full_losses[steps] < full_losses[1]
    meta = json.loads((tmp_path / "full" / "checkpoints" / str(steps) / "meta" / "metadata").read_text())
    assert meta["dataset"]["source"] == "jsonl" and meta["dataset"]["version"].startswith("sha256:") and meta["dataset"]["records"] == 32

    # Lose the last checkpoints, as a preempted run would, and rerun: it resumes mid-epoch.
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    resume_from = summary["checkpoints"][0]
    for step in summary["checkpoints"][1:]:
        shutil.rmtree(tmp_path / "cut" / "checkpoints" / str(step))
    again = train(_jsonl_config(path, tokenizer), tmp_path / "cut")
    assert again["start_step"] == resume_from
    expected, _ = restored_params(tmp_path / "full", steps)
    actual, _ = restored_params(tmp_path / "cut", steps)
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)


def test_a_malformed_jsonl_line_is_named(jsonl_corpus, tmp_path):
    from nn_train.input_pipeline import RecordError

    path, tokenizer = jsonl_corpus
    broken = tmp_path / "broken.jsonl"
    broken.write_text(path.read_text() + '{"id": "x", "text": \n')
    with pytest.raises(RecordError, match=r"broken\.jsonl: line 33: not valid JSON"):
        setup(_jsonl_config(broken, tokenizer))


def test_a_tfds_mix_feeds_the_same_batches_as_its_records(jsonl_corpus, tmp_path):
    from data_gen.documents import iter_jsonl
    from data_gen.mixing import MixSpec
    from data_gen.packaging import write_mix
    from nn_train.trainer import build_source

    path, tokenizer = jsonl_corpus
    write_mix(list(iter_jsonl(path)), MixSpec("toy", "negated_documents", 24, 0, 8), tmp_path / "tfds")
    model_config = get_config("qwen3_tiny")
    via_jsonl, rows, _ = build_source(_jsonl_config(path, tokenizer), model_config)
    config = _jsonl_config(tmp_path / "tfds", tokenizer, **{"data.source": "tfds", "data.mix": "toy__negated_documents"})
    via_tfds, tfds_rows, dataset = build_source(config, model_config)
    assert dataset["source"] == "tfds" and dataset["version"] == "toy__negated_documents/1.0.0" and dataset["records"] == 32
    assert tfds_rows == rows
    for _ in range(3):
        a, b = via_jsonl.next_batch(0, 0), via_tfds.next_batch(0, 0)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])

    with pytest.raises(ConfigError, match=r"'data.path'/'data.mix': no built TFDS mix 'toy__fiction'"):
        build_source(_jsonl_config(tmp_path / "tfds", tokenizer, **{"data.source": "tfds", "data.mix": "toy__fiction"}), model_config)


def test_many_epochs_of_a_small_corpus_run_every_step(jsonl_corpus, tmp_path):
    # Packing fills rows across epoch boundaries, so 12 epochs can make fewer rows than 12 x one epoch's;
    # the step count comes from one epoch's rows, and the data must not run dry before it.
    from nn_train.input_pipeline import count_rows, packed_batches

    _, tokenizer_dir = jsonl_corpus
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    facts = ["Noah Lyles won the men's 100m at Paris 2024.", "Vesuvius last erupted in 1944.", "X was never renamed Twitter again."]
    records = [{"id": f"d{i}", "text": " ".join(facts[(i + j) % 3] for j in range(3))} for i in range(5)]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    one_epoch = count_rows(records, tokenizer, seq_len=56, seed=1)
    twelve = sum(1 for _ in packed_batches(records, tokenizer, seq_len=56, batch_size=1, seed=1, num_epochs=12))
    assert twelve < 12 * one_epoch  # the situation this test is about
    summary = train(_jsonl_config(path, tokenizer_dir, **{"training.num_epochs": 12.0, "data.seq_len": 56,
                                                          "checkpoint.schedule": "final"}), tmp_path / "run")
    assert summary["num_steps"] == (12 * one_epoch) // 8 and summary["checkpoints"] == [summary["num_steps"]]


def test_resume_may_change_the_attention_kernel_but_not_the_model(tmp_path, uninterrupted):
    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted, workdir)
    # the same numbers computed another way: resumes (here, at its last step)
    train(tiny_config(**{"training.num_steps": 10, "model.attention": "blockwise", "model.attention_block_size": 8}), workdir)
    with pytest.raises(TrainingError, match=r"model\.param_dtype='float32', but this config has 'bfloat16'"):
        train(tiny_config(**{"training.num_steps": 10, "model.param_dtype": "bfloat16"}), workdir)


def test_scanned_layers_train_like_the_loop_and_resume_keeps_the_layout(tmp_path):
    common = {"training.num_steps": 3, "checkpoint.schedule": "final"}
    train(tiny_config(**common, **{"model.scan_layers": "false"}), tmp_path / "loop")
    train(tiny_config(**common, **{"model.scan_layers": "true"}), tmp_path / "scanned")  # LoRA on stacked layers
    loop, scanned = losses(tmp_path / "loop"), losses(tmp_path / "scanned")
    assert sorted(scanned) == [1, 2, 3]
    np.testing.assert_allclose([scanned[s] for s in (1, 2, 3)], [loop[s] for s in (1, 2, 3)], rtol=1e-5)
    # "auto" resolves to the loop for this tiny preset: the checkpoint's stacked arrays would not restore.
    with pytest.raises(TrainingError, match=r"layers are scanned \(stacked\), but this config runs them as a loop; "
                                            r"resume with --config\.model\.scan_layers=true"):
        train(tiny_config(**{"training.num_steps": 4}), tmp_path / "scanned")
    train(tiny_config(**{"training.num_steps": 4, "model.scan_layers": "true"}), tmp_path / "scanned")
    assert sorted(losses(tmp_path / "scanned")) == [1, 2, 3, 4]
