"""K training runs of one small model as one program (trainer.make_runs_train_step) against the
same K runs stepped one after another, in the same process.

    python -m nn_train.runs_benchmark --preset=qwen3_testbed_narrow --runs=4 --seq_len=256 --batch=8 [--lora]

Each run has its own seed (initial adapters or weights) and data; the LoRA base is shared. The
ratio is (K sequential steps) / (one vmapped step of K runs): above 1, one program is faster. On an
accelerator a small model leaves most of the chip idle, which one program of K runs fills; on a
CPU there is little idle compute to fill.
"""

from __future__ import annotations

import jax
from absl import app, flags

from nn_train.metrics import median_step_seconds

_PRESET = flags.DEFINE_string("preset", "qwen3_testbed_narrow", "Model preset.")
_RUNS = flags.DEFINE_integer("runs", 4, "Runs trained together.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 256, "Tokens per row.")
_BATCH = flags.DEFINE_integer("batch", 8, "Rows per step, per run.")
_LORA = flags.DEFINE_bool("lora", True, "LoRA runs over one shared base (else full fine-tunes).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first.")


def main(argv):
    del argv
    from nn_train.config import default_config
    from nn_train.trainer import build_optimizer, make_runs_train_step, setup, stack_runs

    def config(seed: int):
        c = default_config()
        c.model.preset, c.model.dtype, c.lora.enabled = _PRESET.value, _DTYPE.value, _LORA.value
        c.data.seq_len, c.training.global_batch_size, c.training.num_steps, c.training.seed = _SEQ_LEN.value, _BATCH.value, 1000, seed
        c.mesh.num_devices = 1
        return c

    runs = [setup(config(seed)) for seed in range(1, _RUNS.value + 1)]
    base = runs[0]
    host_batches = [run.source.next_batch(_BATCH.value, 1) for run in runs]
    device_batches = [run.device_batch(batch) for run, batch in zip(runs, host_batches)]
    shardings = lambda tree: jax.tree.map(lambda x: x.sharding, tree)  # noqa: E731
    runs_step = make_runs_train_step(base.config, base.graphdef, *build_optimizer(base.config, base.num_steps),
                                     shardings(base.state), shardings(base.frozen), base.batch_sharding)
    stacked = [stack_runs([run.state for run in runs])]
    stacked_batch = stack_runs(host_batches)
    states = [run.state for run in runs]

    def sequential():
        for k, run in enumerate(runs):
            states[k], metrics = run.step_fn(states[k], base.frozen, device_batches[k])
        jax.block_until_ready(metrics)

    def together():
        stacked[0], metrics = runs_step(stacked[0], base.frozen, stacked_batch)
        jax.block_until_ready(metrics)

    with jax.set_mesh(base.mesh):
        one_by_one = median_step_seconds(sequential, _WARMUP.value, _STEPS.value)
        as_one = median_step_seconds(together, _WARMUP.value, _STEPS.value)
    device = jax.devices()[0]
    print(f"{_RUNS.value} {'LoRA' if _LORA.value else 'full fine-tune'} runs of {_PRESET.value}, {_BATCH.value} x {_SEQ_LEN.value} "
          f"tokens each, {_DTYPE.value}, one {device.device_kind} ({device.platform})")
    print(f"  baseline: {_RUNS.value} runs one after another   {one_by_one * 1e3:9.1f} ms per step of every run")
    print(f"  one program (vmap over runs)        {as_one * 1e3:9.1f} ms")
    print(f"  ratio sequential / one program      {one_by_one / as_one:9.2f}x")


if __name__ == "__main__":
    app.run(main)
