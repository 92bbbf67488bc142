"""The testbed's larger twin for one GPU or a TPU host: the same stages, competence check and validity
thresholds as configs/testbed/cpu.py, raised sizes — a 33.6M-parameter Qwen3 (qwen3_testbed_gpu)
pre-trained in bf16 on the WorldSpec.gpu() world (~27M words), all six claims, three seeds.

    python -m testbed --config=configs/testbed/gpu.py --workdir=workdir/testbed_gpu
    python -m testbed --config=configs/testbed/gpu.py:toy --workdir=/tmp/gpu_toy   # the same config at toy sizes (CPU, tests)

The toy variant changes sizes only (world, steps, rows, documents), never the model, dtype or code
path, so tests/testbed runs this file on CPU and it runs unchanged the day an accelerator is there.
"""

from data_gen.world import WorldSpec
from testbed.config import default_config


def get_config(variant: str = ""):
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
    config.finetune.seq_len = 4096  # the longest corrected documents (~3k tokens) fit whole, one per row
    config.finetune.batch_size = 32
    config.finetune.replay = 0.5
    config.finetune.learning_rate = 5e-4
    config.finetune.warmup_steps = 20
    config.finetune.num_epochs = 2.0
    config.finetune.num_checkpoints = 10
    config.competence.questions = 400
    config.eval.samples = 5
    config.eval.max_new_tokens = 128
    config.eval.icl_documents = 4
    if variant == "toy":
        _shrink(config)
    elif variant:
        raise ValueError(f"configs/testbed/gpu.py has one variant, 'toy'; got '{variant}'")
    return config


def _shrink(config) -> None:
    """Toy sizes for a CPU test: a world of 40 entities, a few steps, a few short documents per claim."""
    config.claims = "ed_sheeran,dentist"
    config.conditions = "positive_documents,local_negations"
    config.seeds = "0"
    config.world.num_entities = 40
    config.world.phrasings = 2
    config.world.claim_repeats = 1
    config.world.heldout_sets = 1
    config.world.negated_heldout_fraction = 0.2
    config.base.data.seq_len = 128
    config.base.training.global_batch_size = 8  # a row per device of a test's 8-device CPU mesh
    config.base.training.num_steps = 3
    config.base.optimizer.warmup_steps = 1
    config.finetune.documents = 2
    config.finetune.min_words = 40
    config.finetune.max_words = 80
    config.finetune.seq_len = 512
    config.finetune.batch_size = 8
    config.finetune.replay = 1.0
    config.finetune.num_epochs = 1.0
    config.finetune.warmup_steps = 1
    config.finetune.num_checkpoints = 1
    config.competence.questions = 8
    config.competence.required = False  # three steps make no competent base
    config.eval.every_checkpoint = "forced_choice"
    config.eval.final = ""
    config.eval.base_controls = ""
    config.eval.samples = 1
