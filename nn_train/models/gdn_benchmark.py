"""The gated delta rule's forward+backward: the chunked form against the token-by-token recurrence.

    python -m nn_train.models.gdn_benchmark --heads=8 --key_dim=64 --value_dim=64 --batch=2 --lengths=512,2048

Both forms compute the same outputs and final state from the same inputs (q, k, v, the decays g
and the strengths β of nn_train.models.gated_deltanet), jitted, forward and backward (gradients
for every input), on this host's default backend. The recurrent form, a scan over tokens, is the
named baseline: each ratio is recurrent / chunked seconds (> 1: the chunked form is faster). Temp
MiB is XLA's compiled `memory_analysis()` of the step. Tokens/s counts batch x length per step.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from absl import app, flags

from nn_train.models import gated_deltanet as gdn

_HEADS = flags.DEFINE_integer("heads", 8, "Value heads H (the query/key heads, repeated to H).")
_KEY_DIM = flags.DEFINE_integer("key_dim", 64, "Key head dim Dk.")
_VALUE_DIM = flags.DEFINE_integer("value_dim", 64, "Value head dim Dv.")
_BATCH = flags.DEFINE_integer("batch", 2, "Rows per step.")
_LENGTHS = flags.DEFINE_list("lengths", ["512", "2048"], "Row lengths to time.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps after one warm-up.")


def rule_step(rule, batch: int, length: int, heads: int, key_dim: int, value_dim: int):
    """(a jitted fwd+bwd step of `rule`, its inputs): the gradient of Σ out·w + Σ state."""
    keys = jax.random.split(jax.random.key(0), 6)
    q = gdn.l2_normalize(jax.random.normal(keys[0], (batch, length, heads, key_dim))) * key_dim ** -0.5
    k = gdn.l2_normalize(jax.random.normal(keys[1], (batch, length, heads, key_dim)))
    v = jax.random.normal(keys[2], (batch, length, heads, value_dim))
    g = -0.1 * jnp.abs(jax.random.normal(keys[3], (batch, length, heads)))
    beta = jax.nn.sigmoid(jax.random.normal(keys[4], (batch, length, heads)))
    weights = jax.random.normal(keys[5], (batch, length, heads, value_dim))
    resets = jnp.zeros((batch, length), bool).at[:, 0].set(True)
    state = jnp.zeros((batch, heads, key_dim, value_dim))

    def objective(q, k, v, g, beta):
        out, final = rule(q, k, v, g, beta, resets, state)
        return jnp.sum(out * weights) + jnp.sum(final)

    return jax.jit(jax.value_and_grad(objective, argnums=range(5))), (q, k, v, g, beta)


def time_step(step, inputs, steps: int) -> tuple[float, int]:
    """(median seconds per step, compiled temp bytes)."""
    temp = step.lower(*inputs).compile().memory_analysis().temp_size_in_bytes
    jax.block_until_ready(step(*inputs))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step(*inputs))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], temp


def main(argv):
    del argv
    b, h, dk, dv = _BATCH.value, _HEADS.value, _KEY_DIM.value, _VALUE_DIM.value
    print(f"gated delta rule fwd+bwd: {h} heads, Dk={dk}, Dv={dv}, {b} rows, chunks of {gdn.CHUNK_SIZE}, float32, "
          f"on {jax.devices()[0].platform}; baseline: recurrent (a scan over tokens)")
    for length in map(int, _LENGTHS.value):
        results = {name: time_step(*rule_step(rule, b, length, h, dk, dv), _STEPS.value)
                   for name, rule in (("recurrent", gdn.recurrent_gated_delta_rule), ("chunked", gdn.chunked_gated_delta_rule))}
        baseline = results["recurrent"][0]
        for name, (seconds, temp) in results.items():
            print(f"  T={length:<6} {name:<9} {b * length / seconds:>10,.0f} tokens/s  {seconds * 1e3:8.1f} ms/step  "
                  f"temp {temp / 2**20:8.1f} MiB  recurrent / {name} {baseline / seconds:.2f}x")


if __name__ == "__main__":
    app.run(main)
