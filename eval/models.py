"""Loading what to evaluate: the checkpoints of a nn_train run, or a Hugging Face checkpoint.

    checkpoint_steps("workdir/run")                          # [5, 10, 15, 20]: the saved steps
    loaded = load_run("workdir/run", step="latest")          # LoadedModel: model, tokenizer, name, step
    for loaded in iter_run("workdir/run", steps="all"): ...  # every saved step; the base is built once
    loaded = load_hf("checkpoints/Qwen3-1.7B")               # config.json + safetensors + tokenizer files
    loaded = load(path, step=...)                            # either, by what the directory holds
    sampler = loaded.sampler(mesh=mesh)                      # eval.sampler.Sampler, named after it

A run is rebuilt from the full config its checkpoints carry (meta JSON): a LoRA run rebuilds the
frozen base exactly as nn_train.trainer.build_model does (the preset initialised with the run's
seed, or the Hugging Face checkpoint), restores the trained adapters and, by default, folds them
into the kernels (nn_train.models.lora.merge_lora), so sampling pays nothing for LoRA. A full
fine-tune restores every parameter into an abstract model and never builds the base. Only the
parameters are read from Orbax, never the optimizer state.

The tokenizer of a run comes from config.data.tokenizer, else model.hf_checkpoint, unless one is
passed. Every failure a user can cause is a `ModelLoadError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import jax
import ml_collections
import orbax.checkpoint as ocp
import transformers
from flax import nnx
from jax.sharding import Mesh

from common.paths import PathError, local_copy, local_source, resolve
from eval.sampler import Sampler
from nn_train.config import ConfigError
from nn_train.models import abstract_model
from nn_train.models.config import ModelConfig
from nn_train.models.hf_checkpoint import CheckpointError, load_hf_model
from nn_train.models.lora import merge_lora
from nn_train.models.transformer import Transformer
from nn_train.sharding import make_mesh, state_shardings


class ModelLoadError(Exception):
    """What was asked for cannot be loaded (no checkpoint, no such step, no tokenizer); one line."""


@dataclasses.dataclass
class LoadedModel:
    """A model ready to evaluate, with where it came from."""

    model: Transformer
    tokenizer: Any  # a transformers tokenizer
    name: str  # GenerationBackend.name: "<run dir>@<step>" or the Hugging Face directory's name
    step: int  # the training step; -1 for a Hugging Face checkpoint
    source: str  # the workdir or checkpoint directory
    run_config: ml_collections.ConfigDict | None = None  # the run's full training config
    mesh: Mesh | None = None  # the mesh it was loaded onto, if one was given

    def sampler(self, **options: Any) -> Sampler:
        """A Sampler of this model, named after it, on its mesh (options: Sampler's)."""
        return Sampler(self.model, self.tokenizer, **{"name": self.name, "mesh": self.mesh, **options})


def checkpoint_steps(workdir: str | Path) -> list[int]:
    """The steps saved under `workdir`/checkpoints, ascending (unfinished saves are not listed:
    Orbax writes to a temporary name and renames only when complete)."""
    directory = _resolve(workdir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "state").is_dir())


def load(source: str | Path, step: int | str = "latest", *, mesh: Mesh | None = None, dtype: str | None = None,
         param_dtype: str | None = None, tokenizer: Any = None, merge: bool = True) -> LoadedModel:
    """A nn_train workdir (it has checkpoints/) at `step`, or a Hugging Face checkpoint directory
    (`step` and `merge` then do not apply); the options are iter_run's."""
    path = _resolve(source)
    if (path / "checkpoints").is_dir():
        return load_run(path, step, mesh=mesh, dtype=dtype, param_dtype=param_dtype, tokenizer=tokenizer, merge=merge)
    if (path / "config.json").is_file():
        return load_hf(path, mesh=mesh, dtype=dtype, param_dtype=param_dtype, tokenizer=tokenizer)
    raise ModelLoadError(f"no checkpoint in {path / 'checkpoints'}; train first or pass an HF directory")


def load_run(workdir: str | Path, step: int | str = "latest", **options: Any) -> LoadedModel:
    """One saved step of a run ("latest" or a step number); the options are iter_run's."""
    return next(iter_run(workdir, [step], **options))


def iter_run(
    workdir: str | Path,
    steps: Sequence[int | str] | str = "all",
    *,
    mesh: Mesh | None = None,
    dtype: str | None = None,
    param_dtype: str | None = None,
    tokenizer: Any = None,
    merge: bool = True,
) -> Iterator[LoadedModel]:
    """The run's models at `steps` ("all", or step numbers and "latest"), built once and restored per step.

    mesh: where to place the model (default: the first device). dtype / param_dtype: compute and
    storage dtype overrides (default: the run's; e.g. dtype="float32" on CPU, param_dtype="bfloat16"
    to halve memory — restored arrays are cast). tokenizer: a tokenizer or a path, instead of the
    run's own. merge: fold LoRA adapters into the kernels (False keeps them).
    """
    workdir = _resolve(workdir)  # a local path, or a bucket URL Orbax reads directly
    saved = checkpoint_steps(workdir)
    if not saved:
        raise ModelLoadError(f"no checkpoint in {workdir / 'checkpoints'}; train first or pass an HF directory")
    wanted = _resolve_steps(workdir, saved, steps)
    given_mesh = mesh
    mesh = mesh if mesh is not None else make_mesh(1, 1, 1, devices=jax.devices()[:1])
    meta = _read_meta(workdir, wanted[0])
    config = ml_collections.ConfigDict(meta["config"])
    config.model.dtype = dtype or config.model.dtype
    config.model.param_dtype = param_dtype or config.model.param_dtype
    config.model.remat = "none"  # no backward pass at evaluation
    tokenizer = _run_tokenizer(config, workdir, tokenizer)

    if config.lora.enabled:
        from nn_train.trainer import build_model  # the training loop's imports only when a base is rebuilt

        try:
            model = build_model(config, mesh)
        except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as e:
            raise ModelLoadError(f"cannot rebuild the base model of {workdir}: {e}") from None
        trainable = nnx.LoRAParam
    else:  # every parameter comes from the checkpoint: build nothing
        model_config = ModelConfig.from_dict({k: v for k, v in meta["model"].items() if k != "source"})
        model = abstract_model(model_config.replace(dtype=config.model.dtype, param_dtype=config.model.param_dtype, remat="none"))
        trainable = nnx.Param
    _check_vocab(tokenizer, model.config, workdir)
    graphdef, params, rest = nnx.split(model, trainable, ...)
    shardings = state_shardings(params, mesh)
    target = nnx.to_pure_dict(jax.tree.map(
        lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s), params, shardings))

    manager = _manager(workdir)
    try:
        for step in wanted:
            restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
                {"params": target}, restore_args={"params": jax.tree.map(_restore_args, target)}, partial_restore=True)))
            nnx.replace_by_pure_dict(params, restored["state"]["params"])
            stepped = nnx.merge(graphdef, params, rest)
            if config.lora.enabled and merge:
                stepped = merge_lora(stepped)
                state = nnx.state(stepped)
                nnx.update(stepped, jax.device_put(state, state_shardings(state, mesh)))
            yield LoadedModel(stepped, tokenizer, f"{workdir.name}@{step}", step, str(workdir), config, given_mesh)
    finally:
        manager.close()


def load_hf(directory: str | Path, *, mesh: Mesh | None = None, dtype: str | None = None, param_dtype: str | None = None,
            tokenizer: Any = None) -> LoadedModel:
    """A Hugging Face checkpoint directory (config.json + safetensors) with its own tokenizer
    (or `tokenizer`); dtype / param_dtype override the compute and storage dtypes."""
    path = local_copy(_resolve(directory))  # safetensors and tokenizers open local files: a bucket's are copied once
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"no config.json in '{path}'; pass a Hugging Face checkpoint directory or a nn_train workdir")
    overrides = {k: v for k, v in (("dtype", dtype), ("param_dtype", param_dtype)) if v}
    try:
        model = load_hf_model(path, mesh=mesh, **overrides)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise ModelLoadError(f"cannot load the Hugging Face checkpoint '{path}': {e}") from None
    tokenizer = load_tokenizer(tokenizer if tokenizer is not None else path)
    _check_vocab(tokenizer, model.config, path)
    return LoadedModel(model, tokenizer, path.name, -1, str(path), mesh=mesh)


def load_tokenizer(source: Any) -> Any:
    """A tokenizer object as is, or AutoTokenizer.from_pretrained(source) with a one-line error."""
    if not isinstance(source, (str, Path)):
        return source
    try:
        return transformers.AutoTokenizer.from_pretrained(local_source(str(source), what="tokenizer"))
    except PathError as e:
        raise ModelLoadError(str(e)) from None
    except (OSError, ValueError, TypeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load a tokenizer from '{source}': {reason}") from None


# ---------------------------------------------------------------------------------------------


def _resolve_steps(workdir: Path, saved: list[int], steps: Sequence[int | str] | str) -> list[int]:
    if steps == "all":
        return saved
    if isinstance(steps, (int, str)):
        steps = [steps]
    resolved = []
    for step in steps:
        if step == "latest":
            step = saved[-1]
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise ModelLoadError(f"step '{step}' is not a number, 'latest' or 'all'") from None
        if step not in saved:
            raise ModelLoadError(f"step {step} is not in {workdir / 'checkpoints'}; saved steps: {', '.join(map(str, saved))}")
        resolved.append(step)
    return resolved


def _resolve(source: str | Path):
    try:
        return resolve(source, what="run")
    except PathError as e:
        raise ModelLoadError(str(e)) from None


def _manager(workdir: Path) -> ocp.CheckpointManager:
    # PyTreeCheckpointHandler (what StandardSave wrote, seen through the general handler) allows a
    # partial restore: the params subtree alone, the optimizer state left on disk. Nothing is
    # saved through this manager (read_only=True would say so, with a warning per option it resets).
    return ocp.CheckpointManager(
        workdir / "checkpoints",
        item_handlers={"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(create=False),
    )


def _read_meta(workdir: Path, step: int) -> dict:
    path = workdir / "checkpoints" / str(step) / "meta" / "metadata"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"checkpoint {step} of {workdir} has no readable run metadata ({path}: {type(e).__name__})") from None
    if "config" not in meta or "model" not in meta:
        raise ModelLoadError(f"checkpoint {step} of {workdir} was not written by nn_train (its metadata has no config)")
    return meta


def _restore_args(leaf: jax.ShapeDtypeStruct) -> ocp.ArrayRestoreArgs:
    return ocp.ArrayRestoreArgs(sharding=leaf.sharding, global_shape=leaf.shape, dtype=leaf.dtype)


def _run_tokenizer(config: ml_collections.ConfigDict, workdir: Path, tokenizer: Any) -> Any:
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    source = config.data.tokenizer or config.model.hf_checkpoint
    if not source:
        raise ModelLoadError(
            f"run {workdir} names no tokenizer (config.data.tokenizer and model.hf_checkpoint are empty, "
            "e.g. synthetic data); pass tokenizer=")
    return load_tokenizer(source)


def _check_vocab(tokenizer: Any, config: ModelConfig, source: Path) -> None:
    if len(tokenizer) > config.vocab_size:
        raise ModelLoadError(f"the tokenizer's {len(tokenizer)} tokens do not fit the vocabulary of {config.vocab_size} of {source}")

