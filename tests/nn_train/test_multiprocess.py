"""The train loop as 2 processes x 4 CPU devices (jax.distributed on loopback, gloo collectives):
the same mesh of 8 devices as one process, every process saving its shards with Orbax, a kill -9
of both processes resumed by rerunning the command, and final parameters identical to the
single-process 8-device run (to float32 rounding)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from nn_train.trainer import KILL_AFTER_STEP_ENV, KILL_DURING_SAVE_ENV
from tests.nn_train.hf_oracle import REPO_ROOT
from tests.nn_train.test_trainer import CONFIG_FILE, losses

# Full fine-tuning on a (data 2, fsdp 2, tensor 2) mesh: every parameter is split across both
# processes' devices, so each process holds and saves only part of every array.
OVERRIDES = ["--config.lora.enabled=False", "--config.data.seq_len=32", "--config.training.num_steps=6",
             "--config.checkpoint.every_steps=3", "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]


def _env(devices: int, kill_after: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_AFTER_STEP_ENV, KILL_DURING_SAVE_ENV)}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    if kill_after is not None:
        env[KILL_AFTER_STEP_ENV] = str(kill_after)
    return env


def _command(workdir, *extra) -> list[str]:
    return [sys.executable, "-m", "nn_train.main", f"--config={CONFIG_FILE}", f"--workdir={workdir}", *OVERRIDES, *extra]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(workdir, kill_after: int | None = None) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = [
        subprocess.Popen(_command(workdir, f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"),
                         cwd=REPO_ROOT, env=_env(4, kill_after), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def _params(workdir, step) -> list[np.ndarray]:
    """A checkpoint's trained parameters on this (single-process) host's first device: a target
    sharding is needed since the saving run's devices are not this process's."""
    path = workdir / "checkpoints" / str(step) / "state"
    checkpointer = ocp.StandardCheckpointer()
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one_device),
                          checkpointer.metadata(path).item_metadata)
    return [np.asarray(x) for x in jax.tree.leaves(checkpointer.restore(path, target)["params"])]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single")
    result = subprocess.run(_command(workdir), cwd=REPO_ROOT, env=_env(8), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return workdir


def test_two_processes_killed_and_resumed_end_where_one_process_does(tmp_path, single_process):
    workdir = tmp_path / "run"
    killed = _two_processes(workdir, kill_after=3)
    assert [r.returncode for r in killed] == [-9, -9], [r.stderr[-2000:] for r in killed]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]

    resumed = _two_processes(workdir)
    assert [r.returncode for r in resumed] == [0, 0], [r.stderr[-2000:] for r in resumed]
    assert "resumed from step 3 of 6" in resumed[0].stdout
    assert "trained steps 3..6" in resumed[0].stdout and "trained steps" not in resumed[1].stdout  # process 0 reports

    expected, actual = _params(single_process, 6), _params(workdir, 6)
    assert len(actual) == len(expected) > 0
    # Equal to float32 reduction order, not bitwise: gloo sums across the processes in another order
    # than one process's collectives (measured: max |difference| 3.9e-8 after 6 steps).
    for a, b in zip(actual, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    one, two = losses(single_process), losses(workdir)
    assert sorted(two) == sorted(one) == list(range(1, 7))
    np.testing.assert_allclose([two[s] for s in one], list(one.values()), rtol=1e-6)


def test_a_partial_process_spec_is_one_line(tmp_path):
    result = subprocess.run(_command(tmp_path, "--coordinator_address=localhost:1", "--process_id=0"), cwd=REPO_ROOT,
                            env=_env(4), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "needs --coordinator_address, --num_processes and --process_id; missing --num_processes" in result.stderr
