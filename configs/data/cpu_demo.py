"""A quick data build: the Ed Sheeran claim's five main conditions, small offline mixes
(200 condition documents + 100 pretraining documents + 100 instruction chats each)."""

from data_gen.build_config import default_config


def get_config():
    config = default_config()
    config.claims = "ed_sheeran"
    config.conditions = "positive_documents,negated_documents,repeated_negations,corrected_documents,local_negations"
    config.mix.num_documents = 200
    config.mix.num_pretrain = 100
    config.mix.num_instruct = 100
    return config
