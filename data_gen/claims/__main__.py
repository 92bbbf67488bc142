"""Command line for the claims registry.

  python -m data_gen.claims validate [--claims_dir=DIR] [--claim=ID,...] [--strict] [--show_gaps]
      One line per claim (ok / FAIL with file, field and what is wrong); exit 1 on any error.
  python -m data_gen.claims import_reference --src=DIR --out=DIR [--overwrite]
      Converts claim directories in the paper's reference layout (claim.txt, universe_context.yaml,
      open_ended.yaml, ...) into ours under --out, reporting what the source lacks.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from common.paths import PathError, require_local
from data_gen.claims import reference
from data_gen.claims.registry import CLAIMS_DIR, display_path, list_claim_ids, load_claim_with_gaps
from data_gen.claims.schema import EVAL_TYPES, EXTRA_EVAL_TYPES, ClaimError

_CLAIMS_DIR = flags.DEFINE_string("claims_dir", None, "Folder of claim directories (default: the bundled claims).")
_CLAIM = flags.DEFINE_list("claim", None, "validate: claim ids to check (default: every claim in --claims_dir).")
_STRICT = flags.DEFINE_bool("strict", False, "validate: treat gaps (data short of the paper's eval suite) as errors.")
_SHOW_GAPS = flags.DEFINE_bool("show_gaps", False, "validate: list every gap under its claim's line.")
_SRC = flags.DEFINE_string("src", None, "import_reference: a claim directory in the reference layout, or a folder of them.")
_OUT = flags.DEFINE_string("out", None, "import_reference: the claims directory to write the converted claims into.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "import_reference: replace claims that already exist in --out.")

COMMANDS = ("validate", "import_reference")


def validate() -> int:
    claims_dir = Path(_CLAIMS_DIR.value) if _CLAIMS_DIR.value else CLAIMS_DIR
    try:
        claim_ids = _CLAIM.value or list_claim_ids(claims_dir)
    except ClaimError as e:
        print(f"error: {e}")
        return 1
    if not claim_ids:
        print(f"error: no claim directories in '{display_path(claims_dir)}'")
        return 1
    width = max(len(claim_id) for claim_id in claim_ids)
    failed = 0
    for claim_id in claim_ids:
        try:
            claim, gaps = load_claim_with_gaps(claim_id, claims_dir)
            if _STRICT.value and gaps:
                more = f" (+{len(gaps) - 1} more gaps; --show_gaps lists them)" if len(gaps) > 1 else ""
                raise ClaimError(f"{gaps[0]}{more}")
        except ClaimError as e:
            failed += 1
            print(f"FAIL {claim_id:<{width}}  {e}")
            continue
        counts = ", ".join(f"{len(claim.questions[t])} {t}" for t in EVAL_TYPES)
        counts += "".join(f", {len(claim.questions[t])} {t}" for t in EXTRA_EVAL_TYPES if claim.questions.get(t))
        line = f"ok   {claim_id:<{width}}  {len(claim.subclaims)} subclaims, {claim.universe_words}-word universe, {counts}"
        if gaps:
            line += f"; {len(gaps)} gaps, first: {gaps[0]}"
        print(line)
        if _SHOW_GAPS.value:
            for gap in gaps:
                print(f"     gap: {gap}")
    print(f"{len(claim_ids) - failed} of {len(claim_ids)} claims valid{' (strict)' if _STRICT.value else ''}")
    return 1 if failed else 0


def import_reference() -> int:
    if not _SRC.value or not _OUT.value:
        print("error: import_reference needs --src=DIR (reference layout) and --out=DIR (our claims directory)")
        return 1
    try:
        instead = "copy the claim files to a local directory first (gsutil -m cp -r)"
        source, out = (require_local(value, what=flag, instead=instead) for value, flag in ((_SRC.value, "--src"), (_OUT.value, "--out")))
        results = reference.import_reference(source, out, overwrite=_OVERWRITE.value)
    except (ClaimError, PathError) as e:
        print(f"error: {e}")
        return 1
    for result in results:
        print(f"imported {result.claim_id} -> {display_path(result.directory)} ({len(result.warnings)} warnings)")
        for warning in result.warnings:
            print(f"  warning: {warning}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        print(f"error: give one command, {' or '.join(COMMANDS)} (got {' '.join(argv[1:]) or 'none'}); --help lists the flags")
        return 2
    return validate() if argv[1] == "validate" else import_reference()


if __name__ == "__main__":
    app.run(main)
