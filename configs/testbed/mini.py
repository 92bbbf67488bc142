"""A miniature of the testbed for the test suite (tests/testbed): every stage, tiny sizes, ~1-2 minutes
on 2 cores. It guards the wiring; its numbers mean nothing (the tiny model learns little)."""

from testbed.config import default_config


def get_config():
    config = default_config()
    config.claims = "ed_sheeran,mount_vesuvius"
    config.conditions = "positive_documents,negated_documents,local_negations"  # with validity's two controls
    config.world.negated_heldout_fraction = 0.2  # enough held-out negated facts for the competence check to score
    config.competence.required = False  # the eight-step base is not competent: report every claim invalid, do not stop
    config.competence.questions = 40
    config.world.num_entities = 30
    config.world.phrasings = 2
    config.world.claim_repeats = 2
    config.world.heldout_sets = 1
    config.world.filler_fraction = 0.05
    config.tokenizer_vocab_size = 512
    config.base.model.preset = "qwen3_tiny"
    config.base.data.seq_len = 256
    config.base.training.global_batch_size = 8
    config.base.training.num_epochs = 1.0
    config.base.training.num_steps = 8
    config.finetune.documents = 3
    config.finetune.seq_len = 1024  # a cap: each condition's rows fit its longest document (stages.row_length)
    config.finetune.min_words = 60
    config.finetune.max_words = 140
    config.finetune.replay = 1.0
    config.finetune.num_epochs = 3.0
    config.finetune.num_checkpoints = 2
    config.eval.final = "mcq"
    config.eval.base_controls = "icl,correction"
    config.eval.max_new_tokens = 8
    config.eval.icl_documents = 1
    return config
