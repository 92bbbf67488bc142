"""Will a run fit its accelerators? Compile the real train step for the target mesh here, allocate nothing.

    python -m nn_train.plan --config=configs/train/qwen3_8b_lora.py --devices=1 --device=h100 [--config.* overrides]

The step is the one `nn_train.main` runs (`trainer.make_train_step`, the same shardings), lowered
from abstract parameters (`nnx.eval_shape`: shapes only) and compiled by XLA for `--devices` fake
CPU devices on this host, one per device of the target mesh. From the compiled program it prints,
per device: parameter, optimizer-state and frozen bytes (each array's shard), XLA's
`memory_analysis()` (arguments, outputs, temporaries), the model FLOPs of one step, whether the total fits
the device's memory, the longest row that would fit (a linear fit over two row lengths: memory is
linear in the row with the blockwise attention kernel), and the step time at a stated MFU. A run
that does not fit says by how much and what is largest, and the command exits 1.

What it measures is XLA:CPU's compilation of the same program: an accelerator's compiler fuses and
lays out buffers differently, so read the bytes as an estimate of the accelerator's (the
parameter and optimizer bytes are exact), and keep headroom (--usable_fraction).

A `model.hf_checkpoint` that is a hub id (e.g. Qwen/Qwen3-8B) is planned from the preset of the
same shape (qwen3_8b) when the hub cannot be reached; a local checkpoint directory's config.json is
read (its weights never are).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    memory_bytes: float  # HBM per chip
    peak_flops: float  # dense bf16 FLOP/s per chip, the vendor's figure


# Vendor figures per chip (dense bf16, no sparsity).
DEVICES = {
    "h100": Device("NVIDIA H100 SXM (80 GB)", 80e9, 989e12),
    "h200": Device("NVIDIA H200 SXM (141 GB)", 141e9, 989e12),
    "v5e": Device("TPU v5e (16 GB)", 16e9, 197e12),
    "v5p": Device("TPU v5p (95 GB)", 95e9, 459e12),
    "v6e": Device("TPU v6e / Trillium (32 GB)", 32e9, 918e12),
}


def _devices_from_argv(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if arg.startswith("--devices="):
            return int(arg.split("=", 1)[1])
        if arg == "--devices" and i + 1 < len(argv):
            return int(argv[i + 1])
    return 1


def force_host_devices(count: int) -> None:
    """`count` fake CPU devices; must run before jax is first imported."""
    if "jax" in sys.modules:
        raise RuntimeError("force_host_devices must run before jax is imported")
    flags_env = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags_env} --xla_force_host_platform_device_count={count}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"


@dataclasses.dataclass
class Plan:
    devices: int
    mesh: dict[str, int]
    model: str
    params: int  # parameter count of the whole model
    trainable: int
    row_tokens: int
    rows: int  # per optimizer step, over all devices
    param_bytes: int  # per device, trainable parameters
    frozen_bytes: int
    opt_bytes: int
    argument_bytes: int  # XLA memory_analysis, per device
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    flops: float  # one step, per device: model FLOPs (model_flops_per_token)
    xla_flops: float  # XLA's cost analysis of the compiled step, per device: each loop body counted once
    compile_seconds: float
    max_positions: int
    scanned: bool  # scanned layers: XLA:CPU keeps remat's savings, so temporaries are an estimate, not a bound

    @property
    def total_bytes(self) -> int:
        """Live at the peak, per device: inputs + outputs not aliased to a donated input + temporaries."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def model_flops_per_token(model_config, row_tokens: int, frozen_base: bool) -> float:
    """Training FLOPs per token by the PaLM convention (Chowdhery et al. 2022, appendix B): 6 per
    matmul parameter (2 forward, 4 backward) plus 12 * layers * heads * head_dim * T for attention;
    a frozen base (LoRA) skips the weight gradients, so 4 per parameter. Rematerialisation's
    recompute is not counted (it is not model work). The input embedding is a lookup, no matmul."""
    from nn_train.metrics import matmul_params

    c = model_config
    attention = 12 * c.num_layers * c.num_heads * c.head_dim * row_tokens
    return (4 if frozen_base else 6) * matmul_params(c) + attention  # an MoE token counts its k experts only


def _shard_bytes(tree, shardings) -> int:
    import jax

    total = 0
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        shape = sharding.shard_shape(leaf.shape) if hasattr(sharding, "shard_shape") else leaf.shape
        total += math.prod(shape) * getattr(leaf.dtype, "itemsize", 8)  # PRNG key dtypes have no numpy dtype
    return total


def model_config_for_plan(config):
    """The run's ModelConfig without reading weights: a local checkpoint's config.json, a reachable
    hub id's, or the preset of the same name (Qwen/Qwen3-8B -> qwen3_8b)."""
    from nn_train.config import ConfigError, model_overrides
    from nn_train.models import PRESETS, config_from_hf, get_config
    from nn_train.models.hf_checkpoint import resolve_checkpoint_dir

    m = config.model
    overrides = model_overrides(config)
    if not m.hf_checkpoint:
        return get_config(m.preset, **overrides), m.preset
    source = m.hf_checkpoint
    preset = re.sub(r"[.]", "p", source.split("/")[-1].lower()).replace("-", "_")
    local = os.path.isdir(source)
    if not local and preset in PRESETS:
        return get_config(preset, **overrides), f"{preset} (the shapes of {source})"
    try:
        return config_from_hf(resolve_checkpoint_dir(source), **overrides), source
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"config key 'model.hf_checkpoint': {e}; or plan a preset with "
                          "--config.model.hf_checkpoint= --config.model.preset=<name>") from None


def plan(config, row_tokens: int | None = None, model_config=None) -> Plan:
    """Compiles the train step of `config` (its seq_len, or `row_tokens`) on the devices present;
    `model_config` (a ModelConfig) plans that model in place of the config's preset or checkpoint."""
    import time

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nn_train.config import ConfigError, validate_config
    from nn_train.data import BATCH_KEYS
    from nn_train.models import param_count
    from nn_train.models.lora import apply_lora
    from nn_train.models.transformer import Transformer
    from nn_train.sharding import state_shardings
    from nn_train.trainer import batch_sharding_of, build_mesh, check_batch_splits, check_mesh_for_model, build_optimizer, lora_config, make_train_step, train_state_shardings

    config = config.copy_and_resolve_references()
    if row_tokens is not None:
        config.data.seq_len = row_tokens
    config.data.source = "synthetic"  # the data is never read: its shapes come from the config
    validate_config(config)
    if config.model.attention == "splash":
        raise ConfigError("config key 'model.attention' is 'splash', a TPU kernel that does not compile on this CPU host; "
                          "plan with model.attention=auto (the blockwise kernel, whose memory bounds Splash's)")
    mesh = build_mesh(config)
    if model_config is None:
        model_config, model_name = model_config_for_plan(config)
    else:
        model_name = f"{model_config.family}, {model_config.num_layers} layers of width {model_config.embed_dim}"
    check_batch_splits(config, mesh)
    check_mesh_for_model(model_config, mesh)
    rows = config.training.global_batch_size // config.training.microbatches

    def build():
        model = Transformer(model_config, rngs=nnx.Rngs(config.training.seed))
        if config.lora.enabled:
            apply_lora(model, lora_config(config), rngs=nnx.Rngs(params=0, dropout=0))
        return model

    model = nnx.eval_shape(build)
    trainable = nnx.LoRAParam if config.lora.enabled else nnx.Param
    graphdef, params_state, frozen_state = nnx.split(model, trainable, ...)
    params, frozen = nnx.to_pure_dict(params_state), nnx.to_pure_dict(frozen_state)
    param_shardings = nnx.to_pure_dict(state_shardings(params_state, mesh))
    frozen_shardings = nnx.to_pure_dict(state_shardings(frozen_state, mesh))
    tx, schedule = build_optimizer(config, max(config.training.num_steps, 1000))
    state_sharding = train_state_shardings(tx, params, param_shardings, mesh)
    opt_state = jax.eval_shape(tx.init, params)
    state = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params, "opt_state": opt_state}
    shape = (config.training.microbatches, rows, config.data.seq_len)
    batch = {key: jax.ShapeDtypeStruct(shape, jnp.float32 if key == "weights" else jnp.int32) for key in BATCH_KEYS}
    step_fn = make_train_step(config, graphdef, tx, schedule, state_sharding, frozen_shardings, batch_sharding_of(mesh))

    start = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = step_fn.lower(state, frozen, batch).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    # The model FLOPs, not XLA's count: that counts a loop body once, and the microbatch loop, the
    # blockwise attention and the chunked loss are loops.
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    tokens = config.training.global_batch_size * config.data.seq_len
    flops = model_flops_per_token(model_config, config.data.seq_len, config.lora.enabled) * tokens / mesh.size
    return Plan(
        devices=mesh.size, mesh=dict(mesh.shape), model=model_name, params=param_count(model_config),
        trainable=sum(math.prod(x.shape) for x in jax.tree.leaves(params)), row_tokens=config.data.seq_len, rows=config.training.global_batch_size,
        param_bytes=_shard_bytes(params, param_shardings), frozen_bytes=_shard_bytes(frozen, frozen_shardings),
        opt_bytes=_shard_bytes(opt_state, state_sharding["opt_state"]),
        argument_bytes=memory.argument_size_in_bytes, output_bytes=memory.output_size_in_bytes,
        alias_bytes=memory.alias_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
        flops=flops, xla_flops=float(cost.get("flops", 0.0)), compile_seconds=seconds, max_positions=model_config.max_position_embeddings,
        scanned=model_config.scan_layers,
    )


def longest_row(config, first: Plan, usable_bytes: float) -> tuple[int | None, tuple[int, int]]:
    """The longest row that fits `usable_bytes` (rounded down to a multiple of 128), and the two row
    lengths it was fitted on. With the blockwise attention kernel every buffer is linear in the row
    length, so two compiles fix the line; both lengths exceed one attention block, so that `auto`
    takes the blockwise kernel at both. None with the dense kernel, whose logits grow as T^2."""
    if config.model.attention == "dense":
        return None, (0, 0)
    block = config.model.attention_block_size
    upper = first if first.row_tokens > block else plan(config, row_tokens=4 * block)
    # the other point at half the row, unless that is under 4 blocks, where XLA's buffers are not
    # yet linear (measured: qwen3_tiny grows 2.19x from 256 to 512 tokens, 1.99x from 512 on)
    half = upper.row_tokens // 2
    lower = plan(config, row_tokens=half) if half >= 4 * block else plan(config, row_tokens=2 * upper.row_tokens)
    per_token = (upper.total_bytes - lower.total_bytes) / (upper.row_tokens - lower.row_tokens)
    fixed = upper.total_bytes - per_token * upper.row_tokens
    longest = int((usable_bytes - fixed) / per_token) if per_token > 0 else upper.row_tokens
    return max(longest // 128 * 128, 0), tuple(sorted((upper.row_tokens, lower.row_tokens)))


def report(p: Plan, device: Device, usable_fraction: float, mfu: float, longest: tuple | None = None) -> list[str]:
    """The plan as printed lines; `longest`: longest_row's result, if it was asked for."""
    gib = lambda b: f"{b / 2**30:,.2f} GiB" if b >= 2**30 else f"{b / 2**20:,.1f} MiB"  # noqa: E731
    usable = device.memory_bytes * usable_fraction
    fits = p.total_bytes <= usable
    step_seconds = p.flops / (device.peak_flops * mfu) if p.flops else float("nan")
    tokens = p.rows * p.row_tokens
    lines = [
        f"plan: {p.model} on {p.devices} x {device.name}, mesh {p.mesh}",
        f"  {p.params:,} parameters, {p.trainable:,} trained; {p.rows} rows x {p.row_tokens:,} tokens per step",
        "  per device:",
        f"    trained parameters   {gib(p.param_bytes)}",
        f"    optimizer state      {gib(p.opt_bytes)}",
        f"    frozen parameters    {gib(p.frozen_bytes)}",
        f"    XLA arguments        {gib(p.argument_bytes)} (the above and the batch)",
        f"    XLA outputs          {gib(p.output_bytes)} ({gib(p.alias_bytes)} of them in donated inputs)",
        f"    XLA temporaries      {gib(p.temp_bytes)} (activations, gradients, workspace)",
        f"    total at peak        {gib(p.total_bytes)} of {gib(usable)} usable ({usable_fraction:.0%} of {gib(device.memory_bytes)})",
        f"  fits: {'yes' if fits else 'no'}",
    ]
    if not fits:
        parts = {"temporaries": p.temp_bytes, "frozen parameters": p.frozen_bytes, "optimizer state": p.opt_bytes,
                 "trained parameters": p.param_bytes}
        largest = ", ".join(f"{name} {gib(size)}" for name, size in sorted(parts.items(), key=lambda kv: -kv[1])[:2])
        caveat = ("XLA:CPU's estimate" if p.scanned else
                  "an upper bound: with the layer loop XLA:CPU does not keep remat's savings; plan with model.scan_layers=true")
        lines.append(f"  does not fit: {gib(p.total_bytes - usable)} over the usable {gib(usable)} per device (largest: {largest}; "
                     f"{caveat}). Try more devices, a shorter row (data.seq_len), more microbatches, remat full, or bf16 weights")
    if longest is not None and longest[0] is None:
        lines.append("  longest row that fits: not estimated (the dense attention kernel grows as T^2; plan with model.attention=auto)")
    elif longest is not None:
        (tokens_fit, (short, long)) = longest
        lines.append(f"  longest row that fits: ~{tokens_fit:,} tokens (linear fit of compiles at {short:,} and {long:,} tokens; "
                     f"the model's positions end at {p.max_positions:,})")
    lines += [
        f"  model FLOPs per step, per device: {p.flops:.3e} (6N + 12 L H Q T per token, 4N with a frozen base; remat not counted)",
        f"  predicted step time at {mfu:.0%} MFU: {step_seconds:.2f} s ({tokens / step_seconds / p.devices if p.flops else float('nan'):,.0f} tokens/s per device)",
        f"  (compiled in {p.compile_seconds:.0f} s on this host's CPU: an estimate of the accelerator's buffers; parameter and optimizer bytes are exact)",
    ]
    return lines


def main() -> int:
    force_host_devices(_devices_from_argv(sys.argv))  # before absl/ml_collections import jax
    from absl import app, flags
    from ml_collections import config_flags

    from data_gen.strict_config import parse_flags

    config_flag = config_flags.DEFINE_config_file("config", None, "Training config file (configs/train/*.py).", lock_config=True)
    flags.DEFINE_integer("devices", 1, "Devices of the target mesh (faked on this host's CPU).")
    device_flag = flags.DEFINE_enum("device", "h100", sorted(DEVICES), "The target accelerator.")
    usable_flag = flags.DEFINE_float("usable_fraction", 0.9, "Share of the device memory a run may use (JAX on GPU "
                                     "preallocates 75% unless XLA_PYTHON_CLIENT_MEM_FRACTION says more).")
    mfu_flag = flags.DEFINE_float("mfu", 0.4, "Model FLOPs utilisation assumed for the step-time prediction.")
    fit_flag = flags.DEFINE_bool("longest_row", True, "Also find the longest row that fits (one more compile).")
    flags.mark_flags_as_required(["config"])

    def run(argv):
        del argv
        from nn_train.config import ConfigError

        config = config_flag.value
        config.mesh.num_devices = flags.FLAGS.devices
        device = DEVICES[device_flag.value]
        try:
            first = plan(config)
            longest = longest_row(config, first, device.memory_bytes * usable_flag.value) if fit_flag.value else None
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print("\n".join(report(first, device, usable_flag.value, mfu_flag.value, longest)))
        return 0 if first.total_bytes <= device.memory_bytes * usable_flag.value else 1

    app.run(run, flags_parser=parse_flags)
    return 0


if __name__ == "__main__":
    sys.exit(main())
