"""A mixture-of-experts MLP: a softmax top-k router and SwiGLU experts held as stacked weights.

    moe = MoE(config, rngs=rngs)       # config.num_experts experts, config.experts_per_token per token
    y = moe(x)                          # [B, T, D] → [B, T, D]

Routing (Qwen3-MoE, as transformers computes it): router logits x·W_r in float32, softmax over
the experts, the top k kept, renormalised to sum to 1 when `norm_topk_prob`. Each token's output
is the weighted sum of its k experts' SwiGLU outputs, down(silu(gate(x)) · up(x)).

Dispatch (config.moe_dispatch):
  ragged  dropless: the (token, expert) pairs are sorted by expert and each expert's rows go
          through one grouped matmul, `jax.lax.ragged_dot`, so compute is k/E of the dense one
          and no token is ever dropped for capacity;
  dense   every expert on every token, combined with the routing weights: E/k times the work,
          the plain-einsum reference the ragged path is tested against;
  blocked dropless too: the sorted pairs are laid out with each expert's group padded to a
          multiple of a row block, and a `lax.scan` over the blocks runs each through its expert's
          weights (what a grouped-matmul kernel does tile by tile): about the ragged FLOPs and
          memory linear in M·k on every backend, with no grouped-matmul primitive needed;
  auto    ragged on GPU and TPU, blocked on CPU: XLA's CPU backend has no grouped matmul and
          emulates ragged_dot with a dense one per expert over all M·k rows, k times the dense
          dispatch's cost and E times its memory (nn_train.models.moe_benchmark has the figures).

With config.shared_expert_mlp_dim (Qwen3.5), every token also goes through a shared SwiGLU expert
whose output is scaled by sigmoid(x·w_gate) and added.

Expert weights are [E, D, F] (gate, up) and [E, F, D] (down), logical axes ("experts", ...): E splits
over the mesh's `expert` axis (nn_train.sharding), D over fsdp and F over tensor like a dense MLP's.

Under a mesh the layer runs per device (`_per_device`, a shard_map): each device routes its own
tokens (rows split over data × fsdp × expert) and, with an expert axis of ep devices, runs only its
E/ep local experts, on the tokens of every device of its expert group (`_expert_parallel`):
all-gather the group's tokens, a scan over the ep source devices computing each one's pairs that
go to a local expert (the others masked), reduce-scatter the partial outputs back to the tokens'
devices. Dropless and exact: each pair is computed by exactly one device, and the output equals the
single-device one up to the order of the k-term sum.
Kept free of Qwen specifics beyond the routing rule, so DeepSeek-style models can reuse it.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from nn_train.models.config import ModelConfig
from nn_train.models.layers import MLP, Dense, normal_init


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RouterStats:
    """What the load-balancing loss needs from one or more layers' routing, summed over tokens."""

    assignments: jax.Array  # [E] top-k assignments per expert
    probability: jax.Array  # [E] router probability per expert
    tokens: jax.Array  # [] tokens counted (times layers, once summed over layers)

    def __add__(self, other: "RouterStats") -> "RouterStats":
        return jax.tree.map(jnp.add, self, other)


def load_balancing_loss(stats: RouterStats) -> jax.Array:
    """The Switch Transformer auxiliary loss as transformers computes it for Qwen3-MoE
    (load_balancing_loss_func): E · Σ_e (assignments_e / tokens) · (probability_e / tokens), with
    tokens and assignments pooled over every layer. It is k when routing is uniform."""
    tokens = jnp.maximum(stats.tokens, 1.0)
    return stats.assignments.shape[0] * jnp.sum((stats.assignments / tokens) * (stats.probability / tokens))


class Experts(nnx.Module):
    """E SwiGLU experts as three stacked kernels."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        e, d, f = config.num_experts, config.embed_dim, config.expert_mlp_dim
        dtype = config.jnp_param_dtype
        # Each expert initialised as its own [D, F] / [F, D] matrix would be (fan-in of one expert).
        init = lambda key, shape: jax.vmap(lambda k: normal_init(k, shape, dtype))(jax.random.split(key, e))
        self.gate_proj = nnx.Param(init(rngs.params(), (d, f)), logical_axes=("experts", "embed", "mlp"))
        self.up_proj = nnx.Param(init(rngs.params(), (d, f)), logical_axes=("experts", "embed", "mlp"))
        self.down_proj = nnx.Param(init(rngs.params(), (f, d)), logical_axes=("experts", "mlp", "embed"))
        # LoRA adapters on these kernels (nn_train.models.lora.ExpertAdapters), attached later.
        self.lora = nnx.data(None)

    def kernels(self, dtype) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(gate, up, down) in `dtype`, each with its LoRA update scale·A_e·B_e folded in when adapted:
        every dispatch then runs adapted experts as plain ones."""
        kernels = []
        for name in ("gate_proj", "up_proj", "down_proj"):
            kernel = getattr(self, name)[...]
            if self.lora is not None and name in self.lora.adapters:
                kernel = kernel.astype(jnp.float32) + self.lora.adapters[name].delta()
            kernels.append(kernel.astype(dtype))
        return tuple(kernels)


class MoE(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.router = Dense((config.embed_dim,), (config.num_experts,), ("embed", "experts"), config=config, rngs=rngs)
        self.experts = Experts(config, rngs=rngs)
        if config.shared_expert_mlp_dim:  # Qwen3.5: every token also goes through one gated dense expert
            self.shared_expert = MLP(config, rngs=rngs, mlp_dim=config.shared_expert_mlp_dim)
            self.shared_expert_gate = Dense((config.embed_dim,), (1,), ("embed", None), config=config, rngs=rngs)

    def route(self, x_md: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Tokens [M, D] → (weights [M, k] in the compute dtype, expert ids [M, k] int32)."""
        return self.top_k(self.router_probs(x_md))

    def router_probs(self, x_md: jax.Array) -> jax.Array:
        """Tokens [M, D] → float32 softmax over the experts [M, E]."""
        kernel = self.router.kernel[...].astype(jnp.float32)
        return jax.nn.softmax(x_md.astype(jnp.float32) @ kernel, axis=-1)

    def top_k(self, probs: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg = self.config
        weights, experts = jax.lax.top_k(probs, cfg.experts_per_token)
        if cfg.norm_topk_prob:
            weights = weights / weights.sum(axis=-1, keepdims=True)
        return weights.astype(cfg.jnp_dtype), experts.astype(jnp.int32)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.forward(x)[0]

    def forward(self, x: jax.Array, valid: jax.Array | None = None) -> tuple[jax.Array, RouterStats]:
        """x [..., D] → (y [..., D], this layer's RouterStats over the tokens where `valid` [...] is
        true: every token when None)."""
        cfg = self.config
        x_md = x.astype(cfg.jnp_dtype).reshape(-1, x.shape[-1])
        probs = self.router_probs(x_md)
        weights, experts = self.top_k(probs)
        valid_m = jnp.ones(x_md.shape[0], jnp.float32) if valid is None else valid.reshape(-1).astype(jnp.float32)
        stats = RouterStats(
            assignments=jnp.zeros(cfg.num_experts, jnp.float32).at[experts].add(jnp.broadcast_to(valid_m[:, None], experts.shape)),
            probability=(probs * valid_m[:, None]).sum(axis=0),
            tokens=valid_m.sum(),
        )
        gate, up, down = self.experts.kernels(cfg.jnp_dtype)
        dispatch = {"dense": _dense_dispatch, "ragged": _ragged_dispatch, "blocked": _blocked_dispatch}[resolve_dispatch(cfg.moe_dispatch)]
        y_md = _per_device(dispatch, x_md, weights, experts, gate, up, down)
        y = y_md.reshape(x.shape).astype(x.dtype)
        if self.config.shared_expert_mlp_dim:
            x_c = x.astype(cfg.jnp_dtype)
            y = y + (jax.nn.sigmoid(self.shared_expert_gate(x_c)) * self.shared_expert(x_c)).astype(y.dtype)
        return y, stats


def _per_device(dispatch, x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd) -> jax.Array:
    """Runs `dispatch` on each device's own tokens under a mesh (shard_map): the tokens' rows split
    over data × fsdp × expert, as the batch is, the experts over the expert axis (each device runs
    its own, `_expert_parallel`) and the experts' F over tensor (partial outputs summed).
    Left to the compiler, the sort over all (token, expert) pairs gathers the global batch onto
    every device: the planner measured 136 GiB of temporaries per v5p for Qwen3-30B-A3B on 64
    devices against 48 GiB on 8 with the same rows per device."""
    from jax.sharding import PartitionSpec as P

    from nn_train.sharding import batch_axes, check_expert_split

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return dispatch(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd)
    sizes = dict(mesh.shape)
    ep = sizes.get("expert", 1)
    check_expert_split(gate_edf.shape[0], mesh)  # normally refused earlier, when the weights were sharded
    # The rows over every batch axis; a batch the expert axis does not split (a decode step of fewer
    # rows than devices) is replicated over it, and then over data × fsdp too if they do not divide it.
    rows = None
    for axes in (batch_axes(mesh), tuple(a for a in batch_axes(mesh) if a != "expert")):
        if axes and x_md.shape[0] % math.prod(sizes[a] for a in axes) == 0:
            rows = axes
            break
    mlp = "tensor" if sizes.get("tensor", 1) > 1 and gate_edf.shape[2] % sizes["tensor"] == 0 else None
    expert = "expert" if ep > 1 else None
    if rows is None and mlp is None and expert is None:
        return dispatch(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd)
    tokens_split_over_expert = rows is not None and "expert" in rows

    def local(x, weights, experts, gate, up, down):
        if expert is None:
            y = dispatch(x, weights, experts, gate, up, down)
        else:
            y = _expert_parallel(dispatch, x, weights, experts, gate, up, down, tokens_split_over_expert)
        return jax.lax.psum(y, "tensor") if mlp else y

    token_rows = P(rows, None)
    return jax.shard_map(local, mesh=mesh, out_specs=token_rows,
                         in_specs=(token_rows, token_rows, token_rows, P(expert, None, mlp), P(expert, None, mlp), P(expert, mlp, None)),
                         )(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd)


def _expert_parallel(dispatch, x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd, tokens_split: bool) -> jax.Array:
    """Inside shard_map: this device's tokens through the experts of the whole expert axis, of which
    it holds E/ep (gate_edf [E/ep, D, F]; global expert e lives on expert-axis device e // (E/ep)).

    With the tokens split over the expert axis (`tokens_split`): the group's tokens are all-gathered
    ([ep, m, D], plus their routing [ep, m, k]); a scan over the ep sources runs `dispatch` on one
    source's m tokens at a time with its pairs for a non-local expert masked out (expert id E/ep, the
    dispatches' "no expert", weight 0); the stacked partial outputs [ep, m, D] are reduce-scattered
    (psum_scatter), so each device gets its own m rows summed over the ep devices' experts. Each
    scan step is checkpointed, so the backward keeps only the gathered inputs, not ep steps'
    dispatch buffers.

    Why this and not an all-to-all of the (token, expert) pairs: dropless with static shapes, an
    all-to-all must size each destination's buffer for the worst case, all m·k pairs going to one
    device, so it sends and receives ep·m·k rows of D (k times the all-gather's ep·m) and the local
    experts then run over ep·m·k rows at once. Here the live buffers are ep·m rows of D in and out
    (activations, k times fewer than the pairs) plus one step's dispatch buffers, the same m·k pairs
    a device dispatches without an expert axis. The price is compute on masked pairs: the dense
    dispatch runs the local experts on every gathered token (E·m per device, as without the axis);
    ragged_dot computes nothing for the masked rows it is told are past its groups (zero rows); the
    blocked scan skips blocks past the last local group. The backward recomputes each step's
    forward once more (the checkpoint).

    With the tokens replicated over the expert axis (a batch it does not split), each device runs
    its local experts on the tokens it has and the partial outputs are summed (psum).
    """
    local_experts = gate_edf.shape[0]
    first = jax.lax.axis_index("expert") * local_experts

    def mine(x, weights, experts):
        ids = experts - first
        here = (ids >= 0) & (ids < local_experts)
        return dispatch(x, jnp.where(here, weights, jnp.zeros_like(weights)), jnp.where(here, ids, local_experts),
                        gate_edf, up_edf, down_efd)

    if not tokens_split:
        return jax.lax.psum(mine(x_md, weights_mk, experts_mk), "expert")
    gathered = [jax.lax.all_gather(a, "expert") for a in (x_md, weights_mk, experts_mk)]  # [ep, m, ...]

    @jax.checkpoint
    def step(carry, source):
        return carry, mine(*source)

    _, partial = jax.lax.scan(step, None, gathered)  # [ep, m, D]: source j's tokens through this device's experts
    return jax.lax.psum_scatter(partial, "expert", scatter_dimension=0)


def resolve_dispatch(dispatch: str, platform: str | None = None) -> str:
    """The dispatch `auto` means on this platform (module docstring); others as given."""
    if dispatch != "auto":
        return dispatch
    return "ragged" if (platform or jax.default_backend()) in ("gpu", "tpu") else "blocked"


# Every dispatch takes an expert id of E (one past the last, gate_edf.shape[0]) as "no expert": the
# pair contributes nothing (the expert-parallel path masks other devices' experts so).


def _dense_dispatch(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd) -> jax.Array:
    """Every expert on every token; the routing weights (zero off the top k) pick the sum."""
    combine_me = jnp.einsum("mk,mke->me", weights_mk, jax.nn.one_hot(experts_mk, gate_edf.shape[0], dtype=weights_mk.dtype))
    hidden_emf = jax.nn.silu(jnp.einsum("md,edf->emf", x_md, gate_edf)) * jnp.einsum("md,edf->emf", x_md, up_edf)
    out_emd = jnp.einsum("emf,efd->emd", hidden_emf, down_efd)
    return jnp.einsum("emd,me->md", out_emd, combine_me)


def _ragged_dispatch(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd) -> jax.Array:
    """The M·k (token, expert) pairs sorted by expert, one grouped matmul per projection, then
    gathered back to their tokens and summed with the routing weights. Pairs of no expert (id E)
    sort last, past every group: ragged_dot gives them zero rows."""
    m, k = experts_mk.shape
    num_experts = gate_edf.shape[0]
    flat_experts = experts_mk.reshape(-1)  # pair p = token p // k, its (p % k)-th expert
    order = jnp.argsort(flat_experts, stable=True)
    rows = x_md[order // k]  # [M·k, D], grouped by expert
    group_sizes = jnp.bincount(flat_experts, length=num_experts).astype(jnp.int32)
    hidden = jax.nn.silu(jax.lax.ragged_dot(rows, gate_edf, group_sizes)) * jax.lax.ragged_dot(rows, up_edf, group_sizes)
    out = jax.lax.ragged_dot(hidden, down_efd, group_sizes)  # [M·k, D], still grouped by expert
    unsorted = out[jnp.argsort(order)].reshape(m, k, -1)  # back to (token, its k-th expert)
    unsorted = jnp.where((experts_mk < num_experts)[..., None], unsorted, 0)
    return jnp.einsum("mkd,mk->md", unsorted, weights_mk)


def _varying_axes(x) -> frozenset:
    """The shard_map mesh axes `x` varies over (empty outside shard_map); the attribute moved in JAX 0.10."""
    aval = jax.typeof(x)
    if hasattr(aval, "vma"):
        return frozenset(aval.vma)
    return frozenset(getattr(getattr(aval, "manual_axis_type", None), "varying", ()) or ())


def _vary_alike(*arrays) -> tuple:
    """`arrays`, each cast (jax.lax.pcast) to vary over every mesh axis any of them varies over."""
    varying = frozenset().union(*(_varying_axes(a) for a in arrays))
    out = []
    for a in arrays:
        missing = tuple(sorted(varying - _varying_axes(a)))
        out.append(jax.lax.pcast(a, missing, to="varying") if missing else a)
    return tuple(out)


MAX_BLOCK_ROWS = 128  # rows per block of the blocked dispatch (fewer when the groups are small)


def block_rows(pairs: int, num_experts: int) -> int:
    """Rows per block: about one expert's share of the pairs, a power of two in [8, MAX_BLOCK_ROWS],
    so a decode step (a few pairs) pads little and a training step's blocks are full-sized matmuls."""
    share = -(-pairs // num_experts)
    return min(MAX_BLOCK_ROWS, max(8, 1 << (share - 1).bit_length()))


def _blocked_dispatch(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd) -> jax.Array:
    """Pairs sorted by expert, each expert's group padded to whole blocks of `block_rows` rows; a
    scan runs block j through the weights of the expert that owns it, and skips (lax.cond) the
    blocks past the last group. Pairs of no expert (id E) get no row and contribute zero."""
    # Under shard_map, every operand made to vary over the same mesh axes here, once: else the kernels
    # (not varying over the token axes) are cast inside the cond, whose backward then sums their
    # gradients over those axes there, a collective only the devices taking the branch would reach.
    x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd = _vary_alike(x_md, weights_mk, experts_mk, gate_edf, up_edf, down_efd)
    m, k = experts_mk.shape
    num_experts = gate_edf.shape[0]
    pairs = m * k
    rows_per_block = block_rows(pairs, num_experts)
    num_blocks = -(-pairs // rows_per_block) + num_experts  # bounds sum_e ceil(group_e / block)
    flat_experts = experts_mk.reshape(-1)
    order = jnp.argsort(flat_experts, stable=True)
    sorted_experts = flat_experts[order]
    routed = sorted_experts < num_experts
    group_sizes = jnp.bincount(flat_experts, length=num_experts)  # drops the ids of no expert
    padded_sizes = -(-group_sizes // rows_per_block) * rows_per_block
    group_starts, padded_starts = jnp.cumsum(group_sizes) - group_sizes, jnp.cumsum(padded_sizes) - padded_sizes
    owner = jnp.minimum(sorted_experts, num_experts - 1)
    slot = padded_starts[owner] + jnp.arange(pairs) - group_starts[owner]  # sorted pair → padded row
    slot = jnp.where(routed, slot, num_blocks * rows_per_block)  # past the end: dropped on write, zero on read
    rows = jnp.zeros((num_blocks * rows_per_block, x_md.shape[1]), x_md.dtype).at[slot].set(x_md[order // k], mode="drop")
    # The expert owning each block; blocks past the last group hold zero rows and are skipped.
    block_starts = jnp.arange(num_blocks) * rows_per_block
    block_experts = jnp.minimum(jnp.searchsorted(padded_starts + padded_sizes, block_starts, side="right"), num_experts - 1)
    block_used = block_starts < padded_sizes.sum()

    def run(rows_bd, expert):
        hidden = jax.nn.silu(rows_bd @ gate_edf[expert]) * (rows_bd @ up_edf[expert])
        return hidden @ down_efd[expert]

    def skip(rows_bd, expert):
        zeros = jnp.zeros((rows_bd.shape[0], down_efd.shape[2]), jnp.result_type(rows_bd, down_efd))
        return _vary_alike(zeros, down_efd)[0]  # the branches' outputs vary over the same mesh axes

    def block(_, inputs):
        rows_bd, expert, used = inputs
        return None, jax.lax.cond(used, run, skip, rows_bd, expert)

    _, out = jax.lax.scan(block, None, (rows.reshape(num_blocks, rows_per_block, -1), block_experts, block_used))
    out = out.reshape(num_blocks * rows_per_block, -1).at[slot].get(mode="fill", fill_value=0)
    unsorted = out[jnp.argsort(order)].reshape(m, k, -1)
    return jnp.einsum("mkd,mk->md", unsorted, weights_mk)
