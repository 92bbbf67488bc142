"""Fine-tune a model: `python -m nn_train.main --config=configs/train/<preset>.py --workdir=W`.

Overrides: `--config.optimizer.learning_rate=1e-4 --config.mesh.tensor=4`. Rerunning the same
command on the same workdir resumes from its latest checkpoint. On a multi-host TPU slice or GPU
cluster run the same command on every host; `jax.distributed.initialize()` is called when the
environment says there are several processes (or with --distributed). Where nothing in the
environment says so (bare GPU nodes, several processes on one machine), name the coordinator and
each process's place:

    python -m nn_train.main ... --coordinator_address=host0:1234 --num_processes=2 --process_id=0   # on host 0
    python -m nn_train.main ... --coordinator_address=host0:1234 --num_processes=2 --process_id=1   # on host 1

Every process runs the same program over the global mesh: each reads the same deterministic batch
stream and places only the rows of its own devices, Orbax saves each process's shards, and the
run's files (metrics, checkpoint metadata) are written by process 0.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from data_gen.strict_config import parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/train/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics.jsonl, tensorboard/.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (automatic on multi-host TPU and SLURM).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for a multi-process run the environment does not describe.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1 (with --coordinator_address).")
flags.mark_flags_as_required(["config", "workdir"])


def _explicit_processes() -> dict | None:
    """jax.distributed.initialize arguments from the flags, or None when none is given; a partial set
    is an error naming what is missing."""
    given = {"coordinator_address": _COORDINATOR.value, "num_processes": _NUM_PROCESSES.value, "process_id": _PROCESS_ID.value}
    if all(value is None for value in given.values()):
        return None
    missing = [f"--{name}" for name, value in given.items() if value is None]
    if missing:
        raise app.UsageError(f"a multi-process run named by flags needs --coordinator_address, --num_processes and --process_id; missing {', '.join(missing)}")
    if not 0 <= given["process_id"] < given["num_processes"]:
        raise app.UsageError(f"--process_id={given['process_id']} must be in 0 .. {given['num_processes'] - 1} (--num_processes={given['num_processes']})")
    return given


def _is_multiprocess() -> bool:
    """Whether the environment says several processes run this job (explicit coordinator, SLURM, Cloud TPU)."""
    env = os.environ
    return (
        _DISTRIBUTED.value
        or bool(env.get("JAX_COORDINATOR_ADDRESS") or env.get("MEGASCALE_COORDINATOR_ADDRESS"))
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
    )


def main(argv):
    del argv
    import jax

    if not any(arg.startswith(("--verbosity", "-v")) for arg in sys.argv):
        logging.set_verbosity(logging.WARNING)  # library INFO chatter (Orbax, XLA) off by default

    explicit = _explicit_processes()
    if explicit is not None:
        jax.distributed.initialize(**explicit)
    elif _is_multiprocess():
        jax.distributed.initialize()
    from nn_train.config import ConfigError
    from nn_train.input_pipeline import RecordError
    from nn_train.trainer import TrainingError, train

    try:
        summary = train(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, TrainingError, RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if jax.process_index() == 0:
        final = summary["final_metrics"]
        loss = f", final loss {final['loss']:.4f}" if final else ""
        print(f"trained steps {summary['start_step']}..{summary['num_steps']}{loss}; checkpoints at {summary['checkpoints']}")
    logging.flush()
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
