"""The CPU testbed's base model (issue 7, in progress): qwen3_small (4.2M parameters, vocab 4096)
pre-trained from scratch, one pass over the generated world corpus
(`python -m data_gen.world --out=workdir/testbed/world`) with a tokenizer trained on it
(`python -m data_gen.tokenizer --corpus=workdir/testbed/world/world_train.jsonl --vocab_size=4096
--out=workdir/testbed/tokenizer`). bf16 compute: about twice the f32 speed on CPUs with bf16 units
(the feasibility study's); on this project's 2-core dev machine (no AVX512-BF16) both run at
~1,850 tokens/s, so one pass over the default world's ~2.7M tokens takes ~25 minutes there."""

from nn_train.config import default_config


def get_config():
    config = default_config()
    config.model.preset = "qwen3_small"
    config.model.dtype = "bfloat16"
    config.lora.enabled = False
    config.data.source = "jsonl"
    config.data.path = "workdir/testbed/world/world_train.jsonl"
    config.data.tokenizer = "workdir/testbed/tokenizer"
    config.data.seq_len = 1024
    config.optimizer.learning_rate = 3e-3
    config.optimizer.warmup_steps = 20
    config.optimizer.grad_clip_norm = 1.0
    config.training.global_batch_size = 8
    config.checkpoint.num_log = 8
    return config
