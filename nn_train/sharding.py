"""Logical → physical sharding: the one place where model axis names meet mesh axes.

Models annotate every parameter (and key activations) with *logical* axis names — `embed`,
`vocab`, `heads`, `kv_heads`, `head_dim`, `mlp`, ... — and never name a mesh axis. This module
owns the mesh, whose axes are always (data, fsdp, expert, tensor), and the rules table that maps
each logical name to mesh axes, in the style of MaxText's `logical_axis_rules`:

  parameters   experts → expert, embed → (fsdp, expert) (ZeRO-3 style), heads / kv_heads / mlp / vocab → tensor
  activations  act_batch → (data, fsdp, expert), act_heads / act_mlp / act_vocab → tensor

The expert axis (expert parallelism, MaxText's `expert` axis in its default mode) splits a
mixture-of-experts layer's stacked expert weights [E, D, F] by expert: each device holds E/expert
of them, and nn_train.models.moe exchanges tokens over the axis so each device runs only its own
experts. Everywhere else the axis is one more batch axis: the rows split over data × fsdp × expert,
and the weights that are not experts' shard their embed dimension over fsdp × expert, as under
FSDP. For a dense model it is therefore FSDP by another name (allowed; it changes nothing but the
axis name). `mesh.expert` must divide every MoE layer's expert count (`check_expert_split`).

A dimension that a mesh axis does not divide is replicated over that axis instead (a tiny test
model with one KV head still runs on a tensor-parallel mesh). Parameters carry their logical
axes as the Variable metadata `logical_axes`; flax's own `out_sharding` metadata is not used, so
building a model never needs a mesh in scope.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Outermost first. make_mesh reshapes the device list in this order, so the last axes vary fastest
# over jax.devices(): neighbours on one host's NVLink or one ICI ring. tensor is innermost (an
# all-reduce after every sharded matmul), expert next (the MoE layer's token all-gather and
# reduce-scatter, twice per layer; MaxText likewise keeps its expert axis among the inner ICI
# axes), then fsdp (a weight gather per layer) and data outermost (one gradient all-reduce per
# step, the one a slower link between hosts or slices can carry).
MESH_AXES = ("data", "fsdp", "expert", "tensor")
# The axes the batch's rows split over (every axis but tensor).
BATCH_AXES = ("data", "fsdp", "expert")

# logical axis → mesh axes (a name, a tuple of names, or None for replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # parameters
    ("layers", None),  # the stacked layer axis of scanned layers: every device holds every layer's shard
    ("embed", ("fsdp", "expert")),  # the expert axis is FSDP for every weight that is not an expert's
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("experts", "expert"),  # MoE expert weights [E, D, F]: each device holds E / mesh.expert experts' D/F shards
    ("norm", None),
    # Gated DeltaNet (Qwen3.5): its few heads stay whole on every tensor shard; their D shards over
    # fsdp like every other projection's. (q | k | v share one projection and one convolution.)
    ("linear_channels", None),
    ("linear_heads", None),
    ("conv_taps", None),
    ("lora_rank", None),
    # activations
    ("act_batch", BATCH_AXES),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_linear_heads", None),
    ("act_head_dim", None),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)

def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices: Sequence[jax.Device] | None = None, *,
              expert: int = 1) -> Mesh:
    """A (data, fsdp, expert, tensor) mesh over `devices` (default: all); one size may be -1 = fill.
    `expert` is keyword-only, so the positional (data, fsdp, tensor) calls keep their meaning."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, expert, tensor]  # MESH_AXES order
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh sizes {dict(zip(MESH_AXES, sizes))}: at most one axis may be -1 (fill)")
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes) or len(devices) % known:
        raise ValueError(
            f"mesh sizes {dict(zip(MESH_AXES, sizes))} do not divide the {len(devices)} devices; "
            "choose sizes whose product is the device count (one may be -1 to fill)"
        )
    sizes = [len(devices) // known if s == -1 else s for s in sizes]
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh sizes {dict(zip(MESH_AXES, sizes))} use {math.prod(sizes)} of {len(devices)} devices; their product must equal the device count")
    # Auto axes: shardings are propagated by XLA from the annotations (the pjit model).
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def batch_axes(mesh) -> tuple[str, ...]:
    """The mesh's axes of more than one device that split the batch's rows (of BATCH_AXES, in order).
    A mesh built elsewhere with fewer axes (no expert) is read as if the missing ones were 1."""
    sizes = dict(mesh.shape)
    return tuple(a for a in BATCH_AXES if sizes.get(a, 1) > 1)


def data_parallel_size(mesh) -> int:
    """How many ways the batch's rows split: data × fsdp × expert (1 for an empty mesh)."""
    if mesh is None or getattr(mesh, "empty", False):
        return 1
    sizes = dict(mesh.shape)
    return math.prod(sizes.get(a, 1) for a in BATCH_AXES)


def expert_parallel_size(mesh) -> int:
    if mesh is None or getattr(mesh, "empty", False):
        return 1
    return dict(mesh.shape).get("expert", 1)


def check_expert_split(num_experts: int, mesh) -> None:
    """ValueError (one line) unless the mesh's expert axis divides `num_experts` (any count when it is 1;
    a dense model, num_experts 0, with any expert axis: the axis then only splits the batch)."""
    ep = expert_parallel_size(mesh)
    if ep > 1 and num_experts % ep:
        raise ValueError(f"num_experts ({num_experts}) is not divisible by mesh.expert ({ep}): each device of the expert "
                         f"axis holds num_experts / mesh.expert experts; choose a mesh.expert that divides {num_experts}")


def _mesh_axis_size(mesh, axes: str | tuple[str, ...]) -> int:
    names = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[name] for name in names)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int] | None = None, mesh=None) -> PartitionSpec:
    """The PartitionSpec for an array with these logical axes under LOGICAL_AXIS_RULES.

    With `shape` and `mesh`, a mesh axis that does not divide its dimension is dropped
    (that dimension is replicated), and a mesh axis already used by an earlier dimension is
    not used again.
    """
    rules = dict(LOGICAL_AXIS_RULES)
    used: set[str] = set()
    spec = []
    for i, name in enumerate(logical_axes):
        if name is not None and name not in rules:
            raise KeyError(f"logical axis '{name}' has no rule; add it to nn_train.sharding.LOGICAL_AXIS_RULES")
        axes = rules.get(name) if name is not None else None
        if axes is not None:
            names = (axes,) if isinstance(axes, str) else tuple(axes)
            names = tuple(a for a in names if a not in used)
            if mesh is not None:
                names = tuple(a for a in names if a in mesh.shape and mesh.shape[a] > 1)
                if shape is not None and names and shape[i] % _mesh_axis_size(mesh, names):
                    names = ()
            used.update(names)
            axes = names[0] if len(names) == 1 else (names or None)
        spec.append(axes)
    return PartitionSpec(*spec)


def logical_axes_of(variable: nnx.Variable) -> tuple[str | None, ...]:
    axes = variable.get_metadata().get("logical_axes")
    if axes is None:
        return (None,) * len(variable.get_value().shape)
    return tuple(axes)


def state_shardings(state: nnx.State, mesh: Mesh) -> nnx.State:
    """NamedShardings for every Variable of `state` (abstract or concrete), from its logical axes.
    ValueError (check_expert_split) when the mesh's expert axis does not divide an MoE layer's experts:
    found here, before any weight is created or read, rather than silently replicating them."""

    def sharding(variable: nnx.Variable) -> nnx.Variable:
        shape = variable.get_value().shape
        axes = logical_axes_of(variable)
        if "experts" in axes:  # expert kernels, their adapters, the router: each such dimension is num_experts
            check_expert_split(shape[axes.index("experts")], mesh)
        return variable.replace(NamedSharding(mesh, logical_to_spec(axes, shape, mesh)))

    return jax.tree.map(sharding, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_activation(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """Constrains an activation's sharding inside jit when a mesh is in scope; else a no-op."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(logical_axes, x.shape, mesh))


def map_row_shards(fn, *arrays: jax.Array):
    """fn(*arrays) run on each device's own rows (shard_map over the batch's axes, BATCH_AXES, every
    array's leading axis the batch), for computations that are independent row by row. Recurrences
    need this: left to the partitioner, a scan whose body it shards differently from its carry
    gathers every step (and on the CPU's fake devices its collectives can deadlock). Without a mesh,
    or when the axes do not divide the batch, fn runs as it is."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return fn(*arrays)
    rows = batch_axes(mesh)
    if not rows or arrays[0].shape[0] % math.prod(dict(mesh.shape)[a] for a in rows):
        return fn(*arrays)
    spec = lambda x: PartitionSpec(rows, *([None] * (x.ndim - 1)))
    out_shape = jax.eval_shape(fn, *arrays)
    return jax.shard_map(fn, mesh=mesh, in_specs=tuple(spec(x) for x in arrays),
                         out_specs=jax.tree.map(spec, out_shape))(*arrays)
