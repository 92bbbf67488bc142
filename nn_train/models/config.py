"""ModelConfig: the shape and numerics of a decoder-only transformer, shared by every family.

Qwen3 and Llama 3 differ only in a few switches (per-head q/k RMSNorm, the RoPE frequency
scaling, tied embeddings), so one config and one module serve both; Qwen3-MoE adds routed experts,
and Qwen3.5 adds Gated DeltaNet layers (`layer_types`), an output gate on attention, partial rotary
embeddings, zero-centred norms and a shared expert. Each family package (`nn_train/models/qwen3`,
`.../llama3`, `.../qwen3_moe`, `.../qwen3_5`) holds its presets and the translation from a
Hugging Face config.json.

Dimension letters used in names across the model code: B batch, T query time, S key time,
D embed, N query heads, K kv heads, G = N // K (queries per kv head), H head dim, F mlp, V vocab.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from nn_train.models.attention import BACKENDS

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Rematerialisation of each decoder block in the backward pass:
#   none        keep every activation (fastest, most memory)
#   full        recompute the whole block (least memory)
#   save_dots   keep matmul outputs, recompute the cheap element-wise work
#   offload     keep matmul outputs in pinned host memory instead of device memory
REMAT_POLICIES = ("none", "full", "save_dots", "offload")
# Attention kernels: auto | dense | blockwise | splash (nn_train.models.attention)
ATTENTION_BACKENDS = BACKENDS
FAMILIES = ("qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_moe", "llama3")
# The token mixer of each layer (config.layer_types): softmax attention, or Gated DeltaNet
# linear attention (nn_train.models.gated_deltanet).
LAYER_TYPES = ("full_attention", "linear_attention")
MOE_DISPATCHES = ("auto", "ragged", "blocked", "dense")  # nn_train.models.moe
# scan_layers=None scans the layers of models this large: every published preset (Qwen3-0.6B has
# 0.6B), where compile time would otherwise grow with depth; the CPU-sized presets keep the loop.
SCAN_LAYERS_MIN_PARAMS = 500_000_000


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3 RoPE frequency scaling (rope_type "llama3" in Hugging Face configs)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    family: str
    vocab_size: int
    embed_dim: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp_dim: int
    rope_theta: float = 10_000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False
    qk_norm: bool = False
    max_position_embeddings: int = 4096
    param_dtype: str = "float32"
    dtype: str = "float32"  # compute dtype of matmuls and activations
    remat: str = "none"
    attention: str = "auto"  # the attention kernel (nn_train.models.attention.BACKENDS)
    attention_block_size: int = 512  # key block of the blockwise kernel: its memory grows as T * this
    # Layers as one stacked Block run by jax.lax.scan (compile time flat in depth) instead of a
    # Python loop of Blocks (hybrid models: a stacked group of layer_period Blocks); None: scan when
    # the model has >= SCAN_LAYERS_MIN_PARAMS parameters.
    scan_layers: bool | None = None
    # Mixture of experts (nn_train.models.moe): with num_experts > 0 every layer's MLP is a router
    # over that many SwiGLU experts of width expert_mlp_dim, experts_per_token of them per token
    # (mlp_dim is then the width a dense layer would have, kept for the Hugging Face config).
    num_experts: int = 0
    experts_per_token: int = 0
    expert_mlp_dim: int = 0
    norm_topk_prob: bool = True  # renormalise the top-k routing weights to sum to 1
    moe_dispatch: str = "auto"  # auto | ragged | blocked (both dropless) | dense (every expert; the reference)
    shared_expert_mlp_dim: int = 0  # > 0: an always-on SwiGLU expert beside the routed ones, gated by sigmoid(x·w) (Qwen3.5)
    # Qwen3.5's hybrid layers: layer_types[i] is layer i's mixer (LAYER_TYPES); None means every layer is
    # full attention. The linear_* fields shape the Gated DeltaNet layers.
    layer_types: tuple[str, ...] | None = None
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 4
    attention_output_gate: bool = False  # attention output × sigmoid(a second query projection), per head (Qwen3.5)
    partial_rotary_factor: float = 1.0  # the fraction of each head's dims that RoPE rotates (the first ones)
    norm_unit_offset: bool = False  # zero-centred RMSNorm scales: y = norm(x) · (1 + w), in float32 (Qwen3.5)
    # Hugging Face special tokens, carried through export.
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self):
        problems = []
        if self.family not in FAMILIES:
            problems.append(f"family '{self.family}' is not one of {', '.join(FAMILIES)}")
        for name in ("vocab_size", "embed_dim", "num_layers", "num_heads", "num_kv_heads", "head_dim", "mlp_dim"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_kv_heads > 0 and self.num_heads % self.num_kv_heads:
            problems.append(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in DTYPES:
                problems.append(f"{name} '{getattr(self, name)}' is not one of {', '.join(DTYPES)}")
        if self.remat not in REMAT_POLICIES:
            problems.append(f"remat '{self.remat}' is not one of {', '.join(REMAT_POLICIES)}")
        if self.attention not in ATTENTION_BACKENDS:
            problems.append(f"attention '{self.attention}' is not one of {', '.join(ATTENTION_BACKENDS)}")
        if self.attention_block_size <= 0:
            problems.append(f"attention_block_size must be positive, got {self.attention_block_size}")
        if self.num_experts < 0:
            problems.append(f"num_experts must be 0 (dense) or positive, got {self.num_experts}")
        elif self.num_experts:
            if not 1 <= self.experts_per_token <= self.num_experts:
                problems.append(f"experts_per_token must be in 1..num_experts ({self.num_experts}), got {self.experts_per_token}")
            if self.expert_mlp_dim <= 0:
                problems.append(f"expert_mlp_dim must be positive with experts, got {self.expert_mlp_dim}")
            if self.moe_dispatch not in MOE_DISPATCHES:
                problems.append(f"moe_dispatch '{self.moe_dispatch}' is not one of {', '.join(MOE_DISPATCHES)}")
        if self.shared_expert_mlp_dim < 0:
            problems.append(f"shared_expert_mlp_dim must be 0 (none) or positive, got {self.shared_expert_mlp_dim}")
        if self.layer_types is not None:
            object.__setattr__(self, "layer_types", tuple(self.layer_types))  # a JSON list, or any sequence
            if len(self.layer_types) != self.num_layers:
                problems.append(f"layer_types has {len(self.layer_types)} entries for num_layers={self.num_layers}")
            unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
            if unknown:
                problems.append(f"layer_types {unknown} are not among {', '.join(LAYER_TYPES)}")
            if "linear_attention" in self.layer_types:
                for name in ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
                             "linear_conv_kernel_dim"):
                    if getattr(self, name) <= 0:
                        problems.append(f"{name} must be positive with linear_attention layers, got {getattr(self, name)}")
                if self.linear_num_key_heads > 0 and self.linear_num_value_heads % self.linear_num_key_heads:
                    problems.append(f"linear_num_value_heads ({self.linear_num_value_heads}) must be a multiple of "
                                    f"linear_num_key_heads ({self.linear_num_key_heads})")
        if not 0 < self.partial_rotary_factor <= 1 or self.rotary_dim % 2:
            problems.append(f"partial_rotary_factor ({self.partial_rotary_factor}) must be in (0, 1] and rotate an even "
                            f"number of head dims (head_dim {self.head_dim} → {self.rotary_dim})")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))
        if self.scan_layers is None:  # resolved once, so a saved config records the layout it ran with
            object.__setattr__(self, "scan_layers", self.approx_param_count >= SCAN_LAYERS_MIN_PARAMS)

    @property
    def mixers(self) -> tuple[str, ...]:
        """Each layer's token mixer (LAYER_TYPES)."""
        return self.layer_types or ("full_attention",) * self.num_layers

    @property
    def layer_period(self) -> int:
        """The length of the repeating pattern of layer types (1 when every layer is alike; 4 for
        Qwen3.5's three Gated DeltaNet layers and one attention layer): scanned layers run as a scan
        over groups of this many layers."""
        mixers = self.mixers
        return next(p for p in range(1, len(mixers) + 1) if len(mixers) % p == 0 and mixers == mixers[:p] * (len(mixers) // p))

    @property
    def rotary_dim(self) -> int:
        """How many leading dims of each head RoPE rotates."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def linear_conv_dim(self) -> int:
        """Channels of a Gated DeltaNet layer's convolution: its queries, keys and values."""
        return 2 * self.linear_num_key_heads * self.linear_key_head_dim + self.linear_num_value_heads * self.linear_value_head_dim

    @property
    def approx_param_count(self) -> int:
        """Parameters from the shapes alone (nn_train.models.param_count counts the built model exactly)."""
        d, h = self.embed_dim, self.head_dim
        attention = d * h * ((3 if self.attention_output_gate else 2) * self.num_heads + 2 * self.num_kv_heads)
        attention += 2 * h if self.qk_norm else 0
        hv, dv = self.linear_num_value_heads, self.linear_value_head_dim
        linear = (d * (self.linear_conv_dim + 2 * hv * dv + 2 * hv) + self.linear_conv_kernel_dim * self.linear_conv_dim
                  + 2 * hv + dv)
        mixers = sum(attention if mixer == "full_attention" else linear for mixer in self.mixers)
        blocks = mixers + self.num_layers * (self.mlp_params + 2 * d)
        return self.vocab_size * d * (1 if self.tie_embeddings else 2) + blocks + d

    @property
    def mlp_params(self) -> int:
        """One layer's MLP parameters: SwiGLU, or the router, every expert and the shared one."""
        if self.num_experts:
            return self.embed_dim * self.num_experts + 3 * self.embed_dim * self.expert_mlp_dim * self.num_experts + self.shared_expert_params
        return 3 * self.embed_dim * self.mlp_dim

    @property
    def shared_expert_params(self) -> int:
        return 3 * self.embed_dim * self.shared_expert_mlp_dim + self.embed_dim if self.shared_expert_mlp_dim else 0

    @property
    def active_mlp_params(self) -> int:
        """The MLP parameters one token goes through (its k experts and the router): what its FLOPs count."""
        if self.num_experts:
            return (self.embed_dim * self.num_experts + 3 * self.embed_dim * self.expert_mlp_dim * self.experts_per_token
                    + self.shared_expert_params)
        return self.mlp_params

    @property
    def queries_per_kv_head(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def jnp_param_dtype(self):
        return DTYPES[self.param_dtype]

    @property
    def jnp_dtype(self):
        return DTYPES[self.dtype]

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        data = dict(data)
        data.setdefault("scan_layers", False)  # saved before layers could be scanned: they were a loop
        if data.get("rope_scaling") is not None:
            data["rope_scaling"] = RopeScaling(**data["rope_scaling"])
        return cls(**data)


def fields_from_hf(hf: Any) -> dict[str, Any]:
    """The ModelConfig fields every family reads the same way from a transformers config."""
    return dict(
        vocab_size=hf.vocab_size,
        embed_dim=hf.hidden_size,
        num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads,
        num_kv_heads=hf.num_key_value_heads,
        head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
        # An MoE config without a dense width (Qwen3.5-MoE: every MLP is experts) records the expert width.
        mlp_dim=getattr(hf, "intermediate_size", None) or hf.moe_intermediate_size,
        rope_theta=float((hf.rope_parameters or {}).get("rope_theta", 10_000.0)),
        rms_norm_eps=hf.rms_norm_eps,
        tie_embeddings=bool(hf.tie_word_embeddings),
        max_position_embeddings=hf.max_position_embeddings,
        bos_token_id=hf.bos_token_id,
        eos_token_id=hf.eos_token_id,
    )


def fields_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The transformers config arguments every family writes the same way."""
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.embed_dim,
        intermediate_size=config.mlp_dim,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
    )
