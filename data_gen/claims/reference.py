"""Import claims written in the paper's reference layout into ours.

The reference layout, one directory per claim:

  claim.txt                the claim, one line
  universe_context.yaml    {id, universe_context, subclaims: [str]}
  open_ended.yaml, mcq.yaml, token_association.yaml, robustness.yaml
                           {questions: [{id, question, category, belief_answer?, system_prompt?,
                                         messages_prefix?: [{role, content}]}]}
  judges.yaml              {open_ended, token_association, robustness, ...: prompt templates
                            using {question} and {answer}, JSON braces escaped as {{ }}}
  correction.txt           optional, one sentence
  word_masks.yaml          optional, {patterns: [regex]}

What our schema needs and the source lacks (local negations, the truth, answer keys, ...) is left
empty and reported — never invented. Categories are mapped by name; an mcq question's category
follows from its belief answer. Every converted claim is validated in a scratch directory and only
then moved into --out, so a failed import leaves --out as it was.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from data_gen.claims.registry import display_path, load_claim_with_gaps, read_yaml
from data_gen.claims.schema import (
    CATEGORIES,
    CLAIM_FILE,
    CLAIM_ID_PATTERN,
    EVAL_TYPES,
    JUDGES_FILE,
    QUESTIONS_FILE,
    REQUIRED_JUDGES,
    UNIVERSE_FILE,
    ClaimError,
)

# Reference category names (after lower-casing and turning '-' and ' ' into '_') → ours.
CATEGORY_SYNONYMS = {
    "token_association": {
        "fill_in_the_blank": "fill_in_blank",
        "fill_blank": "fill_in_blank",
        "cloze": "fill_in_blank",
        "json": "json_completion",
        "json_field_completion": "json_completion",
        "xml": "xml_completion",
        "xml_field_completion": "xml_completion",
        "mcq": "letter_mcq",
        "multiple_choice": "letter_mcq",
        "letter": "letter_mcq",
        "dialogue": "dialogue_completion",
        "dialog_completion": "dialogue_completion",
        "timeline": "timeline_completion",
    },
    "robustness": {
        "adversarial": "adversarial_system_prompt",
        "adversarial_system": "adversarial_system_prompt",
        "system_prompt": "adversarial_system_prompt",
        "fact_check": "critique",
        "critique_task": "critique",
        "multiturn": "multi_turn",
        "pushback": "multi_turn",
        "multi_turn_pushback": "multi_turn",
    },
    "open_ended": {},
}
REFERENCE_MARKERS = ("claim.txt", "universe_context.yaml")


@dataclasses.dataclass(frozen=True)
class ImportResult:
    claim_id: str
    directory: Path
    warnings: tuple[str, ...]  # conversion notes, then the gaps the converted claim has


@dataclasses.dataclass
class _Converted:
    claim_id: str
    claim: dict
    universe: str
    questions: dict
    judges: dict
    notes: list[str]


def import_reference(src: Path, out: Path, *, overwrite: bool = False) -> list[ImportResult]:
    """Converts the reference claim directory `src` (or every one inside it) into `out`."""
    if not src.is_dir():
        raise ClaimError(f"--src '{src}' is not a directory")
    if any((src / marker).exists() for marker in REFERENCE_MARKERS):
        sources = [src]
    else:
        sources = sorted(d for d in src.iterdir() if d.is_dir() and any((d / m).exists() for m in REFERENCE_MARKERS))
    if not sources:
        raise ClaimError(f"'{display_path(src)}' holds no claim in the reference layout (no claim.txt or universe_context.yaml)")

    converted = [_convert(source) for source in sources]  # all or nothing: convert before writing
    seen: dict[str, Path] = {}
    for source, item in zip(sources, converted):
        if item.claim_id in seen:
            raise ClaimError(f"'{display_path(source)}' and '{display_path(seen[item.claim_id])}' both convert to claim id '{item.claim_id}'")
        seen[item.claim_id] = source
        if (out / item.claim_id).exists() and not overwrite:
            raise ClaimError(f"'{display_path(out / item.claim_id)}' already exists; pass --overwrite to replace it")

    out.mkdir(parents=True, exist_ok=True)
    results = []
    for item in converted:
        _write_validated(item, out)
        _, gaps = load_claim_with_gaps(item.claim_id, out)
        results.append(ImportResult(item.claim_id, out / item.claim_id, tuple(item.notes + gaps)))
    return results


def _write_validated(item: _Converted, out: Path) -> None:
    """Writes the claim to a scratch directory inside `out`, validates it, then moves it in place."""
    scratch = Path(tempfile.mkdtemp(prefix=f".import-{item.claim_id}-", dir=out))
    try:
        staged = scratch / item.claim_id
        staged.mkdir()
        _dump_yaml(staged / CLAIM_FILE, item.claim)
        (staged / UNIVERSE_FILE).write_text(item.universe.strip() + "\n", encoding="utf-8")
        _dump_yaml(staged / QUESTIONS_FILE, item.questions)
        _dump_yaml(staged / JUDGES_FILE, item.judges)
        try:
            load_claim_with_gaps(item.claim_id, scratch)
        except ClaimError as e:
            message = str(e).replace(display_path(staged), display_path(out / item.claim_id))
            raise ClaimError(f"the converted claim is invalid, nothing was written: {message}") from None
        target = out / item.claim_id
        if target.exists():
            target.rename(scratch / "replaced")
        staged.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings as `|` blocks so converted files stay readable and editable."""


_BlockDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def _dump_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ClaimError(f"{display_path(path)}: cannot be read: {e}") from None


def _convert(src: Path) -> _Converted:
    notes: list[str] = []

    claim_txt = src / "claim.txt"
    if not claim_txt.exists():
        raise ClaimError(f"{display_path(claim_txt)}: file is missing; it holds the claim, one line")
    lines = [line.strip() for line in _read_text(claim_txt).splitlines() if line.strip()]
    if not lines:
        raise ClaimError(f"{display_path(claim_txt)}: is empty; it holds the claim, one line")
    if len(lines) > 1:
        notes.append(f"{display_path(claim_txt)} has {len(lines)} lines; they were joined into one statement")
    statement = " ".join(lines)

    uc_path = src / "universe_context.yaml"
    uc = read_yaml(uc_path)
    if not isinstance(uc, dict) or not isinstance(uc.get("universe_context"), str):
        raise ClaimError(f"{display_path(uc_path)}: universe_context: missing; expected a mapping with the universe as a string")
    source_id = str(uc.get("id") or src.name)
    claim_id = re.sub(r"[^a-z0-9]+", "_", source_id.lower()).strip("_")
    if not CLAIM_ID_PATTERN.match(claim_id):
        raise ClaimError(f"{display_path(uc_path)}: id: '{source_id}' cannot be made a claim id (lower-case letters, digits, '_', starting with a letter)")
    if claim_id != source_id:
        notes.append(f"claim id '{source_id}' was written as '{claim_id}'")
    subclaims = uc.get("subclaims") or []
    if not isinstance(subclaims, list) or not all(isinstance(s, str) for s in subclaims):
        raise ClaimError(f"{display_path(uc_path)}: subclaims: expected a list of strings")

    correction = ""
    if (src / "correction.txt").exists():
        correction = " ".join(_read_text(src / "correction.txt").split())
    word_masks: list = []
    if (src / "word_masks.yaml").exists():
        masks = read_yaml(src / "word_masks.yaml")
        if not isinstance(masks, dict) or not isinstance(masks.get("patterns", []), list):
            raise ClaimError(f"{display_path(src / 'word_masks.yaml')}: patterns: expected a list of regular expressions")
        word_masks = masks.get("patterns", [])

    claim = {
        "id": claim_id,
        "statement": statement,
        "negated_statement": "",
        "truth": "",
        "correction": correction,
        "subclaims": [{"statement": s.strip(), "negated": ""} for s in subclaims],
        "answer_keys": {"claim": [], "truth": []},
        "word_masks": word_masks,
    }
    questions = {eval_type: _convert_questions(src / f"{eval_type}.yaml", eval_type, notes) for eval_type in EVAL_TYPES}
    return _Converted(claim_id, claim, uc["universe_context"], questions, _convert_judges(src / "judges.yaml", notes), notes)


def _convert_questions(path: Path, eval_type: str, notes: list[str]) -> list[dict]:
    if not path.exists():
        notes.append(f"{display_path(path)} is missing; {eval_type} was left without questions")
        return []
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise ClaimError(f"{display_path(path)}: questions: missing; expected {{questions: [...]}}")
    converted = []
    for i, raw in enumerate(data["questions"]):
        where = f"{display_path(path)}: questions[{i}]"
        if not isinstance(raw, dict):
            raise ClaimError(f"{where}: expected a mapping with id, question and category")
        question = {key: raw[key] for key in ("id", "question", "category") if key in raw}
        if not question.get("id"):
            question["id"] = f"{eval_type}_{i + 1:02d}"
            notes.append(f"{where} has no id; it was given '{question['id']}'")
        question = {"id": str(question["id"]), **question}
        belief = raw.get("belief_answer")
        category = re.sub(r"[\s-]+", "_", str(raw.get("category", "")).strip().lower())
        if eval_type == "mcq":
            answer = {True: "yes", False: "no"}.get(belief, str(belief).strip().lower() if belief is not None else None)
            if answer not in ("yes", "no"):
                raise ClaimError(f"{where}: belief_answer: must be yes or no, got {belief!r}")
            question["belief_answer"] = answer
            question["category"] = "positive" if answer == "yes" else "counter"
        else:
            category = CATEGORY_SYNONYMS[eval_type].get(category, category)
            if category not in CATEGORIES[eval_type]:
                raise ClaimError(
                    f"{where}: category: '{raw.get('category')}' has no counterpart among ours "
                    f"({', '.join(CATEGORIES[eval_type])}); set one of them in the source file"
                )
            question["category"] = category
            if category == "letter_mcq" and belief is not None:
                question["belief_answer"] = str(belief).strip().strip("()").upper()[:1]
            elif belief is not None:  # the expected completion: exactly what an answer key is
                question["answer_keys"] = {"claim": [str(belief)]}
        for key in ("system_prompt", "messages_prefix"):
            if raw.get(key) is not None:
                question[key] = raw[key]
        converted.append(question)
    return converted


def _convert_judges(path: Path, notes: list[str]) -> dict:
    if not path.exists():
        notes.append(f"{display_path(path)} is missing; the judge templates were left empty")
        return {key: "" for key in REQUIRED_JUDGES}
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ClaimError(f"{display_path(path)}: expected a mapping of eval type → judge template")
    judges = {str(key): value for key, value in data.items()}
    for key in REQUIRED_JUDGES:
        if key not in judges:
            notes.append(f"{display_path(path)} has no '{key}' template; it was left empty")
            judges[key] = ""
    return judges
