"""The AOT fit planner: it compiles the real train step from abstract parameters, its byte counts
follow the shardings, its row fit is consistent with its own compiles, and the CLI says whether a
run fits."""

import re
import subprocess
import sys

from nn_train.models import get_config, param_count
from nn_train.plan import DEVICES, longest_row, model_config_for_plan, plan
from tests.nn_train.hf_oracle import REPO_ROOT
from tests.nn_train.test_trainer import tiny_config


def _full_ft(**overrides):
    return tiny_config(**{"lora.enabled": False, "model.dtype": "float32", **overrides})


def test_one_device_holds_every_parameter_and_adam_moments():
    p = plan(_full_ft(**{"mesh.num_devices": 1, "mesh.fsdp": 1}))
    n = param_count(get_config("qwen3_tiny"))
    assert p.params == p.trainable == n
    assert p.param_bytes == 4 * n  # float32
    assert p.opt_bytes >= 2 * p.param_bytes  # adamw's two moments, plus its counters
    assert p.frozen_bytes < p.param_bytes  # nothing but RNG state is frozen in full fine-tuning
    assert p.argument_bytes >= p.param_bytes + p.opt_bytes
    assert p.temp_bytes > 0 and p.flops > 0


def test_model_flops_agree_with_xla_on_a_step_without_loops():
    """One microbatch, dense attention, the whole-row loss: nothing XLA counts once for many trips.
    XLA also counts the element-wise work, so it may exceed the matmul count a little."""
    p = plan(_full_ft(**{"mesh.num_devices": 1, "mesh.fsdp": 1, "data.seq_len": 256, "model.attention": "dense",
                         "training.loss_chunk_tokens": 0, "training.microbatches": 1}))
    assert 0.8 < p.xla_flops / p.flops < 1.6, (p.xla_flops, p.flops)
    lora = plan(tiny_config(**{"mesh.num_devices": 1, "mesh.fsdp": 1, "data.seq_len": 256}))
    assert lora.flops < p.flops  # no weight gradients for a frozen base


def test_fsdp_splits_parameters_and_optimizer_state_over_devices():
    one = plan(_full_ft(**{"mesh.num_devices": 1, "mesh.fsdp": 1}))
    four = plan(_full_ft(**{"mesh.num_devices": 4, "mesh.fsdp": 4}))
    assert four.mesh == {"data": 1, "fsdp": 4, "expert": 1, "tensor": 1}
    # every large matrix is sharded on its embed axis; only the small norm scales are replicated
    assert four.param_bytes < 0.3 * one.param_bytes
    assert four.opt_bytes < 0.3 * one.opt_bytes
    assert four.flops < 0.4 * one.flops  # each device computes a quarter of the rows


def test_longest_row_is_consistent_with_its_own_compiles():
    config = _full_ft(**{"mesh.num_devices": 1, "mesh.fsdp": 1, "data.seq_len": 512, "model.attention_block_size": 128})
    at_512 = plan(config)
    at_1024 = plan(config, row_tokens=1024)
    assert at_1024.temp_bytes > 1.5 * at_512.temp_bytes
    # the budget of the 512-token compile gives back 512 tokens; that of a 2048-token compile ~2048
    assert longest_row(config, at_512, at_512.total_bytes) == (512, (512, 1024))
    at_2048 = plan(config, row_tokens=2048)  # beyond both fitted points: the line extrapolates
    estimate = longest_row(config, at_512, at_2048.total_bytes)[0]
    assert 0.9 * 2048 <= estimate <= 1.1 * 2048, estimate


def test_a_hub_id_is_planned_from_the_preset_of_its_shape():
    config = tiny_config(**{"model.hf_checkpoint": "Qwen/Qwen3-0.6B"})
    model_config, name = model_config_for_plan(config)
    assert model_config == get_config("qwen3_0p6b", param_dtype=config.model.param_dtype, dtype=config.model.dtype,
                                      remat=config.model.remat)
    assert "qwen3_0p6b" in name and "Qwen/Qwen3-0.6B" in name


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nn_train.plan", "--config=configs/train/cpu_tiny_lora.py", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_cli_says_whether_the_run_fits():
    fits = _cli("--devices=2", "--device=v5e", "--longest_row=false")
    assert fits.returncode == 0, fits.stderr[-2000:]
    assert f"on 2 x {DEVICES['v5e'].name}, mesh {{'data': 1, 'fsdp': 2, 'expert': 1, 'tensor': 1}}" in fits.stdout
    assert "fits: yes" in fits.stdout and "predicted step time at 40% MFU" in fits.stdout
    tight = _cli("--devices=1", "--device=h100", "--usable_fraction=1e-9", "--longest_row=true")
    assert tight.returncode == 1, tight.stderr[-2000:]  # a run that does not fit fails the command
    assert "fits: no" in tight.stdout
    assert re.search(r"does not fit: [\d.,]+ MiB over the usable 0\.\d MiB per device \(largest: temporaries [\d.,]+ MiB, "
                     r"frozen parameters [\d.,]+ MiB; an upper bound: with the layer loop", tight.stdout), tight.stdout
    assert "longest row that fits: ~0 tokens (linear fit of compiles at 2,048 and 4,096 tokens" in tight.stdout
    dense = _cli("--devices=1", "--config.model.attention=dense")
    assert "longest row that fits: not estimated (the dense attention kernel grows as T^2" in dense.stdout


def test_cli_plans_an_expert_mesh_and_names_one_that_does_not_divide_the_experts():
    moe = ("--config.model.preset=qwen3_moe_tiny", "--config.mesh.fsdp=1", "--longest_row=false")
    ep = _cli("--devices=4", *moe, "--config.mesh.expert=4")
    assert ep.returncode == 0, ep.stderr[-2000:]
    assert "mesh {'data': 1, 'fsdp': 1, 'expert': 4, 'tensor': 1}" in ep.stdout and "fits: yes" in ep.stdout
    bad = _cli("--devices=3", *moe, "--config.mesh.expert=3", "--config.training.global_batch_size=6")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: config key 'mesh.expert': num_experts (8) is not divisible by mesh.expert (3): each device " \
        "of the expert axis holds num_experts / mesh.expert experts; choose a mesh.expert that divides 8"


def test_cli_names_a_bad_config_key():
    bad = _cli("--devices=2", "--config.training.global_batch_size=3", "--longest_row=false")
    assert bad.returncode == 1
    assert "error: config key 'training.global_batch_size'" in bad.stderr



def test_cli_explains_that_splash_is_planned_as_blockwise():
    splash = _cli("--devices=1", "--config.model.attention=splash", "--longest_row=false")
    assert splash.returncode == 1
    assert "error: config key 'model.attention' is 'splash', a TPU kernel that does not compile on this CPU host" in splash.stderr
