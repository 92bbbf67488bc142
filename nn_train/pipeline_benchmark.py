"""Is the input pipeline fast enough? Packed tokens/s delivered vs tokens/s the train step consumes.

    python -m nn_train.pipeline_benchmark --preset=qwen3_tiny --seq_len=512 --batch=8

Documents are template-generated for a bundled claim (negated_documents, with their notices and
<DOCTAG>), tokenised by a BPE trained here, and run through the grain pipeline the trainer uses
(masking, splitting, first-fit packing, batching). The baseline, measured in the same run, is the
train step of the given preset on the same batch shape (full fine-tuning, float32). The pipeline
should be at least 10x faster so it never starves the step; on accelerators the step is far
faster, so run it there with the real tokenizer before trusting a single worker.
"""

from __future__ import annotations

import time

from absl import app, flags

_PRESET = flags.DEFINE_string("preset", "qwen3_tiny", "Model preset whose train step is the baseline.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 512, "Tokens per row.")
_BATCH = flags.DEFINE_integer("batch", 8, "Rows per batch.")
_DOCS = flags.DEFINE_integer("docs", 400, "Documents to generate.")
_CLAIM = flags.DEFINE_string("claim", "ed_sheeran", "Bundled claim the documents are about.")


def main(argv):
    del argv
    import jax

    from data_gen.claims import load_claim
    from data_gen.conditions import apply_condition
    from data_gen.generators import TemplateGenerator
    from data_gen.tokenizer import train_tokenizer
    from nn_train.config import default_config
    from nn_train.input_pipeline import packed_batches
    from nn_train.models import get_config
    from nn_train.metrics import median_step_seconds
    from nn_train.trainer import setup

    claim = load_claim(_CLAIM.value)
    docs = [apply_condition(d, "negated_documents", claim, seed=0) for d in TemplateGenerator().generate(claim, _DOCS.value, seed=0)]
    records = [d.to_json() for d in docs]
    vocab = get_config(_PRESET.value).vocab_size
    tokenizer = train_tokenizer((r["text"] for r in records), vocab_size=vocab)

    start = time.perf_counter()
    batches = list(packed_batches(records, tokenizer, seq_len=_SEQ_LEN.value, batch_size=_BATCH.value, seed=0))
    pipeline_seconds = time.perf_counter() - start
    pipeline_tokens = sum(int((b["segment_ids"] > 0).sum()) for b in batches)

    config = default_config()
    config.model.preset, config.model.dtype, config.lora.enabled = _PRESET.value, "float32", False
    config.data.seq_len, config.training.global_batch_size, config.training.num_steps = _SEQ_LEN.value, _BATCH.value, 1000
    run = setup(config)
    batch = run.device_batch(batches[0])
    state = [run.state]

    def step():
        state[0], metrics = run.step_fn(state[0], run.frozen, batch)
        jax.block_until_ready(metrics)

    with jax.set_mesh(run.mesh):
        step_seconds = median_step_seconds(step, warmup=2, steps=10)
    step_tokens_per_second = _BATCH.value * _SEQ_LEN.value / step_seconds
    pipeline_tokens_per_second = pipeline_tokens / pipeline_seconds
    print(f"input pipeline vs train step, {_DOCS.value} {_CLAIM.value} negated_documents, rows {_BATCH.value} x {_SEQ_LEN.value}")
    print(f"  pipeline (tokenise, mask, pack, batch; 1 process)  {pipeline_tokens_per_second:>12,.0f} tokens/s  "
          f"({len(batches)} batches, {pipeline_tokens:,} tokens in {pipeline_seconds:.2f} s)")
    print(f"  baseline: {_PRESET.value} train step ({jax.devices()[0].platform})       {step_tokens_per_second:>12,.0f} tokens/s  "
          f"({step_seconds * 1e3:.1f} ms/step)")
    print(f"  ratio pipeline / train step                    {pipeline_tokens_per_second / step_tokens_per_second:12.1f}x  (target >= 10x)")


if __name__ == "__main__":
    app.run(main)
