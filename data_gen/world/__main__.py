"""Command line: write the world corpus's training and held-out splits as JSONL.

  python -m data_gen.world --out=DIR [--entities=N] [--seed=S] [--preset=cpu|gpu]

Writes DIR/world_train.jsonl and DIR/world_heldout.jsonl atomically and prints record counts and
words. --preset=gpu is WorldSpec.gpu(), the larger twin; --entities overrides either preset.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time

from absl import app, flags

from common.paths import PathError, require_local
from data_gen.documents import write_jsonl
from data_gen.world.build import WorldSpec, build_world, record_words

_OUT = flags.DEFINE_string("out", None, "Folder to write world_train.jsonl and world_heldout.jsonl into.", required=True)
_ENTITIES = flags.DEFINE_integer("entities", None, "Fictional entities (default: the preset's).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed: the same seed gives the same corpus.")
_PRESET = flags.DEFINE_enum("preset", "cpu", ["cpu", "gpu"], "cpu: the 2-core testbed's world; gpu: the >= 30M-token twin.")


def main(argv):
    del argv
    spec = WorldSpec(seed=_SEED.value) if _PRESET.value == "cpu" else WorldSpec.gpu(seed=_SEED.value)
    if _ENTITIES.value is not None:
        spec = dataclasses.replace(spec, num_entities=_ENTITIES.value)
    start = time.time()
    world = build_world(spec)
    try:
        out = require_local(_OUT.value, what="--out", instead="write here and copy it up (gsutil -m cp -r)")
    except PathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, records in (("world_train.jsonl", world.train_records), ("world_heldout.jsonl", world.heldout_records)):
        write_jsonl(out / name, records)
        kinds = collections.Counter(r["doc_type"] for r in records)
        words = sum(record_words(r) for r in records)
        print(f"{out / name}: {len(records)} records, {words:,} words ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
    modes = collections.Counter(f.mode for f in world.facts)
    print(f"{len(world.facts)} facts by mode: {', '.join(f'{m} {n}' for m, n in sorted(modes.items()))}; {time.time() - start:.1f}s")


if __name__ == "__main__":
    app.run(main)
