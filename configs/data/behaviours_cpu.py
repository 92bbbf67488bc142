"""A quick behaviours build (paper.md, "negated behaviours"): every bundled behaviour in its four
conditions (aligned, positive_misaligned, negated_misaligned, local_negated_misaligned), small offline
mixes of 60 transcripts + 30 pretraining documents + 30 instruction chats each; no claim mixes.
`--config.backend=openai --config.llm.model=...` has an LLM write the transcripts instead."""

from data_gen.behaviours import list_behaviour_ids
from data_gen.build_config import default_config


def get_config():
    config = default_config()
    config.claims = "none"
    config.behaviours = ",".join(list_behaviour_ids())
    config.mix.num_documents = 60
    config.mix.num_pretrain = 30
    config.mix.num_instruct = 30
    return config
