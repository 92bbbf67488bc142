"""Compile time of the real train step against depth: a loop of layers grows with it, a scan does not.

    python -m nn_train.compile_benchmark --preset=qwen3_small --layers=4,36 [--lora]

For each layout (the Python loop of Blocks, and scan_layers: one jax.lax.scan over stacked
parameters) and each depth, the train step `nn_train.main` runs is lowered and compiled from
abstract parameters (nn_train.plan: nothing is allocated or run) on one CPU device, with the
persistent compilation cache off. It prints the seconds, and per layout the ratio of the deepest
to the shallowest: flat in depth is about 1. The preset's width is kept; only num_layers changes.
"""

from __future__ import annotations

from absl import app, flags

_PRESET = flags.DEFINE_string("preset", "qwen3_small", "Model preset whose width is compiled.")
_LAYERS = flags.DEFINE_list("layers", ["4", "36"], "Depths to compile (36: Qwen3-8B).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 256, "Tokens per row.")
_BATCH = flags.DEFINE_integer("batch", 8, "Rows per step.")
_LORA = flags.DEFINE_bool("lora", True, "LoRA r32 (the paper's recipe) instead of full fine-tuning.")
_REMAT = flags.DEFINE_enum("remat", "full", ["none", "full", "save_dots"], "Rematerialisation of each block.")


def compile_seconds(num_layers: int, scan_layers: bool) -> float:
    from nn_train.config import default_config
    from nn_train.models import get_config
    from nn_train.plan import plan

    config = default_config()
    config.model.preset = _PRESET.value
    config.model.remat = _REMAT.value
    config.lora.enabled = _LORA.value
    config.data.seq_len = _SEQ_LEN.value
    config.training.global_batch_size = _BATCH.value
    config.mesh.num_devices = 1
    model_config = get_config(_PRESET.value, num_layers=num_layers, scan_layers=scan_layers, remat=_REMAT.value,
                              dtype=config.model.dtype, param_dtype=config.model.param_dtype)
    return plan(config, model_config=model_config).compile_seconds


def main(argv):
    del argv
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # every compile is a real one
    depths = sorted(int(n) for n in _LAYERS.value)
    print(f"compile time of the {'LoRA' if _LORA.value else 'full fine-tune'} train step, {_PRESET.value} width, "
          f"{_BATCH.value}x{_SEQ_LEN.value} tokens, remat={_REMAT.value}, one {jax.devices()[0].platform} device:")
    for layout, scan in (("loop", False), ("scan", True)):
        seconds = {n: compile_seconds(n, scan) for n in depths}
        cells = ", ".join(f"{n} layers {s:.1f} s" for n, s in seconds.items())
        print(f"  {layout:4s}  {cells}   {depths[-1]}/{depths[0]} layers: {seconds[depths[-1]] / seconds[depths[0]]:.2f}x")


if __name__ == "__main__":
    app.run(main)
