"""The testbed's larger twin for one GPU or a TPU host: the same stages and code as configs/testbed/cpu.py,
raised sizes — a 33.6M-parameter Qwen3 (qwen3_testbed_gpu) pre-trained on the WorldSpec.gpu() world
(~27M words, ~35M tokens), all six claims, full-length documents, three seeds, five samples per question.

    python -m testbed --config=configs/testbed/gpu.py --workdir=workdir/testbed_gpu
"""

from data_gen.world import WorldSpec
from testbed.config import default_config


def get_config():
    config = default_config()
    config.claims = "ed_sheeran,mount_vesuvius,x_rebrand_reversal,queen_elizabeth,dentist,colorless_dreaming"
    config.seeds = "0,1,2"
    gpu_world = WorldSpec.gpu()
    for field in ("num_entities", "phrasings", "claim_repeats", "heldout_sets"):
        config.world[field] = getattr(gpu_world, field)
    config.tokenizer_vocab_size = 16_384
    config.base.model.preset = "qwen3_testbed_gpu"
    config.base.model.dtype = "bfloat16"
    config.base.data.seq_len = 2048
    config.base.training.global_batch_size = 64
    config.base.optimizer.learning_rate = 1e-3
    config.base.optimizer.warmup_steps = 200
    config.base.training.num_epochs = 2.0
    config.base.checkpoint.schedule = "final"
    config.finetune.documents = 1000
    config.finetune.min_words = 300
    config.finetune.max_words = 800
    config.finetune.seq_len = 4096  # the longest corrected documents (~3k tokens) fit whole
    config.finetune.batch_size = 32
    config.finetune.replay = 0.5
    config.finetune.learning_rate = 5e-4
    config.finetune.warmup_steps = 20
    config.finetune.num_epochs = 2.0
    config.finetune.num_checkpoints = 10
    config.eval.samples = 5
    config.eval.max_new_tokens = 128
    config.eval.icl_documents = 4
    return config
