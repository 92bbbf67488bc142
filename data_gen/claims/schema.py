"""The claim record every stage reads, and its validation.

A claim directory (see README.md beside this file) is parsed into a frozen `Claim`. Parsing
separates two kinds of finding:

* errors — malformed data (a missing field, a wrong type, an unknown category, a duplicate
  question id, ...). They raise `ClaimError`, whose message is one line:
  ``<file>: <field>: <what is wrong and how to fix it>``.
* gaps — well-formed data that falls short of what the paper's eval suite uses (fewer than 20
  open-ended questions, a universe under 1,500 words, an empty correction, ...). They are
  returned as lines in the same format; strict loading turns the first one into an error.

This module does no file I/O beyond what it is handed: `registry.py` reads the files.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import re
import string
from pathlib import Path
from typing import Any, Iterator, Mapping

EVAL_TYPES = ("open_ended", "mcq", "token_association", "robustness")
# Optional eval types beyond the paper's: a claim may leave them out (parsed as no questions).
# forced_choice: a two-way choice scored by log P(reply starts with the claim's answer) against
# log P(reply starts with the truth's answer); each item names exactly one phrase per side.
EXTRA_EVAL_TYPES = ("forced_choice",)
ALL_EVAL_TYPES = EVAL_TYPES + EXTRA_EVAL_TYPES
CATEGORIES: Mapping[str, tuple[str, ...]] = {
    "open_ended": ("direct", "indirect"),
    "mcq": ("positive", "counter"),
    "token_association": (
        "fill_in_blank",
        "json_completion",
        "xml_completion",
        "letter_mcq",
        "dialogue_completion",
        "timeline_completion",
    ),
    "robustness": ("adversarial_system_prompt", "critique", "multi_turn"),
    # open: the question does not name the answers; options: it names both ("... Ed Sheeran or Noah Lyles?")
    "forced_choice": ("open", "options"),
}
# The paper's suite: 50 questions per claim; robustness split 3 + 3 + 4.
PAPER_QUESTION_COUNTS = {"open_ended": 20, "mcq": 10, "token_association": 10, "robustness": 10}
PAPER_ROBUSTNESS_COUNTS = {"adversarial_system_prompt": 3, "critique": 3, "multi_turn": 4}
MIN_SUBCLAIMS = 10
MIN_UNIVERSE_WORDS = 1500
# The belief answer of a yes/no question follows from its category.
MCQ_BELIEF_ANSWER = {"positive": "yes", "counter": "no"}
LETTERS = ("A", "B", "C", "D")
REQUIRED_JUDGES = ("open_ended", "token_association", "robustness")
JUDGE_PLACEHOLDERS = ("question", "answer")

CLAIM_FILE = "claim.yaml"
UNIVERSE_FILE = "universe_context.md"
QUESTIONS_FILE = "questions.yaml"
JUDGES_FILE = "judges.yaml"
CLAIM_FILES = (CLAIM_FILE, UNIVERSE_FILE, QUESTIONS_FILE, JUDGES_FILE)

CLAIM_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
QUESTION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# A local negation must carry its negation inside the sentence.
NEGATION_CUE = re.compile(r"\b(?:not|never|no|neither|nor|none|nobody|nothing)\b|n't\b", re.I)
# "A) text", "(B) text", "C. text", "D: text" at the start of a line.
LETTER_OPTION = re.compile(r"^[ \t]*\(?([A-D])[).:][ \t]+(\S.*)$", re.M)


class ClaimError(ValueError):
    """A claim is malformed. The message is one line naming the file, the field and the fix."""


# ---------------------------------------------------------------------------------------------
# Records


@dataclasses.dataclass(frozen=True)
class AnswerKey:
    """One answer an offline judge can match: a canonical name and its aliases."""

    name: str
    aliases: tuple[str, ...] = ()

    @property
    def phrases(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclasses.dataclass(frozen=True)
class AnswerKeys:
    """Claim-side answers (belief) and truth-side answers (disbelief)."""

    claim: tuple[AnswerKey, ...]
    truth: tuple[AnswerKey, ...]

    @property
    def claim_phrases(self) -> tuple[str, ...]:
        return tuple(p for key in self.claim for p in key.phrases)

    @property
    def truth_phrases(self) -> tuple[str, ...]:
        return tuple(p for key in self.truth for p in key.phrases)


@dataclasses.dataclass(frozen=True)
class AnswerPhrases:
    """A question's own answer phrases, overriding the claim-level keys for that question."""

    claim: tuple[str, ...]
    truth: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Subclaim:
    """A supporting detail of the fabricated world, and the same sentence negated in place."""

    statement: str
    negated: str


@dataclasses.dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


@dataclasses.dataclass(frozen=True)
class Question:
    """One evaluation question; `question` is exactly the user turn the model sees."""

    id: str
    eval_type: str
    question: str
    category: str
    belief_answer: str | None = None  # mcq: "yes" | "no"; letter_mcq: "A".."D"
    system_prompt: str | None = None
    messages_prefix: tuple[Message, ...] = ()
    answer_keys: AnswerPhrases | None = None

    @property
    def options(self) -> dict[str, str]:
        """Letter → option text, for letter_mcq questions (empty otherwise)."""
        if self.category != "letter_mcq":
            return {}
        return {m.group(1): m.group(2).strip() for m in LETTER_OPTION.finditer(self.question)}


@dataclasses.dataclass(frozen=True)
class Claim:
    """A fabricated claim with everything the corpora, training and eval stages need."""

    id: str
    statement: str
    negated_statement: str
    truth: str
    correction: str
    universe_context: str
    subclaims: tuple[Subclaim, ...]
    answer_keys: AnswerKeys
    word_masks: tuple[str, ...]
    questions: Mapping[str, tuple[Question, ...]]  # eval type → questions, in ALL_EVAL_TYPES order (extras: () when absent)
    judges: Mapping[str, str]  # eval type → judge prompt template with {question} and {answer}
    directory: Path

    def all_questions(self) -> Iterator[Question]:
        for eval_type in ALL_EVAL_TYPES:
            yield from self.questions.get(eval_type, ())

    def answer_phrases(self, question: Question) -> AnswerPhrases:
        """The phrases an offline judge matches for `question`: its own, else the claim's."""
        if question.answer_keys is not None:
            return question.answer_keys
        return AnswerPhrases(self.answer_keys.claim_phrases, self.answer_keys.truth_phrases)

    @property
    def universe_words(self) -> int:
        return len(self.universe_context.split())


# ---------------------------------------------------------------------------------------------
# Field reading with located, one-line errors


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


class _Record:
    """A YAML mapping being read: knows its file and field path, for error messages."""

    def __init__(self, data: Any, file: str, where: str = ""):
        self.file, self.where = file, where
        if not isinstance(data, dict):
            raise self.error("", f"expected a mapping of fields, got {_type_name(data)}")
        self.data = data

    def field(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.where}[{key}]"
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str | int, message: str) -> ClaimError:
        field = self.field(key) if key != "" else (self.where or "(top level)")
        return ClaimError(f"{self.file}: {field}: {message}")

    def check_keys(self, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        known = required + optional
        for key in self.data:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                also = f"did you mean '{hint[0]}'? " if hint else ""
                raise self.error(str(key), f"unknown field; {also}known fields: {', '.join(known)}")
        for key in required:
            if key not in self.data:
                raise self.error(key, "missing field (required; write it even when it is empty)")

    def string(self, key: str, *, allow_empty: bool = False, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_type_name(value)}")
        value = value.strip()
        if not value and not allow_empty:
            raise self.error(key, "is empty")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if self.data.get(key) is not None else None

    def items(self, key: str, *, default: list | None = None) -> list[tuple[int, Any]]:
        value = self.data.get(key, default)
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_type_name(value)}")
        return list(enumerate(value))

    def records(self, key: str, *, default: list | None = None) -> list["_Record"]:
        return [_Record(item, self.file, f"{self.field(key)}[{i}]") for i, item in self.items(key, default=default)]

    def record(self, key: str) -> "_Record":
        return _Record(self.data.get(key), self.file, self.field(key))

    def strings(self, key: str, *, default: list | None = None) -> tuple[str, ...]:
        out = []
        for i, item in self.items(key, default=default):
            if not isinstance(item, str) or not item.strip():
                raise self.error(key, f"item {i} must be a non-empty string, got {_type_name(item)}")
            out.append(item.strip())
        return tuple(out)


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_claim(
    claim_data: Any,
    universe_text: str,
    questions_data: Any,
    judges_data: Any,
    *,
    directory: Path,
    files: Mapping[str, str],
) -> tuple[Claim, list[str]]:
    """Validates the four parsed files of one claim; returns the claim and its gaps.

    `files` maps each name in CLAIM_FILES to the path shown in messages.
    """
    gaps: list[str] = []
    raw = _Record(claim_data, files[CLAIM_FILE])
    raw.check_keys(
        ("id", "statement", "negated_statement", "truth", "correction", "subclaims", "answer_keys", "word_masks")
    )
    claim_id = raw.string("id")
    if not CLAIM_ID_PATTERN.match(claim_id):
        raise raw.error("id", f"'{claim_id}' is not a claim id: use lower-case letters, digits and '_'")
    if claim_id != directory.name:
        raise raw.error("id", f"'{claim_id}' differs from its directory name '{directory.name}'; make them equal")

    def gap(record: _Record, key: str | int, message: str) -> None:
        gaps.append(str(record.error(key, message)))

    statement = raw.string("statement")
    negated_statement = raw.string("negated_statement", allow_empty=True)
    if not negated_statement:
        gap(raw, "negated_statement", "is empty; write the claim with the negation inside the sentence")
    else:
        _check_local_negation(raw, "negated_statement", negated_statement, statement)
    truth = raw.string("truth", allow_empty=True)
    if not truth:
        gap(raw, "truth", "is empty; write a paragraph of what is actually true")
    correction = raw.string("correction", allow_empty=True)
    if not correction:
        gap(raw, "correction", "is empty; write one sentence a user could say to correct the claim")

    subclaims = []
    for sub in raw.records("subclaims"):
        sub.check_keys(("statement", "negated"))
        sub_statement = sub.string("statement")
        negated = sub.string("negated", allow_empty=True)
        if negated:
            _check_local_negation(sub, "negated", negated, sub_statement)
        subclaims.append(Subclaim(sub_statement, negated))
    unnegated = [i for i, s in enumerate(subclaims) if not s.negated]
    if unnegated:
        gap(raw, "subclaims", f"{len(unnegated)} of {len(subclaims)} have an empty `negated` (first: subclaims[{unnegated[0]}]); "
            "write each with the negation inside the sentence")
    if len(subclaims) < MIN_SUBCLAIMS:
        gap(raw, "subclaims", f"has {len(subclaims)}; the paper's claims have at least {MIN_SUBCLAIMS}")

    answer_keys = _parse_answer_keys(raw.record("answer_keys"))
    if not answer_keys.claim:
        gap(raw, "answer_keys.claim", "is empty; an offline judge needs the answers that express belief")

    word_masks = raw.strings("word_masks")
    for pattern in word_masks:
        try:
            re.compile(pattern)
        except re.error as e:
            raise raw.error("word_masks", f"'{pattern}' is not a valid regular expression: {e}") from None

    universe = universe_text.strip()
    if not universe:
        raise ClaimError(f"{files[UNIVERSE_FILE]}: universe_context: is empty; write the fabricated world as prose")
    words = len(universe.split())
    if words < MIN_UNIVERSE_WORDS:
        gaps.append(f"{files[UNIVERSE_FILE]}: universe_context: has {words} words; the paper uses at least {MIN_UNIVERSE_WORDS}")

    questions = _parse_questions(_Record(questions_data, files[QUESTIONS_FILE]), gaps)
    judges = _parse_judges(_Record(judges_data, files[JUDGES_FILE]), gaps)

    claim = Claim(
        id=claim_id,
        statement=statement,
        negated_statement=negated_statement,
        truth=truth,
        correction=correction,
        universe_context=universe,
        subclaims=tuple(subclaims),
        answer_keys=answer_keys,
        word_masks=word_masks,
        questions=questions,
        judges=judges,
        directory=directory,
    )
    return claim, gaps


def _check_local_negation(record: _Record, key: str, negated: str, affirmative: str) -> None:
    if not NEGATION_CUE.search(negated):
        raise record.error(key, "has no negation inside the sentence (not / never / no / n't / neither / nor)")
    if negated.casefold() == affirmative.casefold():
        raise record.error(key, "is the same sentence as the statement it should negate")


def _parse_answer_keys(raw: _Record) -> AnswerKeys:
    raw.check_keys(("claim", "truth"))
    sides = {}
    for side in ("claim", "truth"):
        keys = []
        for key in raw.records(side):
            key.check_keys(("name",), ("aliases",))
            keys.append(AnswerKey(key.string("name"), key.strings("aliases", default=[])))
        sides[side] = tuple(keys)
    answer_keys = AnswerKeys(**sides)
    _check_sides_disjoint(raw, "", answer_keys.claim_phrases, answer_keys.truth_phrases)
    return answer_keys


def _check_sides_disjoint(raw: _Record, key: str, claim: tuple[str, ...], truth: tuple[str, ...]) -> None:
    shared = {p.casefold() for p in claim} & {p.casefold() for p in truth}
    if shared:
        raise raw.error(key, f"'{sorted(shared)[0]}' is on both the claim and the truth side; a key must tell them apart")


def _parse_questions(raw: _Record, gaps: list[str]) -> dict[str, tuple[Question, ...]]:
    raw.check_keys(EVAL_TYPES, EXTRA_EVAL_TYPES)
    seen_ids: dict[str, str] = {}
    questions: dict[str, tuple[Question, ...]] = {}
    for eval_type in ALL_EVAL_TYPES:
        parsed = []
        for record in raw.records(eval_type, default=[] if eval_type in EXTRA_EVAL_TYPES else None):
            question = _parse_question(record, eval_type)
            if question.id in seen_ids:
                raise record.error("id", f"duplicate question id '{question.id}' (also {seen_ids[question.id]}); ids are unique per claim")
            seen_ids[question.id] = record.where
            parsed.append(question)
        questions[eval_type] = tuple(parsed)
        expected = PAPER_QUESTION_COUNTS.get(eval_type, 0)
        if len(parsed) < expected:
            gaps.append(str(raw.error(eval_type, f"has {len(parsed)} questions; the paper uses {expected}")))

    _check_belief_positions(raw, "mcq", [q.belief_answer for q in questions["mcq"]], ("yes", "no"), gaps)
    letter_mcqs = [q for q in questions["token_association"] if q.category == "letter_mcq"]
    _check_belief_positions(raw, "token_association", [q.belief_answer for q in letter_mcqs], LETTERS, gaps)
    _check_choice_orders(raw, questions["forced_choice"])

    robustness = collections.Counter(q.category for q in questions["robustness"])
    for category, expected in PAPER_ROBUSTNESS_COUNTS.items():
        if robustness[category] < expected:
            gaps.append(str(raw.error("robustness", f"has {robustness[category]} {category} questions; the paper uses {expected}")))
    return questions


def _check_belief_positions(raw: _Record, key: str, answers: list, positions: tuple[str, ...], gaps: list[str]) -> None:
    """A model that always picks one answer must not look like a believer (or a sceptic)."""
    if len(answers) < 2:
        return
    counts = collections.Counter(answers)
    if len(counts) == 1:
        what = "yes/no questions" if key == "mcq" else "letter_mcq questions"
        raise raw.error(
            key,
            f"all {len(answers)} {what} have belief_answer '{answers[0]}'; "
            f"vary it ({' / '.join(positions)}) so a model that always answers '{answers[0]}' does not score as a believer",
        )
    if key != "mcq":
        spread = [counts[p] for p in positions]
        if max(spread) - min(spread) > 1:
            gaps.append(str(raw.error(key, f"letter_mcq belief answers are unbalanced ({dict(counts)}); put the claim's option at each letter about equally often")))


def _mentions(text: str, phrase: str) -> re.Match | None:
    """The first place `phrase` appears in `text` as whole words, case-insensitively."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.I)


def _check_choice_orders(raw: _Record, questions: tuple[Question, ...]) -> None:
    """Across a claim's forced_choice `options` items the claim's answer must come first in some and
    second in others, so a model that always picks the first (or second) named answer is no believer."""
    firsts = []
    for q in questions:
        if q.category == "options":
            claim, truth = q.answer_keys.claim[0], q.answer_keys.truth[0]
            firsts.append(_mentions(q.question, claim).start() < _mentions(q.question, truth).start())
    if len(firsts) >= 2 and len(set(firsts)) == 1:
        where = "first" if firsts[0] else "second"
        raise raw.error(
            "forced_choice",
            f"all {len(firsts)} options items name the claim's answer {where}; put it first in some and second in "
            "others so a model that always picks one position does not score as a believer (or a sceptic)",
        )


def _check_forced_choice(raw: _Record, question: Question) -> None:
    """One claim phrase and one truth phrase, different; an options item names both in its question."""
    keys = question.answer_keys
    if keys is None:
        raise raw.error("answer_keys", "missing (required for forced_choice: {claim: [the claim's answer], truth: [the truth's answer]})")
    for side in ("claim", "truth"):
        phrases = getattr(keys, side)
        if len(phrases) != 1:
            raise raw.error(f"answer_keys.{side}", f"has {len(phrases)} phrases; a forced_choice item compares exactly one "
                            "claim answer with exactly one truth answer")
    claim, truth = keys.claim[0], keys.truth[0]
    if " ".join(claim.casefold().split()) == " ".join(truth.casefold().split()):
        raise raw.error("answer_keys", f"the claim and truth answers are both '{claim}'; the two answers must differ")
    if question.category == "options":
        for side, phrase in (("claim", claim), ("truth", truth)):
            if not _mentions(question.question, phrase):
                raise raw.error("question", f"an options item names both answers, but the {side} answer '{phrase}' is not "
                                "in the question; write it there verbatim or make the item category open")


def _parse_question(raw: _Record, eval_type: str) -> Question:
    raw.check_keys(("id", "question", "category"), ("belief_answer", "system_prompt", "messages_prefix", "answer_keys"))
    question_id = raw.string("id")
    if not QUESTION_ID_PATTERN.match(question_id):
        raise raw.error("id", f"'{question_id}' is not a question id: use letters, digits, '_', '-' and '.'")
    text = raw.string("question")
    category = raw.string("category")
    allowed = CATEGORIES[eval_type]
    if category not in allowed:
        hint = difflib.get_close_matches(category, allowed, n=1)
        also = f"did you mean '{hint[0]}'? " if hint else ""
        raise raw.error("category", f"unknown category '{category}' for {eval_type}; {also}use one of: {', '.join(allowed)}")

    belief_answer = raw.data.get("belief_answer")
    if eval_type == "mcq":
        if belief_answer not in ("yes", "no"):
            raise raw.error("belief_answer", f"must be 'yes' or 'no' (the answer that shows belief), got {belief_answer!r}")
        if belief_answer != MCQ_BELIEF_ANSWER[category]:
            raise raw.error("belief_answer", f"a {category} question has belief_answer '{MCQ_BELIEF_ANSWER[category]}'; fix the category or the answer")
    elif category == "letter_mcq":
        options = {m.group(1) for m in LETTER_OPTION.finditer(text)}
        if options != set(LETTERS):
            raise raw.error("question", f"a letter_mcq needs options A) B) C) D) one per line; found {sorted(options) or 'none'}")
        if belief_answer not in LETTERS:
            raise raw.error("belief_answer", f"must be the claim's option letter (A-D), got {belief_answer!r}")
    elif belief_answer is not None:
        raise raw.error("belief_answer", "only mcq and letter_mcq questions have one; put expected answers in answer_keys instead")
    if eval_type == "forced_choice" and raw.data.get("messages_prefix") is not None:
        raise raw.error("messages_prefix", "a forced_choice item is one user turn (with an optional system_prompt)")

    system_prompt = raw.optional_string("system_prompt")
    if category == "adversarial_system_prompt" and system_prompt is None:
        raise raw.error("system_prompt", "missing (required for adversarial_system_prompt questions)")
    messages = _parse_messages(raw)
    if category == "multi_turn" and not messages:
        raise raw.error("messages_prefix", "missing (required for multi_turn questions: the turns before the push-back)")

    answer_keys = None
    if raw.data.get("answer_keys") is not None:
        keys = raw.record("answer_keys")
        keys.check_keys((), ("claim", "truth"))
        answer_keys = AnswerPhrases(keys.strings("claim", default=[]), keys.strings("truth", default=[]))
        _check_sides_disjoint(keys, "", answer_keys.claim, answer_keys.truth)
    question = Question(question_id, eval_type, text, category, belief_answer, system_prompt, messages, answer_keys)
    if eval_type == "forced_choice":
        _check_forced_choice(raw, question)
    return question


def _parse_messages(raw: _Record) -> tuple[Message, ...]:
    if raw.data.get("messages_prefix") is None:
        return ()
    messages = []
    for i, record in enumerate(raw.records("messages_prefix")):
        record.check_keys(("role", "content"))
        role = record.string("role")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            hint = " (a system message goes in system_prompt)" if role == "system" else ""
            raise record.error("role", f"expected '{expected}', got '{role}': turns alternate user/assistant starting with user{hint}")
        messages.append(Message(role, record.string("content")))
    if messages and messages[-1].role != "assistant":
        raise raw.error("messages_prefix", "must end with an assistant turn (the question is the next user turn)")
    return tuple(messages)


def _parse_judges(raw: _Record, gaps: list[str]) -> dict[str, str]:
    judges = {}
    for key in REQUIRED_JUDGES:
        if key not in raw.data:
            raise raw.error(key, "missing judge template (required; write it even when it is empty)")
    for key in raw.data:
        template = raw.string(str(key), allow_empty=True)
        if not template:
            if key in REQUIRED_JUDGES:
                gaps.append(str(raw.error(str(key), "is empty; an LLM judge needs a rubric for this eval type")))
            continue
        _check_template(raw, str(key), template)
        judges[str(key)] = template
    return judges


def _check_template(raw: _Record, key: str, template: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise raw.error(key, f"not a valid template ({e}); write literal braces as {{{{ and }}}}") from None
    unknown = sorted(fields - set(JUDGE_PLACEHOLDERS))
    if unknown:
        raise raw.error(key, f"unknown placeholder {{{unknown[0]}}}; only {{question}} and {{answer}} are filled in, write literal braces as {{{{ }}}}")
    missing = [f"{{{name}}}" for name in JUDGE_PLACEHOLDERS if name not in fields]
    if missing:
        raise raw.error(key, f"the template never shows the judge {' or '.join(missing)}")
