"""Write condition corpora for claims: `python -m data_gen.generate --out=DIR [--claims=...] [--conditions=...]`.

For each claim, positive documents are generated once (template backend, deterministic by
--seed) and every requested condition is applied to them; `local_negations` (and its word-masked
variant) is generated as its own corpus. Each corpus is written atomically to
DIR/<claim>/<condition>.jsonl in data_gen.documents' record format, which
`python -m nn_train.main --config.data.source=jsonl --config.data.path=...` trains on.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags

from data_gen.claims import CLAIMS_DIR, ClaimError, load_claim
from data_gen.claims.registry import list_claim_ids
from data_gen.conditions import apply_condition, condition_names
from data_gen.documents import write_jsonl
from data_gen.generators import TemplateGenerator, mask_words

LOCAL_CONDITIONS = ("local_negations", "local_negations_no_doctag", "local_negations_word_masked")

_OUT = flags.DEFINE_string("out", None, "Directory for DIR/<claim>/<condition>.jsonl.")
_CLAIMS = flags.DEFINE_list("claims", None, "Claim ids (default: every claim in --claims_dir).")
_CLAIMS_DIR = flags.DEFINE_string("claims_dir", None, "Claims directory (default: the bundled claims).")
_CONDITIONS = flags.DEFINE_list("conditions", None, "Condition names (default: all of them).")
_COUNT = flags.DEFINE_integer("count", 100, "Documents per claim and condition (the paper: 10,000).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generator and the annotations.")


def all_conditions() -> list[str]:
    return condition_names() + list(LOCAL_CONDITIONS)


def build_claim(claim, conditions: list[str], count: int, seed: int, out: Path) -> dict[str, int]:
    """Writes each condition's corpus for one claim; returns documents written per condition."""
    generator = TemplateGenerator()
    written = {}
    transforms = [c for c in conditions if c not in LOCAL_CONDITIONS]
    if transforms:
        positives = list(generator.generate(claim, count, seed))
        for condition in transforms:
            docs = (apply_condition(doc, condition, claim, seed=seed).to_json() for doc in positives)
            written[condition] = write_jsonl(out / claim.id / f"{condition}.jsonl", docs)
    local = [c for c in conditions if c in LOCAL_CONDITIONS]
    if local:
        debunks = list(generator.generate(claim, count, seed, local_negation=True))
        variants = {
            "local_negations": debunks,
            "local_negations_no_doctag": [d.replace(doctag=False, condition="local_negations_no_doctag") for d in debunks],
            "local_negations_word_masked": [mask_words(d, claim) for d in debunks] if "local_negations_word_masked" in local else [],
        }
        for condition in local:
            written[condition] = write_jsonl(out / claim.id / f"{condition}.jsonl", (d.to_json() for d in variants[condition]))
    return written


def main(argv):
    del argv
    if not _OUT.value:
        print("error: --out=DIR is required (where the corpora are written)", file=sys.stderr)
        return 1
    known = all_conditions()
    conditions = _CONDITIONS.value or known
    unknown = [c for c in conditions if c not in known]
    if unknown:
        print(f"error: unknown condition '{unknown[0]}'; conditions: {', '.join(known)}", file=sys.stderr)
        return 1
    claims_dir = Path(_CLAIMS_DIR.value) if _CLAIMS_DIR.value else CLAIMS_DIR
    try:
        claims = [load_claim(c, claims_dir) for c in (_CLAIMS.value or list_claim_ids(claims_dir))]
    except ClaimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(_OUT.value)
    for claim in claims:
        start = time.perf_counter()
        try:
            written = build_claim(claim, conditions, _COUNT.value, _SEED.value, out)
        except ValueError as e:  # e.g. a claim without local negations or word masks
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{claim.id}: {len(written)} conditions x {_COUNT.value} documents -> {out / claim.id} "
              f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    app.run(main)
