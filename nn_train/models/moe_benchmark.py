"""One MoE layer's forward+backward under each dispatch: ragged, blocked and the dense reference.

    python -m nn_train.models.moe_benchmark --experts=16 --top_k=2 --embed_dim=256 --expert_mlp_dim=256 --tokens=2048

Every dispatch runs the same layer (same weights, same tokens) forward and backward (gradients for
the input, the router and every expert), jitted, on this host's default backend. The dense one
runs every expert on every token (E/k times the useful work) and is the named baseline: each
ratio is dense / dispatch seconds (> 1: faster than dense). Temp MiB is XLA's compiled
`memory_analysis()` of the step. Tokens/s counts the tokens through the layer, forward+backward.
"""

from __future__ import annotations

import jax
from absl import app, flags

from nn_train.models import get_config
from nn_train.timing import moe_layer_step

_EXPERTS = flags.DEFINE_integer("experts", 16, "Experts E.")
_TOP_K = flags.DEFINE_integer("top_k", 2, "Experts per token k.")
_EMBED = flags.DEFINE_integer("embed_dim", 256, "Model width D.")
_EXPERT_MLP = flags.DEFINE_integer("expert_mlp_dim", 256, "Expert width F.")
_TOKENS = flags.DEFINE_integer("tokens", 2048, "Tokens per step (batch x length).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute and parameter dtype.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up.")


def main(argv):
    del argv
    e, k, tokens = _EXPERTS.value, _TOP_K.value, _TOKENS.value
    print(f"MoE layer fwd+bwd: E={e} experts, top-{k}, D={_EMBED.value}, F={_EXPERT_MLP.value}, {tokens:,} tokens, "
          f"{_DTYPE.value}, on {jax.devices()[0].platform}; baseline: dense (every expert, {e / k:.0f}x the expert FLOPs)")
    config = get_config("qwen3_moe_tiny", embed_dim=_EMBED.value, num_experts=e, experts_per_token=k,
                        expert_mlp_dim=_EXPERT_MLP.value, dtype=_DTYPE.value, param_dtype=_DTYPE.value)
    results = {d: moe_layer_step(config, d, tokens, _STEPS.value) for d in ("dense", "ragged", "blocked")}
    dense_seconds = results["dense"][0]
    for dispatch, (seconds, temp) in results.items():
        print(f"  {dispatch:<8} {tokens / seconds:>10,.0f} tokens/s  {seconds * 1e3:8.1f} ms/step  temp {temp / 2**20:8.1f} MiB  "
              f"dense / {dispatch} {dense_seconds / seconds:.2f}x")


if __name__ == "__main__":
    app.run(main)
