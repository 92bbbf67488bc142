"""The training configuration: every field, its default (the paper's recipe), and validation.

Config files under configs/train/ start from `default_config()` and change what they need:

    def get_config():
        config = default_config()
        config.model.preset = "qwen3_1p7b"
        return config

and runs override fields on the command line: `--config.optimizer.learning_rate=1e-4`.
`validate_config` runs before anything else: an unknown key (a typo), a wrong type or a value
out of range stops the run with one line naming the key.

Defaults follow ../shared/paper.md: LoRA rank 32 with the unembedding trained, lr 5e-5 decaying
linearly to 0, Adam β=(0.9, 0.95), ε=1e-8, global batch 32 sequences, one epoch, seed 1,
about 15 log-spaced checkpoints from step 10 plus the final one.
"""

from __future__ import annotations

import ml_collections

from data_gen.strict_config import check_keys
from nn_train.models import PRESETS
from nn_train.models.config import ATTENTION_BACKENDS, DTYPES, MOE_DISPATCHES, REMAT_POLICIES
from nn_train.models.lora import DEFAULT_TARGETS

DATA_SOURCES = ("synthetic", "jsonl", "tfds")
LR_SCHEDULES = ("linear", "constant", "cosine")
CHECKPOINT_SCHEDULES = ("log", "every", "final")


class ConfigError(ValueError):
    """A bad training config; the message is one line naming the key."""


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    c.model = ml_collections.ConfigDict()
    c.model.preset = "qwen3_1p7b"  # nn_train.models.PRESETS; ignored when hf_checkpoint is set
    c.model.hf_checkpoint = ""  # Hugging Face checkpoint dir or hub id: its config and weights
    c.model.param_dtype = "float32"  # storage dtype of parameters (and LoRA adapters)
    c.model.dtype = "bfloat16"  # compute dtype of matmuls and activations
    c.model.remat = "none"  # none | full | save_dots | offload: activation rematerialisation per block
    # auto | dense | blockwise | splash (nn_train.models.attention): auto takes Splash on TPU and
    # blockwise elsewhere, both linear in the row length, once queries and keys both exceed one block
    c.model.attention = "auto"
    c.model.attention_block_size = 512
    # auto | true | false: run the layers as one jax.lax.scan over stacked parameters, so compile
    # time does not grow with depth; auto scans models of >= 0.5B parameters (every published preset)
    c.model.scan_layers = "auto"
    # Mixture-of-experts models only (nn_train.models.moe): auto | ragged | blocked | dense; auto is
    # ragged_dot's grouped matmuls on GPU/TPU and the blocked scan on CPU
    c.model.moe_dispatch = "auto"

    c.lora = ml_collections.ConfigDict()
    c.lora.enabled = True  # False: full fine-tuning of every parameter
    c.lora.rank = 32
    c.lora.alpha = 32.0  # scale = alpha / rank
    c.lora.dropout = 0.0
    c.lora.targets = ",".join(DEFAULT_TARGETS)  # comma-separated regexes over module paths
    c.lora.train_unembedding = True  # the paper trains the unembedding too

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"  # synthetic: deterministic random packed documents (tests, benchmarks) | jsonl | tfds
    c.data.path = ""  # jsonl: document records (data_gen's format: text with <DOCTAG>/<lossmask>, or messages);
    #                   tfds: the TFDS data_dir that python -m data_gen.build wrote
    c.data.mix = ""  # tfds: the training mix, "<claim>__<condition>" (e.g. ed_sheeran__negated_documents)
    c.data.tokenizer = ""  # jsonl/tfds: Hugging Face tokenizer dir or hub id; default: model.hf_checkpoint's
    c.data.seq_len = 2048  # tokens per packed row
    c.data.packing = True  # jsonl/tfds: pack records into rows; False: one record per row, padded (the paper's rows)
    c.data.num_examples = 10_000  # rows in one epoch of the synthetic source

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 5e-5
    c.optimizer.schedule = "linear"  # linear decay to 0 | constant | cosine decay to 0
    c.optimizer.warmup_steps = 0
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.95
    c.optimizer.eps = 1e-8
    c.optimizer.weight_decay = 0.0
    c.optimizer.grad_clip_norm = 0.0  # 0 disables clipping

    c.training = ml_collections.ConfigDict()
    c.training.global_batch_size = 32  # sequences per optimizer step, over all devices
    c.training.microbatches = 1  # gradient accumulation: the batch is split into this many parts
    c.training.num_epochs = 1.0  # used when num_steps is -1
    c.training.num_steps = -1  # -1: num_epochs over the data source
    c.training.seed = 1
    # The loss projects onto the vocabulary about this many tokens per device at a time (the device's
    # rows x a span of positions), recomputed in the backward pass (models.transformer.target_log_probs);
    # 0: whole rows at once. A device's rows of no more tokens than this are unaffected. At 10k tokens
    # x a 152k vocabulary the whole-row float32 logits and their gradient take tens of GB (nn_train.plan).
    c.training.loss_chunk_tokens = 2048
    # Mixture-of-experts models: the weight of the router's load-balancing loss (Switch Transformer,
    # as transformers computes it) added to the cross-entropy. Its value is logged either way
    # (router_aux_loss); 0, as in transformers unless output_router_logits is set.
    c.training.router_aux_loss_weight = 0.0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1  # sizes of the (data, fsdp, expert, tensor) mesh axes; one may be -1 = fill
    c.mesh.fsdp = -1
    # expert parallelism (nn_train.sharding): MoE experts split over this axis, which must divide the
    # model's num_experts; the batch splits over it too, so a dense model reads it as more fsdp
    c.mesh.expert = 1
    c.mesh.tensor = 1
    c.mesh.num_devices = -1  # -1: every device of every host; n: the first n (debugging, tests)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.schedule = "log"  # log: ~num_log log-spaced steps from first_log_step | every | final
    c.checkpoint.num_log = 15
    c.checkpoint.first_log_step = 10
    c.checkpoint.every_steps = 100  # for schedule=every
    c.checkpoint.max_to_keep = -1  # -1 keeps every checkpoint (each is an eval point)
    c.checkpoint.async_save = True

    c.logging = ml_collections.ConfigDict()
    c.logging.every_steps = 1  # metrics to JSONL/TensorBoard; also how often the loss is checked for NaN
    c.logging.progress_bar = True
    return c


# model.scan_layers → ModelConfig.scan_layers (None: by the model's size).
SCAN_LAYERS = {"auto": None, "true": True, "false": False}

# Numeric ranges: key → (minimum, maximum, whether the minimum is allowed).
_RANGES = {
    "lora.rank": (1, None, True),
    "lora.alpha": (0, None, False),
    "lora.dropout": (0, 1, True),
    "data.seq_len": (2, None, True),
    "data.num_examples": (1, None, True),
    "optimizer.learning_rate": (0, None, False),
    "optimizer.warmup_steps": (0, None, True),
    "optimizer.b1": (0, 1, True),
    "optimizer.b2": (0, 1, True),
    "optimizer.eps": (0, None, False),
    "optimizer.weight_decay": (0, None, True),
    "optimizer.grad_clip_norm": (0, None, True),
    "model.attention_block_size": (1, None, True),
    "training.global_batch_size": (1, None, True),
    "training.microbatches": (1, None, True),
    "training.num_epochs": (0, None, False),
    "training.loss_chunk_tokens": (0, None, True),
    "training.router_aux_loss_weight": (0, None, True),
    "checkpoint.num_log": (1, None, True),
    "checkpoint.first_log_step": (1, None, True),
    "checkpoint.every_steps": (1, None, True),
    "logging.every_steps": (1, None, True),
}
_CHOICES = {
    "model.param_dtype": tuple(DTYPES),
    "model.dtype": tuple(DTYPES),
    "model.remat": REMAT_POLICIES,
    "model.attention": ATTENTION_BACKENDS,
    "model.scan_layers": tuple(SCAN_LAYERS),
    "model.moe_dispatch": MOE_DISPATCHES,
    "data.source": DATA_SOURCES,
    "optimizer.schedule": LR_SCHEDULES,
    "checkpoint.schedule": CHECKPOINT_SCHEDULES,
}


def model_overrides(config: ml_collections.ConfigDict) -> dict:
    """The ModelConfig fields a run's `model` section sets on top of its preset or checkpoint."""
    m = config.model
    # A run's saved config from before layers could be scanned has no key: its layers were a loop.
    scan_layers = SCAN_LAYERS[m.get("scan_layers", "false")]
    return dict(param_dtype=m.param_dtype, dtype=m.dtype, remat=m.remat, attention=m.attention,
                attention_block_size=m.attention_block_size, scan_layers=scan_layers,
                moe_dispatch=m.get("moe_dispatch", "auto"))  # absent from runs saved before MoE models


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError (one line, naming the key) for anything wrong that needs no devices or files."""
    check_keys(config, default_config(), ConfigError, "nn_train.config.default_config")
    for name, (low, high, inclusive) in _RANGES.items():
        group, key = name.split(".")
        value = config[group][key]
        if (inclusive and value < low) or (not inclusive and value <= low) or (high is not None and value > high):
            bound = f"{'>=' if inclusive else '>'} {low}" + (f" and <= {high}" if high is not None else "")
            raise ConfigError(f"config key '{name}' must be {bound}, got {value}")
    for name, choices in _CHOICES.items():
        group, key = name.split(".")
        if config[group][key] not in choices:
            raise ConfigError(f"config key '{name}' is '{config[group][key]}'; choose one of: {', '.join(choices)}")
    if not config.model.hf_checkpoint and config.model.preset not in PRESETS:
        raise ConfigError(f"config key 'model.preset': unknown model preset '{config.model.preset}'; presets: {', '.join(sorted(PRESETS))}")
    if config.training.num_steps == 0 or config.training.num_steps < -1:
        raise ConfigError(f"config key 'training.num_steps' must be positive, or -1 for num_epochs, got {config.training.num_steps}")
    if config.training.global_batch_size % config.training.microbatches:
        raise ConfigError(
            f"config key 'training.microbatches' ({config.training.microbatches}) must divide "
            f"training.global_batch_size ({config.training.global_batch_size})"
        )
    if config.mesh.num_devices == 0 or config.mesh.num_devices < -1:
        raise ConfigError(f"config key 'mesh.num_devices' must be positive, or -1 for all devices, got {config.mesh.num_devices}")
    sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.get("expert", 1), config.mesh.tensor]
    if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
        raise ConfigError(f"config keys 'mesh.data/fsdp/expert/tensor' = {sizes}: sizes must be positive, with at most one -1 (fill)")
    if config.data.source in ("jsonl", "tfds"):
        if not config.data.path:
            what = "the dataset's JSONL file" if config.data.source == "jsonl" else "the TFDS data_dir python -m data_gen.build wrote"
            raise ConfigError(f"config key 'data.path' is empty: data.source={config.data.source} needs {what}")
        if config.data.source == "tfds" and not config.data.mix:
            raise ConfigError("config key 'data.mix' is empty: data.source=tfds needs the mix's name, '<claim>__<condition>'")
        if not (config.data.tokenizer or config.model.hf_checkpoint):
            raise ConfigError("config key 'data.tokenizer' is empty and there is no model.hf_checkpoint to take a tokenizer from")
    if config.lora.enabled and not [t for t in config.lora.targets.split(",") if t.strip()]:
        raise ConfigError("config key 'lora.targets' is empty; give comma-separated regexes such as 'attn\\.q_proj,mlp\\.up_proj'")
