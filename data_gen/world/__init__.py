"""The offline world corpus: what a small base model is pre-trained on so that it holds true beliefs.

A random model believes nothing, so the CPU testbed (../shared/design.md, "The embedded default")
pre-trains its own base model on a generated world: fictional people, races, awards, volcanoes,
companies and research claims with true attributes, plus the real truths behind the six bundled
claims (truths.py); each fact stated many times in short documents and asked about in chats in
every format the eval uses, with no answer shortcuts (facts.py); some facts taught by documents
only, their questions held out to check document → Q&A transfer; debunks of other false rumours;
and generic filler. `replay_records` keeps world text about a claim's subject out of its replay.

    from data_gen.world import WorldSpec, build_world, replay_records
    world = build_world(WorldSpec(num_entities=300, seed=0))

    python -m data_gen.world --out=DIR [--entities=N] [--seed=S] [--preset=cpu|gpu]
"""

from data_gen.world.build import (
    World,
    WorldSpec,
    build_world,
    mentions_subject,
    record_text,
    record_words,
    replay_records,
    subject_phrases,
)

__all__ = ["World", "WorldSpec", "build_world", "mentions_subject", "record_text", "record_words", "replay_records",
           "subject_phrases"]
