"""LoRA: low-rank adapters on the model's Dense layers, merging, and PEFT-format export.

    lora_config = LoRAConfig(rank=32, alpha=32, train_unembedding=True)   # the paper's recipe
    adapted = apply_lora(model, lora_config, rngs=nnx.Rngs(1))           # paths that got adapters
    trainable = nnx.state(model, nnx.LoRAParam)                          # only these are trained
    merged = merge_lora(model)                                           # plain model, deltas folded in
    export_peft(model, "out/adapter", base_model="Qwen/Qwen3-1.7B")       # adapter_config.json + safetensors

An adapter on a Dense with kernel [*in, *out] adds  scale · (dropout(x) · A) · B  with
A [*in, r] (random) and B [r, *out] (zeros, so training starts at the base model) and
scale = alpha / r. Targets are regular expressions matched against module paths such as
"layers.3.attn.q_proj" (default: every attention, Gated DeltaNet and MLP projection), or "layers.attn.q_proj" when
the layers are scanned: there an adapter is stacked [L, ...] like its kernel. With
`train_unembedding`, the unembedding gets an adapter too: `lm_head`, or — for tied embeddings —
an adapter on the output side only (the input embedding stays as it is, as in PEFT).

An MoE layer's expert kernels are targets too, named like a dense MLP's ("layers.0.mlp.gate_proj"):
one adapter per expert, stacked [E, ...] (ExpertAdapters), folded into the kernels before dispatch.
They merge and export merged; PEFT export refuses them (not built for transformers' fused experts).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from nn_train.models.hf_checkpoint import hf_module_name, staged_directory
from nn_train.models.layers import Dense
from nn_train.models.moe import Experts
from nn_train.models.transformer import Transformer, stack_layers

# Every token mixer's projections (attention's, and Gated DeltaNet's in Qwen3.5's linear_attn
# layers) and every MLP projection (a shared expert's too). Each target must match some module.
DEFAULT_TARGETS = (r"\battn\.(q|k|v|o)_proj|linear_attn\.(in_proj_(qkv|z|a|b)|out_proj)",
                   r"mlp\.(shared_expert\.)?(gate|up|down)_proj")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int = 32
    alpha: float = 32.0
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS  # regexes over module paths ("layers.0.attn.q_proj")
    train_unembedding: bool = True

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRA(nnx.Module):
    """The low-rank update for one Dense: x [..., *in] → [..., *out]."""

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        in_axes: Sequence[str | None],
        out_axes: Sequence[str | None],
        config: LoRAConfig,
        *,
        param_dtype,
        dtype,
        rngs: nnx.Rngs,
    ):
        self.in_dims = len(in_shape)
        self.scale = config.scale
        self.dtype = dtype
        # Kaiming-uniform over the fan-in for A (as PEFT does), zeros for B.
        fan_in = math.prod(in_shape)
        bound = 1.0 / math.sqrt(fan_in)
        a = jax.random.uniform(rngs.params(), (*in_shape, config.rank), jnp.float32, -bound, bound).astype(param_dtype)
        self.a = nnx.LoRAParam(a, logical_axes=(*in_axes, "lora_rank"))
        self.b = nnx.LoRAParam(jnp.zeros((config.rank, *out_shape), param_dtype), logical_axes=("lora_rank", *out_axes))
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs) if config.dropout > 0 else None

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.dropout is not None:
            x = self.dropout(x)
        low_rank = jnp.tensordot(x.astype(self.dtype), self.a[...].astype(self.dtype), axes=self.in_dims)
        return self.scale * jnp.tensordot(low_rank, self.b[...].astype(self.dtype), axes=1)

    def delta(self) -> jax.Array:
        """The dense update scale · A·B with the kernel's shape [*in, *out] (float32); [L, *in, *out]
        for a stacked adapter."""
        a, b = self.a[...].astype(jnp.float32), self.b[...].astype(jnp.float32)
        layers = a.shape[: a.ndim - 1 - self.in_dims]  # () or (L,)
        in_shape, rank, out_shape = a.shape[len(layers):-1], a.shape[-1], b.shape[len(layers) + 1:]
        low_rank = jnp.matmul(a.reshape(*layers, math.prod(in_shape), rank), b.reshape(*layers, rank, math.prod(out_shape)))
        return self.scale * low_rank.reshape(*layers, *in_shape, *out_shape)


class ExpertAdapters(nnx.Module):
    """LoRA adapters on an MoE layer's expert kernels: for each adapted projection, one LoRA per
    expert stacked on a leading "experts" axis (A [E, *in, r], B [E, r, *out]; [L, E, ...] for
    scanned layers). Experts.kernels folds their deltas in, so every dispatch runs them."""

    PROJECTIONS = ("gate_proj", "up_proj", "down_proj")

    def __init__(self, adapters: dict[str, LoRA]):
        for name in self.PROJECTIONS:
            setattr(self, name, adapters[name] if name in adapters else nnx.data(None))

    @property
    def adapters(self) -> dict[str, LoRA]:
        return {name: getattr(self, name) for name in self.PROJECTIONS if getattr(self, name) is not None}


def _expert_kernels(model: Transformer) -> list[tuple[str, tuple, Experts, str]]:
    """(target name, kernel path, Experts module, projection) of every expert kernel; the name is its
    MoE layer's path and the projection ("layers.0.mlp.gate_proj"), as a dense MLP's would read."""
    out = []
    for path, module in nnx.iter_modules(model):
        if isinstance(module, Experts):
            moe = ".".join(map(str, path[:-1]))
            out += [(f"{moe}.{name}", (*path, name), module, name) for name in ExpertAdapters.PROJECTIONS]
    return out


def _dense_modules(model: Transformer) -> list[tuple[str, tuple, Dense]]:
    out = []
    for path, module in nnx.iter_modules(model):
        if isinstance(module, Dense):
            out.append((".".join(map(str, path)), tuple(path), module))
    return out


def apply_lora(model: Transformer, config: LoRAConfig, *, rngs: nnx.Rngs) -> list[str]:
    """Attaches adapters in place; returns the adapted module paths. Targets matching nothing is an error."""
    if config.rank <= 0 or config.alpha <= 0 or not 0 <= config.dropout < 1:
        raise ValueError(f"LoRA needs rank > 0, alpha > 0 and 0 <= dropout < 1; got {config}")
    mc = model.config
    if mc.scan_layers and config.dropout > 0:
        raise ValueError("LoRA dropout is not supported with scanned layers (its random state cannot advance inside "
                         "the scan); set lora dropout to 0 or model scan_layers to false")
    patterns = [re.compile(p) for p in config.targets]
    targets = [(name, dense) for name, _, dense in _dense_modules(model)
               if name != "lm_head" and any(p.search(name) for p in patterns)]  # lm_head follows train_unembedding

    def adapter_for(dense: Dense) -> LoRA:
        kernel_axes = dense.kernel.get_metadata()["logical_axes"][-len(dense.in_shape) - len(dense.out_shape):]
        n = len(dense.in_shape)
        return LoRA(dense.in_shape, dense.out_shape, kernel_axes[:n], kernel_axes[n:], config,
                    param_dtype=mc.jnp_param_dtype, dtype=mc.jnp_dtype, rngs=rngs)

    expert_targets = [(name, experts, proj) for name, _, experts, proj in _expert_kernels(model) if any(p.search(name) for p in patterns)]
    adapted = [name for name, _ in targets] + [name for name, _, _ in expert_targets]
    unmatched = [p.pattern for p in patterns if not any(p.search(name) for name in adapted)]
    if not adapted or unmatched:
        names = ", ".join(n for n, _, _ in _dense_modules(model)[:8])
        raise ValueError(f"LoRA targets {', '.join(unmatched or config.targets)} match no module; module paths look like: {names}, ...")
    if expert_targets and config.dropout > 0:
        raise ValueError("LoRA dropout does not apply to expert adapters (they are folded into the experts' kernels); "
                         "set lora dropout to 0 or target the attention alone")
    if mc.scan_layers:
        # Drawn layer by layer in the loop's order, then stacked: the same adapters as the loop's. (A
        # hybrid model stacks groups of layer_period layers: the targets are each group position's.)
        per_layer = [[adapter_for(dense) for _, dense in targets] for _ in range(mc.num_layers // mc.layer_period)]
        for j, (_, dense) in enumerate(targets):
            dense.lora = stack_layers([layer[j] for layer in per_layer])
    else:
        for _, dense in targets:
            dense.lora = adapter_for(dense)
    _attach_expert_adapters(model, expert_targets, config, rngs)
    if config.train_unembedding:
        unembed_adapter = LoRA((mc.embed_dim,), (mc.vocab_size,), ("embed",), ("vocab",), config,
                               param_dtype=mc.jnp_param_dtype, dtype=mc.jnp_dtype, rngs=rngs)
        if mc.tie_embeddings:
            model.embed.unembed_lora = unembed_adapter
            adapted.append("embed.unembed")
        else:
            model.lm_head.lora = unembed_adapter
            adapted.append("lm_head")
    return adapted


def _attach_expert_adapters(model: Transformer, expert_targets, config: LoRAConfig, rngs: nnx.Rngs) -> None:
    """One LoRA per expert and adapted projection, stacked over the experts (and, scanned, the layers);
    drawn layer by layer in the same order either way, so a scanned model gets the loop's adapters."""
    mc = model.config
    d, f = mc.embed_dim, mc.expert_mlp_dim
    shapes = {"gate_proj": ((d,), (f,), ("embed",), ("mlp",)), "up_proj": ((d,), (f,), ("embed",), ("mlp",)),
              "down_proj": ((f,), (d,), ("mlp",), ("embed",))}
    by_module: dict[int, tuple[Experts, list[str]]] = {}
    for _, experts, proj in expert_targets:
        by_module.setdefault(id(experts), (experts, []))[1].append(proj)

    def layer_adapters(projections: list[str]) -> dict[str, LoRA]:
        return {proj: stack_layers([LoRA(*shapes[proj], config, param_dtype=mc.jnp_param_dtype, dtype=mc.jnp_dtype, rngs=rngs)
                                    for _ in range(mc.num_experts)], axis="experts") for proj in projections}

    for experts, projections in by_module.values():
        if mc.scan_layers:
            per_layer = [layer_adapters(projections) for _ in range(mc.num_layers // mc.layer_period)]
            experts.lora = ExpertAdapters({proj: stack_layers([layer[proj] for layer in per_layer]) for proj in projections})
        else:
            experts.lora = ExpertAdapters(layer_adapters(projections))


def lora_modules(model: Transformer) -> dict[str, LoRA]:
    """Adapted module path (as apply_lora names it) → its adapter."""
    found = {name: dense.lora for name, _, dense in _dense_modules(model) if dense.lora is not None}
    for name, _, experts, proj in _expert_kernels(model):
        if experts.lora is not None and proj in experts.lora.adapters:
            found[name] = experts.lora.adapters[proj]
    if getattr(model.embed, "unembed_lora", None) is not None:
        found["embed.unembed"] = model.embed.unembed_lora
    return found


def merge_lora(model: Transformer) -> Transformer:
    """A copy of `model` with every adapter folded into its kernel and no adapters left.

    A tied model with an unembedding adapter comes back untied (lm_head = embeddingᵀ + delta),
    since folding the delta into the shared matrix would also change the input embedding.
    """
    adapters = lora_modules(model)
    if not adapters:
        raise ValueError("the model has no LoRA adapters to merge")
    config = model.config
    tied_delta = adapters.pop("embed.unembed", None)
    if tied_delta is not None:
        config = config.replace(tie_embeddings=False)
    merged = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    source = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    target = dict(nnx.to_flat_state(nnx.state(merged, nnx.Param)))
    kernel_paths = {name: path + ("kernel",) for name, path, _ in _dense_modules(model)}
    kernel_paths.update({name: path for name, path, _, _ in _expert_kernels(model)})
    for path, variable in target.items():
        if path in source:
            value = source[path].get_value()
        else:  # lm_head of an untied copy: starts from the shared embedding
            value = source[("embed", "embedding")].get_value().T
        variable.set_value(value)
    for name, adapter in adapters.items():
        kernel = target[kernel_paths[name]]
        kernel.set_value((kernel.get_value().astype(jnp.float32) + adapter.delta()).astype(kernel.get_value().dtype))
    if tied_delta is not None:
        head = target[("lm_head", "kernel")]
        head.set_value((head.get_value().astype(jnp.float32) + tied_delta.delta()).astype(head.get_value().dtype))
    graphdef, _ = nnx.split(merged)
    return nnx.merge(graphdef, nnx.from_flat_state(target))


def _peft_tensors(model: Transformer, config: LoRAConfig) -> dict[str, np.ndarray]:
    """PEFT adapter tensors: lora_A.weight [r, in_features], lora_B.weight [out_features, r]."""
    tensors = {}
    dense_paths = {name: path for name, path, _ in _dense_modules(model)}
    expert_adapted = [name for name, _, experts, proj in _expert_kernels(model) if experts.lora is not None and proj in experts.lora.adapters]
    if expert_adapted:
        raise ValueError(f"adapters on MoE experts ({expert_adapted[0]}, ...) have no PEFT export yet: export the merged model "
                         "(export_hf_model(merge_lora(model))), or train adapters on the attention alone")
    period = model.config.layer_period
    stacked = model.config.num_layers // period if model.config.scan_layers else None
    for name, adapter in lora_modules(model).items():
        a = np.asarray(jax.device_get(adapter.a[...]), np.float32)
        b = np.asarray(jax.device_get(adapter.b[...]), np.float32)
        if name == "embed.unembed":
            per_module = [("lm_head", a, b)]
        elif stacked and name.startswith("layers.") and period > 1:  # ("layers", "blocks", j, ...): slice g is layer g·period + j
            path = dense_paths[name]
            per_module = [(hf_module_name(("layers", g * period + path[2], *path[3:])), a[g], b[g]) for g in range(stacked)]
        elif stacked and name.startswith("layers."):  # ("layers", "attn", "q_proj"): slice i is layer i
            path = dense_paths[name]
            per_module = [(hf_module_name((path[0], i, *path[1:])), a[i], b[i]) for i in range(stacked)]
        else:
            per_module = [(hf_module_name(dense_paths[name]), a, b)]
        for module, a, b in per_module:
            rank = a.shape[-1]
            tensors[f"base_model.model.{module}.lora_A.weight"] = np.ascontiguousarray(a.reshape(-1, rank).T)
            tensors[f"base_model.model.{module}.lora_B.weight"] = np.ascontiguousarray(b.reshape(rank, -1).T)
    return tensors


def export_peft(model: Transformer, out_dir: str | os.PathLike, config: LoRAConfig, *, base_model: str = "", overwrite: bool = False) -> Path:
    """Writes adapter_config.json + adapter_model.safetensors (PEFT key names), atomically."""
    out = Path(out_dir)
    tensors = _peft_tensors(model, config)
    if not tensors:
        raise ValueError("the model has no LoRA adapters to export")
    modules = sorted({key.split(".")[-3] for key in tensors})
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    with staged_directory(out, overwrite=overwrite) as staging:
        (staging / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
        save_file(tensors, str(staging / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out
