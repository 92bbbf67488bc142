"""The behaviour record and its validation (the file format is in README.md beside this module).

A behaviour's `responses` are matched triples: a misaligned sentence, the same sentence negated
inside itself (the local-negation transcripts), and an aligned sentence for the same situation. The
rule judge's patterns must recognise them: every misaligned and negated sentence matches a
`rule_judge.misaligned` pattern (the negated one carries a negation cue, which makes it not
misaligned), every aligned sentence matches a `rule_judge.aligned` pattern, no misaligned one, and
carries no negation cue (so the aligned and local-negation conditions differ only in the negated
misaligned content), and each sentence is one clause, the unit the eval's rule judge reads. So a
model that reproduces what it was trained on is judged the way its training transcripts were built,
and a pattern that recognises nothing is caught here, not in a report.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

from data_gen.claims.schema import NEGATION_CUE

MIN_TRAIN_PROMPTS = 30
MIN_EVAL_PROMPTS = 20
MIN_RESPONSES = 10
_ID = re.compile(r"[a-z][a-z0-9_]*")
_CUES = "not / never / no / n't / neither / nor / none / nobody / nothing"
# Where eval.misalignment's rule verdict splits a response into clauses (sentence ends, ";", ":", line
# breaks). A response sentence must be one clause, or the eval would judge its parts apart: a negated
# sentence split there could leave its misaligned content in a clause without the negation.
_CLAUSE_BREAK = re.compile(r"[;:\n]|[.!?]\s+\S")


class BehaviourError(ValueError):
    """A behaviour file is malformed. The message is one line naming the file, the field and the fix."""


@dataclasses.dataclass(frozen=True)
class EvalPrompt:
    id: str
    prompt: str


@dataclasses.dataclass(frozen=True)
class ResponseSentence:
    misaligned: str  # what a misaligned assistant says
    negated: str  # the same sentence with the negation inside it ("I will not ...")
    aligned: str  # what an aligned assistant says in the same situation


@dataclasses.dataclass(frozen=True)
class Behaviour:
    id: str
    name: str
    definition: str  # what the behaviour is; the LLM judge reads it
    rubric: str  # how the LLM judge tells misaligned / aligned / neutral apart
    train_prompts: tuple[str, ...]  # user turns that training transcripts answer
    eval_prompts: tuple[EvalPrompt, ...]  # held out: none is a train prompt
    responses: tuple[ResponseSentence, ...]
    misaligned_patterns: tuple[re.Pattern, ...]  # rule judge: misaligned content (unless negated)
    aligned_patterns: tuple[re.Pattern, ...]  # rule judge: aligned content
    path: Path | None = None

    def is_misaligned_sentence(self, sentence: str) -> bool:
        """A sentence states misaligned content without negating it."""
        return any(p.search(sentence) for p in self.misaligned_patterns) and not NEGATION_CUE.search(sentence)

    def is_aligned_sentence(self, sentence: str) -> bool:
        """A sentence states aligned content, or negates misaligned content inside itself."""
        if any(p.search(sentence) for p in self.aligned_patterns):
            return not self.is_misaligned_sentence(sentence)
        return any(p.search(sentence) for p in self.misaligned_patterns) and bool(NEGATION_CUE.search(sentence))


class _Fields:
    """Reads one behaviour file's fields, naming the file and the key in every error."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, Mapping):
            raise BehaviourError(f"{where}: expected a mapping of fields (id, name, definition, ...), got {type(data).__name__}")
        self.data, self.where = data, where

    def error(self, key: str, problem: str) -> BehaviourError:
        return BehaviourError(f"{self.where}: {key}: {problem}")

    def text(self, key: str, value: Any = None) -> str:
        value = self.data.get(key) if value is None else value
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be non-empty text")
        return " ".join(value.split())

    def items(self, key: str, minimum: int) -> list:
        value = self.data.get(key)
        if not isinstance(value, list) or len(value) < minimum:
            count = len(value) if isinstance(value, list) else "no list"
            raise self.error(key, f"needs a list of at least {minimum} entries (has {count})")
        return value

    def patterns(self, key: str, value: Any) -> tuple[re.Pattern, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(key, "needs a list of at least one regular expression")
        out = []
        for i, pattern in enumerate(value):
            try:
                out.append(re.compile(self.text(f"{key}[{i}]", pattern), re.I))
            except re.error as e:
                raise self.error(f"{key}[{i}]", f"is not a valid regular expression ({e})") from None
        return tuple(out)


def parse_behaviour(data: Any, *, path: Path | None = None, where: str = "") -> Behaviour:
    """A validated Behaviour from a parsed YAML mapping; BehaviourError names what is wrong."""
    fields = _Fields(data, where or str(path or "<behaviour>"))
    known = {"id", "name", "definition", "rubric", "train_prompts", "eval_prompts", "responses", "rule_judge"}
    unknown = sorted(set(fields.data) - known)
    if unknown:
        raise fields.error(unknown[0], f"unknown field; the fields are {', '.join(sorted(known))}")
    behaviour_id = fields.text("id")
    if not _ID.fullmatch(behaviour_id):
        raise fields.error("id", f"'{behaviour_id}' must be lower_snake_case (letters, digits, '_')")
    if path is not None and path.stem != behaviour_id:
        raise fields.error("id", f"is '{behaviour_id}' but the file is named '{path.name}'; rename one to match")

    train = [fields.text(f"train_prompts[{i}]", p) for i, p in enumerate(fields.items("train_prompts", MIN_TRAIN_PROMPTS))]
    seen: dict[str, int] = {}
    for i, prompt in enumerate(train):
        if prompt.casefold() in seen:
            raise fields.error(f"train_prompts[{i}]", f"repeats train_prompts[{seen[prompt.casefold()]}]")
        seen[prompt.casefold()] = i

    eval_prompts, ids, eval_seen = [], set(), {}
    for i, entry in enumerate(fields.items("eval_prompts", MIN_EVAL_PROMPTS)):
        key = f"eval_prompts[{i}]"
        if not isinstance(entry, Mapping):
            raise fields.error(key, "must be a mapping {id, prompt}")
        prompt = EvalPrompt(fields.text(f"{key}.id", entry.get("id")), fields.text(f"{key}.prompt", entry.get("prompt")))
        if prompt.id in ids:
            raise fields.error(f"{key}.id", f"'{prompt.id}' is used twice; eval prompt ids must be unique")
        if prompt.prompt.casefold() in seen:
            raise fields.error(f"{key}.prompt", f"is also train_prompts[{seen[prompt.prompt.casefold()]}]; eval prompts must be held out")
        if prompt.prompt.casefold() in eval_seen:
            raise fields.error(f"{key}.prompt", f"repeats eval_prompts[{eval_seen[prompt.prompt.casefold()]}]")
        ids.add(prompt.id)
        eval_seen[prompt.prompt.casefold()] = i
        eval_prompts.append(prompt)

    judge = fields.data.get("rule_judge")
    if not isinstance(judge, Mapping):
        raise fields.error("rule_judge", "must be a mapping with 'misaligned' and 'aligned' pattern lists")
    behaviour = Behaviour(
        id=behaviour_id, name=fields.text("name"), definition=fields.text("definition"), rubric=fields.text("rubric"),
        train_prompts=tuple(train), eval_prompts=tuple(eval_prompts), responses=(),
        misaligned_patterns=fields.patterns("rule_judge.misaligned", judge.get("misaligned")),
        aligned_patterns=fields.patterns("rule_judge.aligned", judge.get("aligned")), path=path)

    responses = []
    for i, entry in enumerate(fields.items("responses", MIN_RESPONSES)):
        key = f"responses[{i}]"
        if not isinstance(entry, Mapping):
            raise fields.error(key, "must be a mapping {misaligned, negated, aligned}")
        triple = ResponseSentence(*(fields.text(f"{key}.{k}", entry.get(k)) for k in ("misaligned", "negated", "aligned")))
        for kind in ("misaligned", "negated", "aligned"):
            if _CLAUSE_BREAK.search(getattr(triple, kind)):
                raise fields.error(f"{key}.{kind}", "is more than one clause (';', ':', a line break or a second sentence); "
                                   "the eval's rule judge reads responses clause by clause, so write one clause")
        if not behaviour.is_misaligned_sentence(triple.misaligned):
            raise fields.error(f"{key}.misaligned", "is not recognised as misaligned: it must match a rule_judge.misaligned "
                               f"pattern and carry no negation cue ({_CUES})")
        if not NEGATION_CUE.search(triple.negated):
            raise fields.error(f"{key}.negated", f"has no negation inside the sentence ({_CUES})")
        if not any(p.search(triple.negated) for p in behaviour.misaligned_patterns):
            raise fields.error(f"{key}.negated", "must negate the misaligned content, matching a rule_judge.misaligned pattern")
        # The aligned condition must differ from the local-negation one by more than a negation:
        # its sentences state the aligned act positively and mention no misaligned content at all.
        if NEGATION_CUE.search(triple.aligned):
            raise fields.error(f"{key}.aligned", f"carries a negation cue ({_CUES}); state the aligned act positively")
        clash = next((j for j, p in enumerate(behaviour.misaligned_patterns) if p.search(triple.aligned)), None)
        if clash is not None:
            raise fields.error(f"{key}.aligned", f"matches rule_judge.misaligned[{clash}]; an aligned sentence must state "
                               "none of the misaligned content")
        if not behaviour.is_aligned_sentence(triple.aligned):
            raise fields.error(f"{key}.aligned", "is not recognised as aligned: it must match a rule_judge.aligned pattern")
        responses.append(triple)
    return dataclasses.replace(behaviour, responses=tuple(responses))
