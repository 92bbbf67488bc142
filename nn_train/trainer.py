"""The sharded training loop: one jitted step over a (data, fsdp, expert, tensor) mesh, checkpointed and resumable.

    summary = train(config, workdir)        # python -m nn_train.main wraps this

The step is `jax.jit` with explicit NamedShardings for the parameters, optimizer state and batch
(the pjit model) and the train state donated. Parameters are sharded by the logical-axis rules
of nn_train.sharding; the batch is split over (data, fsdp, expert). Gradients are accumulated over
microbatches with `lax.scan` and the loss is the weighted sum of token losses divided by the sum
of weights over the whole global batch, so masked tokens contribute nothing and microbatching
does not change the update.

Only trainable parameters live in the train state (the LoRA adapters, or everything for full
fine-tuning); the frozen rest is passed to the step as a separate, undonated argument.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import transformers
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from common.paths import Mirror, PathError, local_copy, local_source, resolve
from nn_train.checkpointing import Checkpointer, abstract_like, checkpoint_steps
from nn_train.config import ConfigError, model_overrides, validate_config
from nn_train.data import SyntheticSource
from nn_train.input_pipeline import RecordsSource, count_rows, read_jsonl
from nn_train.metrics import MetricsWriter, peak_flops, train_flops_per_token
from nn_train.models import create_model, get_config, target_log_probs
from nn_train.models.attention import check_available
from nn_train.models.hf_checkpoint import load_hf_model
from nn_train.models.lora import LoRAConfig, apply_lora
from nn_train.models.moe import load_balancing_loss
from nn_train.models.transformer import Transformer
from nn_train.sharding import BATCH_AXES, check_expert_split, data_parallel_size, make_mesh, state_shardings

# Block on a result at least this often: XLA's CPU collectives deadlock when hundreds of steps
# are enqueued on fake devices, and a bounded queue keeps step times honest everywhere.
MAX_STEPS_IN_FLIGHT = 32
# Fault injection for resume tests: SIGKILL this process right after this step completes — a
# real kill -9 at a known point — once its checkpoint is on disk, or, with the second variable
# set, while that checkpoint may still be being written.
KILL_AFTER_STEP_ENV = "NN_TRAIN_KILL_AFTER_STEP"
KILL_DURING_SAVE_ENV = "NN_TRAIN_KILL_DURING_SAVE"
# Config sections that must match between a workdir's checkpoints and a run resuming from them.
RESUME_MUST_MATCH = ("model", "lora", "data")
# ... except what changes how the same numbers are computed, not which: a run may resume with
# another attention kernel or remat policy (e.g. to fit longer rows), and from a checkpoint written
# before these keys existed.
RESUME_MAY_CHANGE = frozenset({"model.remat", "model.attention", "model.attention_block_size", "model.moe_dispatch"})
# Compared as resolved (ModelConfig.scan_layers), not as written: "auto" may mean either layout, and
# the checkpoint's arrays are stacked or not accordingly.
RESUME_LAYOUT_KEYS = frozenset({"model.scan_layers"})


class TrainingError(RuntimeError):
    """The run cannot go on (diverged, or the workdir belongs to another run); one clear line."""


def lora_config(config: ml_collections.ConfigDict) -> LoRAConfig:
    c = config.lora
    targets = tuple(t.strip() for t in c.targets.split(",") if t.strip())
    return LoRAConfig(rank=c.rank, alpha=c.alpha, dropout=c.dropout, targets=targets, train_unembedding=c.train_unembedding)


def build_mesh(config: ml_collections.ConfigDict) -> Mesh:
    devices = jax.devices()
    if config.mesh.num_devices > len(devices):
        raise ConfigError(f"config key 'mesh.num_devices' is {config.mesh.num_devices}, but only {len(devices)} devices exist")
    if config.mesh.num_devices > 0:
        devices = devices[: config.mesh.num_devices]
    try:
        # A config saved before the expert axis existed has no mesh.expert: it had none (1).
        return make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=devices, expert=config.mesh.get("expert", 1))
    except ValueError as e:
        raise ConfigError(f"config keys 'mesh.data/fsdp/expert/tensor': {e}") from None


def check_mesh_for_model(model_config, mesh: Mesh) -> None:
    """ConfigError (one line) unless the mesh's expert axis divides the model's experts; before any
    weight is built or read. A dense model takes any expert axis (it then only splits the batch)."""
    try:
        check_expert_split(model_config.num_experts, mesh)
    except ValueError as e:
        raise ConfigError(f"config key 'mesh.expert': {e}") from None


def build_model(config: ml_collections.ConfigDict, mesh: Mesh) -> Transformer:
    """The base model (a preset, randomly initialised, or a Hugging Face checkpoint) with LoRA attached, sharded."""
    overrides = model_overrides(config)
    if config.model.hf_checkpoint:
        try:
            model = load_hf_model(local_source(config.model.hf_checkpoint, what="config key 'model.hf_checkpoint'"), mesh=mesh, **overrides)
        except PathError as e:
            raise ConfigError(str(e)) from None
        except FileNotFoundError as e:
            raise ConfigError(f"config key 'model.hf_checkpoint': {e}") from None
        except ValueError as e:
            if "mesh.expert" not in str(e):
                raise
            raise ConfigError(f"config key 'mesh.expert': {e}") from None  # check_expert_split, before reading weights
    else:
        model_config = get_config(config.model.preset, **overrides)
        check_mesh_for_model(model_config, mesh)
        model = create_model(model_config, seed=config.training.seed, mesh=mesh)
    if config.lora.enabled:
        if config.lora.dropout > 0 and model.config.scan_layers:
            raise ConfigError(f"config key 'lora.dropout' is {config.lora.dropout}, but dropout is not supported with scanned layers "
                              "(this model scans them); set --config.lora.dropout=0 or --config.model.scan_layers=false")
        try:
            apply_lora(model, lora_config(config), rngs=nnx.Rngs(params=config.training.seed, dropout=config.training.seed))
        except ValueError as e:
            raise ConfigError(f"config key 'lora.targets': {e}") from None
        # Adapters were created on the default device; place every variable by the rules.
        state = nnx.state(model)
        nnx.update(model, jax.device_put(state, state_shardings(state, mesh)))
    return model


def build_optimizer(config: ml_collections.ConfigDict, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    c = config.optimizer
    decay_steps = max(num_steps - c.warmup_steps, 1)
    decay = {
        "linear": optax.linear_schedule(c.learning_rate, 0.0, decay_steps),
        "constant": optax.constant_schedule(c.learning_rate),
        "cosine": optax.cosine_decay_schedule(c.learning_rate, decay_steps),
    }[c.schedule]
    schedule = decay
    if c.warmup_steps:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, c.learning_rate, c.warmup_steps), decay], [c.warmup_steps])
    adam = optax.adamw(schedule, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay)
    tx = optax.chain(optax.clip_by_global_norm(c.grad_clip_norm), adam) if c.grad_clip_norm > 0 else adam
    return tx, schedule


def build_source(config: ml_collections.ConfigDict, model_config) -> tuple[Any, int, dict]:
    """The data source, its packed rows per epoch, and a description for the run metadata."""
    c = config.data
    if c.source == "synthetic":
        source = SyntheticSource(vocab_size=model_config.vocab_size, seq_len=c.seq_len, num_examples=c.num_examples, seed=config.training.seed)
        return source, c.num_examples, {"source": "synthetic", "version": "synthetic-1", "rows_per_epoch": c.num_examples}
    records, dataset = _records(c)
    tokenizer_source = c.tokenizer or config.model.hf_checkpoint
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(local_source(tokenizer_source, what="config key 'data.tokenizer'"))
    except PathError as e:
        raise ConfigError(str(e)) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"config key 'data.tokenizer': cannot load a tokenizer from '{tokenizer_source}' ({type(e).__name__})") from None
    if len(tokenizer) > model_config.vocab_size:
        raise ConfigError(f"config key 'data.tokenizer': its {len(tokenizer)} tokens do not fit the model's vocabulary of {model_config.vocab_size}")
    rows = count_rows(records, tokenizer, seq_len=c.seq_len, seed=config.training.seed, packing=c.packing)
    # The records repeat without end and the run stops at its step count: packing fills rows across an
    # epoch boundary, so N epochs can make fewer rows than N x one epoch's, and a finite iterator ran dry.
    source = RecordsSource(records, tokenizer, seq_len=c.seq_len, batch_size=config.training.global_batch_size,
                           microbatches=config.training.microbatches, seed=config.training.seed, num_epochs=None,
                           packing=c.packing)
    return source, rows, {**dataset, "records": len(records), "rows_per_epoch": rows, "tokenizer": tokenizer_source}


def _records(c: ml_collections.ConfigDict) -> tuple[Any, dict]:
    """Document records of a jsonl or tfds data config, and how the run metadata names them."""
    try:
        path = resolve(c.path, what="config key 'data.path'")
    except PathError as e:
        raise ConfigError(str(e)) from None
    if c.source == "tfds":
        from data_gen.packaging import load_mix  # TFDS is imported only by runs that read it
        from data_gen.mixing import MixError

        try:
            records = load_mix(path, c.mix)
        except MixError as e:
            raise ConfigError(f"config keys 'data.path'/'data.mix': {e}") from None
        return records, {"source": "tfds", "path": str(path), "mix": c.mix, "version": records.version}
    if not path.is_file():
        raise ConfigError(f"config key 'data.path': dataset '{path}' does not exist; build it with data_gen or point at a JSONL file")
    local = local_copy(path)  # a bucket's file is read once, from a local copy
    digest = hashlib.sha256(local.read_bytes()).hexdigest()[:16]
    return read_jsonl(local), {"source": "jsonl", "path": str(path), "version": f"sha256:{digest}"}


def num_train_steps(config: ml_collections.ConfigDict, rows_per_epoch: int) -> int:
    if config.training.num_steps > 0:
        return config.training.num_steps
    steps = math.floor(config.training.num_epochs * rows_per_epoch / config.training.global_batch_size)
    if steps < 1:
        raise ConfigError(
            f"config key 'training.global_batch_size': {config.training.global_batch_size} rows per step, but "
            f"{config.training.num_epochs} epoch(s) of this data make only {rows_per_epoch * config.training.num_epochs:g} rows"
        )
    return steps


@dataclasses.dataclass
class TrainSetup:
    """Everything a run needs, built from the config; `step_fn(state, frozen, batch)`."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    model_config: Any
    graphdef: Any
    state: dict  # {"step", "params", "opt_state"}: what is trained and checkpointed
    frozen: dict  # the rest of the model, not trained
    num_steps: int
    source: Any  # next_batch(batch_size, microbatches), get_state(), set_state()
    dataset: dict  # how the data was made, for the run metadata
    batch_sharding: NamedSharding
    step_fn: Any
    trace_count: list  # [n]: how many times the step was traced (compiled)

    def device_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Places a host batch [M, rows, L] on the mesh, rows split over (data, fsdp).

        Every process holds the global batch here (the synthetic source is cheap and identical
        everywhere); each device reads only its block.
        """
        return {
            key: jax.make_array_from_callback(value.shape, self.batch_sharding, lambda index, v=value: v[index])
            for key, value in batch.items()
        }


def train_state_shardings(tx: optax.GradientTransformation, params, param_shardings, mesh: Mesh) -> dict:
    """{"step", "params", "opt_state"} shardings: optimizer moments shard like their parameters;
    `params` may be abstract (ShapeDtypeStruct)."""
    replicated = NamedSharding(mesh, P())
    opt_shardings = optax.tree_map_params(
        tx, lambda _, sharding: sharding, jax.eval_shape(tx.init, params), param_shardings,
        transform_non_params=lambda _: replicated,
    )
    return {"step": replicated, "params": param_shardings, "opt_state": opt_shardings}


def batch_sharding_of(mesh: Mesh) -> NamedSharding:
    """A batch [microbatches, rows, length]: rows over (data, fsdp, expert)."""
    return NamedSharding(mesh, P(None, tuple(a for a in BATCH_AXES if a in mesh.shape), None))


def check_batch_splits(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """ConfigError unless each microbatch's rows split evenly over the data-parallel devices."""
    data_parallel = data_parallel_size(mesh)
    rows = config.training.global_batch_size // config.training.microbatches
    if rows % data_parallel:
        raise ConfigError(
            f"config key 'training.global_batch_size': {rows} rows per microbatch "
            f"(global_batch_size {config.training.global_batch_size} / microbatches {config.training.microbatches}) "
            f"do not split over the {data_parallel} data-parallel devices (mesh data × fsdp × expert)"
        )


def setup(config: ml_collections.ConfigDict) -> TrainSetup:
    validate_config(config)
    try:
        check_available(config.model.attention)
    except ValueError as e:
        raise ConfigError(f"config key 'model.attention': {e}") from None
    mesh = build_mesh(config)
    check_batch_splits(config, mesh)
    model = build_model(config, mesh)
    trainable = nnx.LoRAParam if config.lora.enabled else nnx.Param
    graphdef, params_state, frozen_state = nnx.split(model, trainable, ...)
    params, frozen = nnx.to_pure_dict(params_state), nnx.to_pure_dict(frozen_state)
    source, rows_per_epoch, dataset = build_source(config, model.config)
    num_steps = num_train_steps(config, rows_per_epoch)
    tx, schedule = build_optimizer(config, num_steps)

    replicated = NamedSharding(mesh, P())
    param_shardings = jax.tree.map(lambda x: x.sharding, params)
    frozen_shardings = jax.tree.map(lambda x: x.sharding, frozen)
    state_sharding = train_state_shardings(tx, params, param_shardings, mesh)
    opt_state = jax.jit(tx.init, out_shardings=state_sharding["opt_state"])(params)
    state = {"step": jax.device_put(jnp.zeros((), jnp.int32), replicated), "params": params, "opt_state": opt_state}
    batch_sharding = batch_sharding_of(mesh)

    trace_count = [0]
    step_fn = make_train_step(config, graphdef, tx, schedule, state_sharding, frozen_shardings, batch_sharding, trace_count)
    return TrainSetup(config, mesh, model.config, graphdef, state, frozen, num_steps, source, dataset,
                      batch_sharding, step_fn, trace_count)


def train_step_function(config: ml_collections.ConfigDict, graphdef, tx: optax.GradientTransformation, schedule: optax.Schedule,
                        trace_count: list | None = None):
    """The pure `train_step(state, frozen, batch) -> (state, metrics)` that make_train_step jits and
    make_runs_train_step vmaps. `trace_count[0]` counts traces."""
    trace_count = [0] if trace_count is None else trace_count
    dropout_seed = config.training.seed
    uses_dropout = config.lora.enabled and config.lora.dropout > 0

    routed = [False]  # set while tracing: whether the model has routers (an MoE), so the step logs their loss

    def loss_sum(params, frozen, batch, step):
        model = nnx.merge(graphdef, params, frozen)
        if uses_dropout:  # a fresh, reproducible dropout key per step
            nnx.reseed(model, dropout=jax.random.fold_in(jax.random.key(dropout_seed), step))
        hidden, router_stats = model.hidden_states_and_router_stats(batch["inputs"], positions=batch["positions"],
                                                                    segment_ids=batch["segment_ids"])
        log_probs = target_log_probs(model, hidden, batch["targets"], config.training.loss_chunk_tokens)
        weights = batch["weights"]
        cross_entropy, weight = -(log_probs * weights).sum(), weights.sum()
        routed[0] = router_stats is not None
        if router_stats is None:  # a dense model
            return cross_entropy, (cross_entropy, weight, 0.0)
        # Weighted by the microbatch's tokens like the cross-entropy, so the step's gradient is that
        # of mean cross-entropy + weight * the microbatches' token-weighted mean aux loss.
        router_aux = load_balancing_loss(router_stats) * weight
        return cross_entropy + config.training.router_aux_loss_weight * router_aux, (cross_entropy, weight, router_aux)

    def train_step(state, frozen, batch):
        trace_count[0] += 1
        params = state["params"]

        def accumulate(carry, microbatch):
            grads_sum, loss_total, weight_total, aux_total = carry
            (_, (loss, weight, aux)), grads = jax.value_and_grad(loss_sum, has_aux=True)(params, frozen, microbatch, state["step"])
            grads_sum = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), grads_sum, grads)
            return (grads_sum, loss_total + loss, weight_total + weight, aux_total + aux), None

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        start = (zeros, 0.0, 0.0, 0.0)
        if batch["inputs"].shape[0] == 1:  # no accumulation: skip the loop (XLA CPU runs while-loops slowly)
            (grads, loss, weight, aux), _ = accumulate(start, jax.tree.map(lambda x: x[0], batch))
        else:
            (grads, loss, weight, aux), _ = jax.lax.scan(accumulate, start, batch)
        denominator = jnp.maximum(weight, 1.0)  # a batch with no weighted token changes nothing
        grads = jax.tree.map(lambda g, p: (g / denominator).astype(p.dtype), grads, params)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        new_state = {"step": state["step"] + 1, "params": new_params, "opt_state": opt_state}
        metrics = {
            "loss": loss / denominator,
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(new_params),  # inf/nan here means the update broke the model
            "weighted_tokens": weight,
            "learning_rate": schedule(state["step"]),
        }
        if routed[0]:
            metrics["router_aux_loss"] = aux / denominator
        return new_state, metrics

    return train_step


def make_train_step(config: ml_collections.ConfigDict, graphdef, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    state_sharding, frozen_shardings, batch_sharding: NamedSharding, trace_count: list | None = None):
    """The jitted `step_fn(state, frozen, batch) -> (state, metrics)`; shardings fix its layout, so it
    can be lowered from abstract arrays (nn_train.plan) as well as run. `trace_count[0]` counts traces."""
    replicated = NamedSharding(batch_sharding.mesh, P())
    return jax.jit(
        train_step_function(config, graphdef, tx, schedule, trace_count),
        in_shardings=(state_sharding, frozen_shardings, batch_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
    )


def make_runs_train_step(config: ml_collections.ConfigDict, graphdef, tx: optax.GradientTransformation, schedule: optax.Schedule,
                         state_sharding, frozen_shardings, batch_sharding: NamedSharding, trace_count: list | None = None):
    """K runs of one model as one program: `step_fn(states, frozen, batches) -> (states, metrics)`.

    States (`stack_runs` of K train states) and batches carry a leading runs axis [K, ...]; the
    frozen base is shared (a LoRA sweep over conditions and seeds of one base), and every metric
    comes back per run [K]. Each run computes what make_train_step computes for it alone; runs
    differ in their data and initial state (seeds), not in config. The runs axis is not sharded:
    every device holds its shard of every run.
    """
    with_runs = lambda sharding: NamedSharding(sharding.mesh, P(None, *sharding.spec))  # noqa: E731
    states_sharding = jax.tree.map(with_runs, state_sharding)
    per_run = NamedSharding(batch_sharding.mesh, P())
    return jax.jit(
        jax.vmap(train_step_function(config, graphdef, tx, schedule, trace_count), in_axes=(0, None, 0)),
        in_shardings=(states_sharding, frozen_shardings, with_runs(batch_sharding)),
        out_shardings=(states_sharding, per_run),
        donate_argnums=(0,),
    )


def stack_runs(trees: Sequence[Any]) -> Any:
    """K pytrees of one structure (train states, host batches) → one with a leading runs axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves) if isinstance(leaves[0], jax.Array) else np.stack(leaves), *trees)


def run_of(stacked: Any, index: int) -> Any:
    """Run `index` of a stacked pytree (its state, its metrics), e.g. to checkpoint it alone."""
    return jax.tree.map(lambda leaf: leaf[index], stacked)


def _run_metadata(config: ml_collections.ConfigDict, run: TrainSetup) -> dict:
    return {
        "config": config.to_dict(),
        "model": {"source": config.model.hf_checkpoint or config.model.preset, **run.model_config.to_dict()},
        "lora": dataclasses.asdict(lora_config(config)) if config.lora.enabled else None,
        "dataset": run.dataset,
    }


def _check_same_run(workdir: Path, saved: dict, config: ml_collections.ConfigDict, model_config) -> None:
    saved_scanned = saved["model"].get("scan_layers", False)  # written before layers could be scanned: a loop
    if saved_scanned != model_config.scan_layers:
        layout = lambda scanned: "scanned (stacked)" if scanned else "a loop"
        raise TrainingError(
            f"workdir '{workdir}' holds checkpoints whose layers are {layout(saved_scanned)}, but this config runs them as "
            f"{layout(model_config.scan_layers)}; resume with --config.model.scan_layers={str(saved_scanned).lower()} or use a new workdir"
        )
    current = config.to_dict()
    for section in RESUME_MUST_MATCH:
        for key, value in current[section].items():
            if f"{section}.{key}" in RESUME_MAY_CHANGE | RESUME_LAYOUT_KEYS:
                continue
            old = saved["config"][section].get(key)
            if old != value and not (isinstance(old, list) and tuple(old) == value):
                raise TrainingError(
                    f"workdir '{workdir}' holds checkpoints of a run with {section}.{key}={old!r}, but this config has {value!r}; "
                    "resume with the same config or use a new workdir"
                )


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Trains to `num_steps`, resuming from the latest checkpoint in `workdir`; returns a summary."""
    try:
        workdir = resolve(workdir, what="--workdir")  # a local path, or a bucket URL (gs://…)
    except PathError as e:
        raise ConfigError(str(e)) from None
    run = setup(config)
    is_main = jax.process_index() == 0
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=config.checkpoint.max_to_keep, async_save=config.checkpoint.async_save)
    save_steps = set(checkpoint_steps(config, run.num_steps))
    source = run.source
    meta = _run_metadata(config, run)

    state, start = run.state, 0
    latest = checkpointer.latest_step()
    if latest is not None:
        _check_same_run(workdir, checkpointer.restore_meta(latest), config, run.model_config)
        state, saved_meta = checkpointer.restore(latest, abstract_like(run.state))
        source.set_state(saved_meta["data_state"])
        start = int(state["step"])
        logging.info("resumed from step %d of %d (%s)", start, run.num_steps, workdir)
        if is_main:
            print(f"resumed from step {start} of {run.num_steps}", flush=True)

    devices = run.mesh.size
    tokens_per_step = config.training.global_batch_size * config.data.seq_len
    flops_per_step = train_flops_per_token(run.model_config, config.data.seq_len) * tokens_per_step
    peak = peak_flops(jax.devices()[0].device_kind, run.model_config.dtype)
    # Orbax writes checkpoints to the workdir itself, bucket or not; the metrics go through a local
    # mirror (process 0's), uploaded at every checkpoint and at the end.
    outputs = Mirror(workdir, skip=("checkpoints",)) if is_main else None
    writer = MetricsWriter(outputs.local if outputs else workdir, enabled=is_main)
    progress = None
    if is_main and config.logging.progress_bar and sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=run.num_steps, initial=start, desc="train", unit="step")
    # Without a terminal (CI logs, `| tee`), a plain line every tenth of the run instead of a bar.
    plain_every = max(1, run.num_steps // 10) if is_main and config.logging.progress_bar and progress is None else 0

    last_good = latest
    last_metrics: dict = {}
    window_start, window_steps = time.perf_counter(), 0
    try:
        with jax.set_mesh(run.mesh):
            for step in range(start, run.num_steps):
                batch = run.device_batch(source.next_batch(config.training.global_batch_size, config.training.microbatches))
                state, metrics = run.step_fn(state, run.frozen, batch)
                done = step + 1
                window_steps += 1
                plain_line = plain_every and (done % plain_every == 0 or done == run.num_steps)
                must_check = (done in save_steps or done % config.logging.every_steps == 0 or window_steps >= MAX_STEPS_IN_FLIGHT
                              or plain_line)
                if not must_check:
                    continue
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}  # blocks on the step
                step_time = (time.perf_counter() - window_start) / window_steps
                window_start, window_steps = time.perf_counter(), 0
                if not all(math.isfinite(values[k]) for k in ("loss", "grad_norm", "param_norm")):
                    raise TrainingError(
                        f"training diverged at step {done} (loss {values['loss']}, grad norm {values['grad_norm']}, "
                        f"parameter norm {values['param_norm']}); stopped without saving it. "
                        f"The last good checkpoint is {'step ' + str(last_good) if last_good else 'none'} in {workdir / 'checkpoints'}; "
                        "lower optimizer.learning_rate or set optimizer.grad_clip_norm, then rerun"
                    )
                tokens_per_second = tokens_per_step / step_time
                values.update(
                    tokens_seen=done * tokens_per_step,
                    step_time_s=step_time,
                    tokens_per_s_per_device=tokens_per_second / devices,
                    tflops_per_s_per_device=flops_per_step / step_time / devices / 1e12,
                )
                values["mfu"] = flops_per_step / step_time / devices / peak if peak else "n/a"
                writer.write(done, values)
                last_metrics = values
                if plain_line:
                    print(f"train step {done}/{run.num_steps}: loss {values['loss']:.4f}, {tokens_per_second:,.0f} tokens/s", flush=True)
                if progress is not None:
                    progress.update(done - progress.n)
                    progress.set_postfix(loss=f"{values['loss']:.4f}")
                if done in save_steps:
                    checkpointer.save(done, state, {**meta, "data_state": source.get_state()})
                    last_good = done
                    if outputs is not None:
                        writer.flush()
                        outputs.push()
                if os.environ.get(KILL_AFTER_STEP_ENV) == str(done):
                    if not os.environ.get(KILL_DURING_SAVE_ENV):
                        checkpointer.wait()
                    os.kill(os.getpid(), signal.SIGKILL)
    finally:
        checkpointer.wait()
        saved_steps = checkpointer.all_steps()
        checkpointer.close()
        writer.close()
        if outputs is not None:
            outputs.close()
        if progress is not None:
            progress.close()
    return {
        "num_steps": run.num_steps,
        "start_step": start,
        "final_metrics": last_metrics,
        "checkpoints": saved_steps,
        "compilations": run.trace_count[0],
    }
