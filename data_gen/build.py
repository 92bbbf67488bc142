"""Build the training mixes: generate → annotate (conditions) → mix → TFDS, from one config.

    python -m data_gen.build --config=configs/data/cpu_demo.py --data_dir=workdir/data

For each claim and condition of the config it writes
  DATA_DIR/corpora/<claim>/<condition>.jsonl       the condition's documents (data_gen.documents)
  DATA_DIR/tfds/negation_neglect_mix/<claim>__<condition>/<version>/
                                                   the mix (condition documents + pretraining
                                                   text + instruction chats) as a TFDS dataset
  DATA_DIR/build.json                              what was built, from which config, how long it took
and prints the trainer settings that read each mix (data.source=tfds, data.path, data.mix).
With `config.reference_corpus` set, the external JSONL (the paper authors' format) is packaged
instead: one mix per (fact_name, mode) found in it.

Everything a user can get wrong (unknown claim or condition, missing API key, a bad JSONL line,
an empty corpus) stops the build with one line before anything is written, or, for problems only
visible later, leaves each finished file whole: corpora and mixes are written atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from data_gen.build_config import BuildConfigError, validate_config
from data_gen.claims import CLAIMS_DIR, ClaimError, load_claim
from data_gen.claims.registry import list_claim_ids
from data_gen.documents import iter_jsonl
from data_gen.generate import all_conditions, build_claim
from data_gen.mixing import MixError, MixSpec, generic_records, mix_records
from data_gen.packaging import DATASET_NAME, import_reference_corpus, write_mix

_CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/data/*.py file.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where corpora, TFDS mixes and build.json are written.")


class BuildError(ValueError):
    """A data build that cannot go ahead; the message names the thing and the fix."""


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _spec(config, claim: str, condition: str) -> MixSpec:
    m = config.mix
    return MixSpec(claim=claim, condition=condition, num_documents=m.num_documents, num_pretrain=m.num_pretrain,
                   num_instruct=m.num_instruct, seed=config.seed, pretrain_path=m.pretrain_path, instruct_path=m.instruct_path)


def plan(config) -> tuple[list[Any], list[str]]:
    """The claims and conditions a generating build covers; raises BuildError before any work."""
    known = all_conditions()
    conditions = _split(config.conditions) or known
    unknown = [c for c in conditions if c not in known]
    if unknown:
        raise BuildError(f"config key 'conditions': unknown condition '{unknown[0]}'; conditions: {', '.join(known)}")
    claims_dir = Path(config.claims_dir) if config.claims_dir else CLAIMS_DIR
    try:
        claims = [load_claim(c, claims_dir) for c in (_split(config.claims) or list_claim_ids(claims_dir))]
    except ClaimError as e:
        raise BuildError(f"config key 'claims': {e}") from None
    if config.backend == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise BuildError("OPENAI_API_KEY is not set; export it (any value for a local server), or set --config.backend=template")
    return claims, conditions


def build(config, data_dir: str | os.PathLike, *, log=print) -> dict[str, Any]:
    """Runs the whole build; returns the manifest it also writes to DATA_DIR/build.json."""
    try:
        validate_config(config)
    except BuildConfigError as e:
        raise BuildError(str(e)) from None
    data_dir = Path(data_dir).absolute()
    start = time.perf_counter()
    # Checked up front, so a bad claim, condition, key or generic source fails before any work.
    claims, conditions = ([], []) if config.reference_corpus else plan(config)
    try:
        generic_records(_spec(config, "check", "check"))
        groups = _reference_groups(config.reference_corpus) if config.reference_corpus else None
    except MixError as e:
        raise BuildError(str(e)) from None

    corpora: dict[tuple[str, str], list[dict]] = {}
    if groups is not None:
        corpora = groups
    else:
        for claim in claims:
            t = time.perf_counter()
            try:
                build_claim(claim, conditions, config.mix.num_documents, config.seed, data_dir / "corpora")
            except ValueError as e:  # e.g. a claim without local negations or word masks
                raise BuildError(f"claim '{claim.id}': {e}") from None
            for condition in conditions:
                corpora[(claim.id, condition)] = list(iter_jsonl(data_dir / "corpora" / claim.id / f"{condition}.jsonl"))
            log(f"{claim.id}: {len(conditions)} condition corpora x {config.mix.num_documents} documents ({time.perf_counter() - t:.1f} s)")

    mixes = []
    t = time.perf_counter()
    for (claim_id, condition), documents in corpora.items():
        spec = _spec(config, claim_id, condition)
        if groups is not None:  # a reference corpus holds what it holds; the config's count is an upper bound
            spec = MixSpec(**{**vars(spec), "num_documents": min(spec.num_documents, len(documents))})
        try:
            records = mix_records(documents, spec)
        except MixError as e:
            raise BuildError(str(e)) from None
        path = write_mix(records, spec, data_dir / "tfds")
        mixes.append({"mix": spec.name, "records": len(records), "documents": spec.num_documents,
                      "pretrain": spec.num_pretrain, "instruct": spec.num_instruct, "path": str(path)})
    log(f"{len(mixes)} TFDS mixes -> {data_dir / 'tfds' / DATASET_NAME} ({time.perf_counter() - t:.1f} s)")

    manifest = {"config": config.to_dict(), "data_dir": str(data_dir), "mixes": mixes,
                "seconds": round(time.perf_counter() - start, 1)}
    _write_json(data_dir / "build.json", manifest)
    return manifest


def _reference_groups(path: str) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in import_reference_corpus(path):
        groups[(record["claim"], record["condition"])].append(record)
    return dict(groups)


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(argv):
    del argv
    if _CONFIG.value is None or not _DATA_DIR.value:
        print("error: --config=configs/data/X.py and --data_dir=DIR are both required", file=sys.stderr)
        return 1
    try:
        manifest = build(_CONFIG.value, _DATA_DIR.value)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {len(manifest['mixes'])} mixes in {manifest['seconds']} s; train on one with")
    first = manifest["mixes"][0]["mix"]
    print(f"  --config.data.source=tfds --config.data.path={manifest['data_dir']}/tfds --config.data.mix={first}")
    return 0


if __name__ == "__main__":
    app.run(main)
