"""Fine-tune a model: `python -m nn_train.main --config=configs/train/<preset>.py --workdir=W`.

Overrides: `--config.optimizer.learning_rate=1e-4 --config.mesh.tensor=4`. Rerunning the same
command on the same workdir resumes from its latest checkpoint. On a multi-host TPU slice or GPU
cluster run the same command on every host; `jax.distributed.initialize()` is called when the
environment says there are several processes (or with --distributed).
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
flags.mark_flags_as_required(["config", "workdir"])

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

    if _is_multiprocess():
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
