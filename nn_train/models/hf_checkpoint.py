"""Hugging Face checkpoints in and out: safetensors ↔ our sharded NNX parameters.

    model = load_hf_model("Qwen/Qwen3-1.7B", mesh=mesh)          # hub id (needs network) or local dir
    export_hf_model(model, "out/dir")                             # config.json + (sharded) safetensors

The whole conversion is one table, `hf_key_table(config)`: our parameter path → its Hugging Face
keys and layout. Qwen3 and Llama 3 share the layout; Qwen3 adds the per-head q/k norms; Qwen3-MoE
replaces the MLP by a router (`mlp.gate`) and experts. A parameter stacked from several keys lists
them row-major over its leading `stack` dims: a scanned model's (config.scan_layers) [L, ...]
layer i is slice i; an expert kernel [E, D, F] holds expert e's `mlp.experts.<e>.*` at slice e,
and scanned, [L, E, D, F] holds them all.

  layout "linear": HF stores torch Linear weights [out, in]; ours are [*in_shape, *out_shape]
                   (e.g. a query kernel [D, N, H]), so  ours = W.T.reshape(ours.shape)
  layout "same":   identical array (embeddings, norm scales)
  layout "conv":   a depthwise Conv1d weight [C, 1, K]; ours is [K, C] (one row per tap)

Qwen3.5 checkpoints on the hub are vision-language models: their text model's keys sit under
`model.language_model.` beside a vision tower (`model.visual.`) and a multi-token-prediction head
(`mtp.`). Loading reads the text model's keys under either prefix and leaves the other two unread;
export writes the text-only layout (`Qwen3_5ForCausalLM` / `Qwen3_5MoeForCausalLM`).

Loading reads one tensor at a time from memory-mapped safetensors and places it straight into
its shards with `jax.make_array_from_callback`, so the host never holds more than one tensor
and multi-host meshes work the same way. Before any tensor is read, the checkpoint's keys and
shapes are checked against the model and every mismatch is reported in one error.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple

import jax
import ml_dtypes
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from safetensors import safe_open
from safetensors.numpy import save_file

from nn_train.models import abstract_model, config_from_hf, to_hf_config
from nn_train.models.config import ModelConfig
from nn_train.models.transformer import Transformer
from nn_train.sharding import make_mesh, state_shardings

ParamPath = tuple  # a parameter path in the NNX state, e.g. ("layers", 0, "attn", "q_proj", "kernel")


class HFSource(NamedTuple):
    """Where one of our parameters lives in a Hugging Face checkpoint."""

    keys: tuple[str, ...]  # one key, or one per slice of a stacked parameter (row-major over `stack`)
    layout: str  # "linear" | "same" (module docstring)
    stack: tuple[int, ...] = ()  # leading dims stacked from several keys: (L,) scanned layers, (E,) experts, (L, E) both

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3
# Buffers some exporters write that carry no parameters.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_NUMPY_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


class CheckpointError(ValueError):
    """A checkpoint does not match the model; the message lists every mismatch."""


def _layer_entries(config: ModelConfig, mixer: str) -> tuple[dict[ParamPath, tuple[str, str]], dict[ParamPath, str]]:
    """One layer's table: (path within the block → (HF key suffix, layout), and for routed experts
    path → the HF key suffix each expert has)."""
    layer_table: dict[ParamPath, tuple[str, str]] = {}
    layer_table[("input_norm", "scale")] = ("input_layernorm.weight", "same")
    layer_table[("post_attn_norm", "scale")] = ("post_attention_layernorm.weight", "same")
    if mixer == "linear_attention":  # Qwen3.5's Gated DeltaNet, named as transformers names it
        for proj in ("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj"):
            layer_table[("linear_attn", proj, "kernel")] = (f"linear_attn.{proj}.weight", "linear")
        layer_table[("linear_attn", "conv")] = ("linear_attn.conv1d.weight", "conv")
        for name in ("A_log", "dt_bias"):
            layer_table[("linear_attn", name)] = (f"linear_attn.{name}", "same")
        layer_table[("linear_attn", "norm", "scale")] = ("linear_attn.norm.weight", "same")
    else:
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            layer_table[("attn", proj, "kernel")] = (f"self_attn.{proj}.weight", "linear")
        if config.qk_norm:
            layer_table[("attn", "q_norm", "scale")] = ("self_attn.q_norm.weight", "same")
            layer_table[("attn", "k_norm", "scale")] = ("self_attn.k_norm.weight", "same")
    expert_table: dict[ParamPath, str] = {}
    if config.num_experts:
        layer_table[("mlp", "router", "kernel")] = ("mlp.gate.weight", "linear")
        for proj in ("gate_proj", "up_proj", "down_proj"):
            expert_table[("mlp", "experts", proj)] = f"{proj}.weight"
        if config.shared_expert_mlp_dim:
            for proj in ("gate_proj", "up_proj", "down_proj"):
                layer_table[("mlp", "shared_expert", proj, "kernel")] = (f"mlp.shared_expert.{proj}.weight", "linear")
            layer_table[("mlp", "shared_expert_gate", "kernel")] = ("mlp.shared_expert_gate.weight", "linear")
    else:
        for proj in ("gate_proj", "up_proj", "down_proj"):
            layer_table[("mlp", proj, "kernel")] = (f"mlp.{proj}.weight", "linear")
    return layer_table, expert_table


def hf_key_table(config: ModelConfig) -> dict[ParamPath, HFSource]:
    """Our parameter path → its Hugging Face source, for every parameter of `config`."""
    table = {("embed", "embedding"): HFSource(("model.embed_tokens.weight",), "same")}
    experts = range(config.num_experts)
    expert_keys = lambda i, suffix: tuple(f"model.layers.{i}.mlp.experts.{e}.{suffix}" for e in experts)
    period = config.layer_period
    if config.scan_layers:
        # Stacked over the G = L / period groups: group position j's slice g is layer g * period + j
        # (period 1, every layer alike: paths "layers.attn...", slice i layer i).
        groups = config.num_layers // period
        for j in range(period):
            prefix = ("layers",) if period == 1 else ("layers", "blocks", j)
            members = [g * period + j for g in range(groups)]
            layer_table, expert_table = _layer_entries(config, config.mixers[j])
            for path, (suffix, layout) in layer_table.items():
                table[(*prefix, *path)] = HFSource(tuple(f"model.layers.{i}.{suffix}" for i in members), layout, (groups,))
            for path, suffix in expert_table.items():
                keys = tuple(key for i in members for key in expert_keys(i, suffix))
                table[(*prefix, *path)] = HFSource(keys, "linear", (groups, config.num_experts))
    else:
        for i, mixer in enumerate(config.mixers):
            layer_table, expert_table = _layer_entries(config, mixer)
            table.update({("layers", i, *path): HFSource((f"model.layers.{i}.{suffix}",), layout) for path, (suffix, layout) in layer_table.items()})
            table.update({("layers", i, *path): HFSource(expert_keys(i, suffix), "linear", (config.num_experts,)) for path, suffix in expert_table.items()})
    table[("final_norm", "scale")] = HFSource(("model.norm.weight",), "same")
    if not config.tie_embeddings:
        table[("lm_head", "kernel")] = HFSource(("lm_head.weight",), "linear")
    return table


def hf_module_name(path: ParamPath) -> str:
    """The Hugging Face module of one of our Dense modules in a layer loop, e.g. ("layers", 3, "attn",
    "q_proj") → "model.layers.3.self_attn.q_proj" (used for PEFT adapter keys; for scanned layers
    pass the layer's index in place of the loop's)."""
    if path == ("lm_head",):
        return "lm_head"
    blocks = {"attn": "self_attn", "mlp": "mlp", "linear_attn": "linear_attn"}
    if len(path) >= 4 and path[0] == "layers" and path[2] in blocks:
        modules = ["gate" if path[2:4] == ("mlp", "router") else name for name in path[3:]]  # an MoE router is HF's mlp.gate
        return ".".join([f"model.layers.{path[1]}", blocks[path[2]], *modules])
    raise KeyError(f"{path} is not a Dense module with a Hugging Face counterpart")


def to_hf_layout(array: np.ndarray, layout: str, in_dims: int) -> np.ndarray:
    """Our array → the Hugging Face tensor (a [out, in] matrix for Linear weights)."""
    if layout == "same":
        return array
    if layout == "conv":
        return array.T[:, None, :]
    fan_in = math.prod(array.shape[:in_dims])
    return array.reshape(fan_in, -1).T


def from_hf_layout(tensor: np.ndarray, layout: str, shape: tuple[int, ...]) -> np.ndarray:
    if layout == "same":
        return tensor
    if layout == "conv":
        return tensor[:, 0, :].T
    return tensor.T.reshape(shape)


def _hf_shape(shape: tuple[int, ...], layout: str, in_dims: int) -> tuple[int, ...]:
    if layout == "same":
        return shape
    if layout == "conv":
        return (shape[1], 1, shape[0])
    return (math.prod(shape[in_dims:]), math.prod(shape[:in_dims]))


def _in_dims(path: ParamPath) -> int:
    """How many leading dims of a kernel are its input dims (o_proj takes [N, H], out_proj [Hv, Dv])."""
    return 2 if path[-2] in ("o_proj", "out_proj") else 1


# ---------------------------------------------------------------------------------------------
# Loading


def resolve_checkpoint_dir(source: str | os.PathLike) -> Path:
    """A local checkpoint directory, or a hub id downloaded (config + safetensors only)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists() or str(source).startswith((".", "/")) or str(source).count("/") != 1:
        raise FileNotFoundError(f"'{source}' is neither a checkpoint directory nor a Hugging Face hub id (owner/name)")
    import huggingface_hub  # only when a hub id is given: no network use otherwise

    try:
        return Path(huggingface_hub.snapshot_download(str(source), allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # the hub raises many types (offline, gated, not found); one clear message
        raise FileNotFoundError(
            f"'{source}' is not a local directory, and downloading it as a Hugging Face hub id failed "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'})"
        ) from None


_LANGUAGE_MODEL_PREFIX = "model.language_model."  # a vision-language checkpoint's text model (Qwen3.5)
_UNREAD_PREFIXES = ("model.visual.", "mtp.")  # its vision tower and multi-token-prediction head


def _checkpoint_files(directory: Path) -> dict[str, tuple[Path, str]]:
    """Our Hugging Face key (the text-only layout) → (the safetensors file holding it, its key there)."""
    if (directory / INDEX_FILE).is_file():
        weight_map = json.loads((directory / INDEX_FILE).read_text())["weight_map"]
        stored = {key: directory / name for key, name in weight_map.items()}
    elif (directory / SINGLE_FILE).is_file():
        with safe_open(directory / SINGLE_FILE, framework="numpy") as f:
            stored = {key: directory / SINGLE_FILE for key in f.keys()}
    else:
        raise CheckpointError(f"'{directory}' has no {SINGLE_FILE} or {INDEX_FILE}; it is not a safetensors checkpoint")
    files = {}
    for key, file in stored.items():
        if key.startswith(_UNREAD_PREFIXES):
            continue
        ours = "model." + key[len(_LANGUAGE_MODEL_PREFIX):] if key.startswith(_LANGUAGE_MODEL_PREFIX) else key
        files[ours] = (file, key)
    return files


def _tensor_shapes(files: dict[str, tuple[Path, str]]) -> dict[str, tuple[int, ...]]:
    ours_by_stored = {(file, key): ours for ours, (file, key) in files.items()}
    shapes = {}
    for path in sorted({file for file, _ in files.values()}):
        with safe_open(path, framework="numpy") as f:
            for key in f.keys():
                if (path, key) in ours_by_stored:
                    shapes[ours_by_stored[(path, key)]] = tuple(f.get_slice(key).get_shape())
    return shapes


def _check_keys(directory: Path, expected_shapes: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    expected = set(expected_shapes)
    missing = sorted(expected - set(found))
    unexpected = sorted(k for k in set(found) - expected if not k.endswith(_IGNORED_SUFFIXES))
    mismatched = [
        f"{k}: checkpoint {list(found[k])}, model expects {list(expected_shapes[k])}"
        for k in sorted(expected & set(found))
        if found[k] != expected_shapes[k]
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"checkpoint '{directory}' does not match the model config:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = items[:10] + ([f"... and {len(items) - 10} more"] if len(items) > 10 else [])
            lines.append(f"  {len(items)} {title}: " + "; ".join(shown))
    lines.append("  check that the config (preset or config.json) describes this checkpoint")
    raise CheckpointError("\n".join(lines))


def load_hf_model(
    source: str | os.PathLike,
    *,
    config: ModelConfig | None = None,
    mesh: Mesh | None = None,
    **config_overrides,
) -> Transformer:
    """Loads a Hugging Face Qwen3 / Llama 3 checkpoint into our model, sharded over `mesh`.

    `config` defaults to the checkpoint's config.json; `config_overrides` (e.g.
    param_dtype="bfloat16", remat="full") adjust it. Without a mesh, arrays land on the default device.
    """
    directory = resolve_checkpoint_dir(source)
    config = (config or config_from_hf(directory)).replace(**config_overrides)
    graphdef, abstract_state = nnx.split(abstract_model(config))
    if mesh is None:
        mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    shardings = state_shardings(abstract_state, mesh)

    table = hf_key_table(config)
    flat_state = dict(nnx.to_flat_state(abstract_state))
    flat_shardings = dict(nnx.to_flat_state(shardings))
    if set(flat_state) != set(table):  # a programming error, not a user one
        raise AssertionError(f"key table and model disagree: {sorted(set(flat_state) ^ set(table))[:5]}")
    expected_shapes = {}
    for path, source in table.items():
        slice_shape = flat_state[path].get_value().shape[len(source.stack):]
        expected_shapes.update({key: _hf_shape(slice_shape, source.layout, _in_dims(path)) for key in source.keys})
    files = _checkpoint_files(directory)
    _check_keys(directory, expected_shapes, _tensor_shapes(files))

    dtype = _NUMPY_DTYPES[config.param_dtype]
    handles: dict[Path, object] = {}

    def read(key: str, layout: str, shape: tuple[int, ...]) -> np.ndarray:
        file, stored_key = files[key]
        if file not in handles:
            handles[file] = safe_open(file, framework="numpy").__enter__()
        return from_hf_layout(handles[file].get_tensor(stored_key), layout, shape).astype(dtype)

    try:
        for path, source in table.items():
            variable = flat_state[path]
            shape = variable.get_value().shape
            if source.stack:
                slice_shape = shape[len(source.stack):]
                host = np.stack([read(key, source.layout, slice_shape) for key in source.keys]).reshape(shape)
            else:
                host = read(source.keys[0], source.layout, shape)
            sharding = flat_shardings[path].get_value()
            variable.set_value(jax.make_array_from_callback(shape, sharding, lambda index, host=host: host[index]))
            del host
    finally:
        for handle in handles.values():
            handle.__exit__(None, None, None)
    return nnx.merge(graphdef, nnx.from_flat_state(flat_state))


# ---------------------------------------------------------------------------------------------
# Export


def _host_array(array: jax.Array) -> np.ndarray:
    """The full array on this host (gathers across hosts when the mesh spans several)."""
    if jax.process_count() > 1 and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(jax.device_get(array))


def hf_tensors(model: Transformer, dtype: str | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(Hugging Face key, host tensor) for every parameter, one at a time, in table order."""
    config = model.config
    if any(getattr(m, "lora", None) is not None or getattr(m, "unembed_lora", None) is not None for _, m in nnx.iter_modules(model)):
        raise ValueError("the model has LoRA adapters; export merge_lora(model), or the adapters alone with export_peft")
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    np_dtype = _NUMPY_DTYPES[dtype or config.param_dtype]
    for path, source in hf_key_table(config).items():
        host = _host_array(flat[path].get_value())
        slices = host.reshape(-1, *host.shape[len(source.stack):])  # one per key, row-major over the stack
        for key, piece in zip(source.keys, slices, strict=True):
            yield key, np.ascontiguousarray(to_hf_layout(piece, source.layout, _in_dims(path)).astype(np_dtype))


def write_safetensors(tensors: Iterator[tuple[str, np.ndarray]], directory: Path, max_shard_bytes: int) -> None:
    """Writes tensors as one model.safetensors, or shards plus the index json above max_shard_bytes."""
    shards: list[dict[str, np.ndarray]] = [{}]
    shard_bytes, total = 0, 0
    written: list[tuple[str, list[str]]] = []

    def flush() -> None:
        nonlocal shard_bytes
        name = f"shard-{len(written):05d}.tmp"
        save_file(shards[-1], str(directory / name), metadata={"format": "pt"})
        written.append((name, list(shards[-1])))
        shards[-1], shard_bytes = {}, 0

    for key, tensor in tensors:
        if shards[-1] and shard_bytes + tensor.nbytes > max_shard_bytes:
            flush()
        shards[-1][key] = tensor
        shard_bytes += tensor.nbytes
        total += tensor.nbytes
    flush()

    if len(written) == 1:
        (directory / written[0][0]).rename(directory / SINGLE_FILE)
        return
    weight_map = {}
    for i, (name, keys) in enumerate(written):
        final_name = f"model-{i + 1:05d}-of-{len(written):05d}.safetensors"
        (directory / name).rename(directory / final_name)
        weight_map.update({key: final_name for key in keys})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


@contextlib.contextmanager
def staged_directory(out: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yields an empty directory beside `out`; on success it replaces `out` by one rename.

    An export interrupted at any point leaves `out` as it was (no half-written checkpoint).
    """
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"'{out}' already exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def export_hf_model(
    model: Transformer,
    out_dir: str | os.PathLike,
    *,
    dtype: str | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
) -> Path:
    """Writes config.json + safetensors that transformers' AutoModelForCausalLM loads.

    The directory is assembled beside `out_dir` and renamed into place, so an interrupted
    export never leaves a half-written checkpoint. Only process 0 writes on a multi-host run.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"'{out}' already exists and is not empty; pass overwrite=True to replace it")
    tensors = hf_tensors(model, dtype)
    if jax.process_index() != 0:
        for _ in tensors:  # every host must take part in the gathers
            pass
        return out
    with staged_directory(out, overwrite=overwrite) as staging:
        hf_config = to_hf_config(model.config)
        hf_config.dtype = dtype or model.config.param_dtype
        hf_config.save_pretrained(staging)
        write_safetensors(tensors, staging, max_shard_bytes)
    return out
