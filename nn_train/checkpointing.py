"""Orbax checkpoints of a training run, on the paper's log-spaced schedule, with exact resume.

Each checkpoint `<workdir>/checkpoints/<step>/` holds
  state     the train state: step, trainable parameters (only the LoRA adapters in a LoRA run —
            the frozen base is rebuilt from the config), optimizer state; sharded arrays
  meta      JSON: the data iterator's state, the full config, model and LoRA settings, dataset

Orbax writes each checkpoint to a temporary directory and renames it only once complete, so a
run killed at any moment (kill -9 included) leaves the latest *finished* checkpoint readable, and
rerunning the same command resumes from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp


def checkpoint_steps(config: ml_collections.ConfigDict, num_steps: int) -> list[int]:
    """Steps after which to save; always includes the final step."""
    c = config.checkpoint
    if c.schedule == "log":
        first = min(c.first_log_step, num_steps)
        steps = set(np.unique(np.round(np.geomspace(first, num_steps, c.num_log)).astype(int)).tolist())
    elif c.schedule == "every":
        steps = set(range(c.every_steps, num_steps + 1, c.every_steps))
    else:
        steps = set()
    return sorted(steps | {num_steps})


class Checkpointer:
    def __init__(self, directory: Path, *, max_to_keep: int = -1, async_save: bool = True):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if max_to_keep < 0 else max_to_keep,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def restore_meta(self, step: int) -> dict:
        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """The state at `step`, placed with the shardings carried by `abstract_state`'s leaves."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
        )
        return restored["state"], restored["meta"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs carrying each array's sharding: the restore target for `tree`'s layout."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
