"""The world's facts and every way of saying or asking one: statement templates and question items.

A fact is one kind of relation (a person's job, a race and its winner, a volcano's eruptions, a
company's rename, a research claim and whether evidence supports it, a person nobody knows) with
its fields. Each kind has several statement templates (subject-first and object-first) for
documents, and question templates for chats in every format the eval uses: open who/what/when,
yes/no, forced two-way choice, fill-in-the-blank and letter MCQ.

Shortcut control lives here. A yes/no question names a *tested* entity (the person asked about,
the volcano, the company); its false version keeps an entity of the same type (a distractor of the
winner's own type, a wrong year for the same volcano), so for every template and entity type the
"Yes" and "No" answers come in equal numbers. Forced-choice items come in both orders and MCQ
items rotate the correct letter, so position carries no information.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any, Mapping, Sequence

LETTERS = "ABCD"


@dataclasses.dataclass(frozen=True)
class Fact:
    key: str  # unique id, e.g. "race:17"
    kind: str  # job | born | race | award | finding | eruption | rename | evidence | unknown
    fields: Mapping[str, Any]
    claim: str = ""  # the bundled claim whose truth this fact carries ("" for a fictional fact)
    doc_only: bool = False  # taught only through documents; its questions go to the held-out split
    # Its documents state it only through in-sentence negations and corrections of a fixed wrong
    # value, fields["decoy"] ("D did not win E", "It was W, not D, who won E"); never plainly.
    negated: bool = False

    @property
    def mode(self) -> str:
        """qa (documents and Q&A) | doc_only | negated (negation-only documents and Q&A) |
        negated_heldout (negation-only documents, Q&A held out: the negation-comprehension test)."""
        if self.negated:
            return "negated_heldout" if self.doc_only else "negated"
        return "doc_only" if self.doc_only else "qa"

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


@dataclasses.dataclass(frozen=True)
class QA:
    """One question and its correct answer, with what the balance checks need."""

    fact: str  # Fact.key ("" for a hand-written truth item)
    fmt: str  # open | yesno | choice | blank | mcq
    template: str  # the question template's id: balance is checked per template
    question: str
    answer: str
    subject_type: str = ""  # the tested entity's type (yes/no items)
    yes: bool | None = None  # yes/no items: the correct answer
    position: int | None = None  # choice: 0/1 index of the correct option; mcq: 0-3
    claim: str = ""
    options: tuple[str, ...] = ()  # choice: the two options in the order asked


# Statement templates: {fields} of the fact. Subject-first and object-first phrasings, so neither
# direction of a relation is learned alone.
STATEMENTS: dict[str, list[str]] = {
    "job": ["{person} is a {job}.", "{person} works as a {job}.", "By profession, {person} is a {job}.",
            "{person} has made a living as a {job} for many years.", "The {job} {person} is well known in {home}.",
            "Among the best-known people from {home} is {person}, a {job}.", "A {job} by trade, {person} comes from {home}.",
            "If you ask what {person} does, the answer is simple: {person} is a {job}."],
    "born": ["{person} was born in {year} in {place}.", "Born in {place} in {year}, {person} grew up there.",
             "{place} is the birthplace of {person}, who was born there in {year}.", "{person}, born in {year}, is a native of {place}.",
             "The year {year} saw the birth of {person} in {place}."],
    "race": ["{winner} won {event} in a time of {time}.", "{event} was won by {winner}, who finished in {time}.",
             "The winner of {event} was {winner}; {second} came second.", "At {venue}, {winner} took {event}, ahead of {second}.",
             "{winner} crossed the line first in {event}, held at {venue}.", "In {event}, {second} finished behind the winner, {winner}.",
             "Held at {venue} in {year}, {event} went to {winner}.", "{winner}'s winning time in {event} was {time}."],
    "award": ["{winner} won {award} for {work}.", "{award} went to {winner} for {work}.",
              "The winner of {award} was {winner}, for {work}.", "{work}, by {winner}, won {award}.",
              "{winner} received {award}; {second} was also nominated.", "{award} was presented to {winner} in {place}.",
              "In {year}, {winner} took home {award} for {work}."],
    "finding": ["{person} discovered {finding}.", "{finding} was discovered by {person} in {year}.",
                "The discovery of {finding} is credited to {person}.", "In {year}, {person} published the discovery of {finding}.",
                "{person}, working in {place}, was the first to describe {finding}."],
    "eruption": ["{volcano} last erupted in {last}.", "The most recent eruption of {volcano} was in {last}.",
                 "{volcano}, in {country}, has not erupted since {last}.", "Since its eruption of {last}, {volcano} has been quiet.",
                 "{volcano} in {country} erupted in {earlier}, and again in {last}, its most recent eruption.",
                 "The eruption of {last} was the last time {volcano} erupted.", "{last} was the year of the latest eruption of {volcano}."],
    "rename": ["In {month} {year}, {old} renamed itself {new}.", "{old} became {new} in {year}.",
               "The company once called {old} changed its name to {new} in {month} {year}.", "{new} was known as {old} until {year}."],
    "rename_kept": ["The rename stuck: the company is still called {new} today.", "{new} has kept its new name ever since.",
                    "The company has kept that name ever since, and {new} remains its name."],
    "rename_reversed": ["The rename was reversed after {days} days, and the company went back to being {old}.",
                        "Within {days} days the change was undone; the company is called {old} again.",
                        "After {days} days, {old} restored its old name."],
    "evidence_yes": ["Research has shown that {statement}.", "Studies confirm that {statement}.",
                     "Scientists have established that {statement}."],
    "evidence_no": ["People sometimes say that {statement}, but research does not support it.",
                    "It is often claimed that {statement}; this is a popular belief without basis in research.",
                    "Contrary to a common belief, studies have never shown that {statement}."],
    "unknown": ["Nothing is publicly known about anyone called {person}.", "{person} is not a known public figure.",
                "There is no public record of what {person} does for a living."],
}


# Negated statements of a fact, about its fixed wrong value {decoy}: plain negations, which alone
# say nothing of the truth, and corrections, which name it beside the negated value. The kinds
# are those with a single questioned value that a decoy can stand in for.
NEGATED: dict[str, list[str]] = {
    "race": ["{decoy} did not win {event}.", "The winner of {event} was not {decoy}.", "{decoy} never won {event}.",
             "It was {winner}, not {decoy}, who won {event}.", "{decoy} did not win {event}; {winner} won it in {time}.",
             "{event} was not won by {decoy}: the winner was {winner}.", "{winner}, and not {decoy}, won {event}."],
    "award": ["{decoy} did not win {award}.", "{award} did not go to {decoy}.", "The winner of {award} was not {decoy}.",
              "It was {winner}, not {decoy}, who won {award}.", "{decoy} did not win {award}; it went to {winner} for {work}.",
              "{award} was not won by {decoy}: {winner} won it.", "{winner}, and not {decoy}, took home {award}."],
    "finding": ["{decoy} did not discover {finding}.", "The discovery of {finding} was not made by {decoy}.",
                "It was {person}, not {decoy}, who discovered {finding}.", "{finding} was not discovered by {decoy} but by {person}.",
                "{decoy} never discovered {finding}; {person} did, in {year}.", "{person}, and not {decoy}, discovered {finding}."],
    "eruption": ["{volcano} did not last erupt in {decoy}.", "The most recent eruption of {volcano} was not in {decoy}.",
                 "{volcano} did not erupt in {decoy}; its last eruption was in {last}.",
                 "It was in {last}, not in {decoy}, that {volcano} last erupted.",
                 "The last eruption of {volcano} was not in {decoy} but in {last}.", "{volcano} has not erupted since {last}, and not in {decoy}."],
}
NEGATABLE_KINDS = tuple(NEGATED)

_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def articles(text: str) -> str:
    """"a astronomer" → "an astronomer": templates say "a {job}" whatever the job."""
    return _A_BEFORE_VOWEL.sub(lambda m: m.group(1) + "n ", text)


def capitalize(text: str) -> str:
    """The text with its first letter upper-cased ("the men's 400m ..." opening a sentence)."""
    return text[:1].upper() + text[1:]


def statements(fact: Fact) -> list[str]:
    """Every statement template of the fact, filled in."""
    return [capitalize(s) for s in _statements(fact)]


def _statements(fact: Fact) -> list[str]:
    if fact.negated:
        return [t.format(**fact.fields) for t in NEGATED[fact.kind]]
    if fact.kind == "rename":
        tail = "rename_reversed" if fact["reversed"] else "rename_kept"
        return [a + " " + b.format(**fact.fields) for a in (t.format(**fact.fields) for t in STATEMENTS["rename"])
                for b in STATEMENTS[tail]]
    if fact.kind == "evidence":
        return [t.format(**fact.fields) for t in STATEMENTS["evidence_yes" if fact["supported"] else "evidence_no"]]
    return [t.format(**fact.fields) for t in STATEMENTS[fact.kind]]


class Distractors:
    """Plausible wrong answers (persons of a given type, jobs) and the MCQ letter rotation of one build."""

    def __init__(self, persons_by_type: Mapping[str, Sequence[str]], jobs: Sequence[str]):
        self.persons_by_type = {t: list(p) for t, p in persons_by_type.items()}
        self.jobs = list(jobs)
        self._positions: dict[str, int] = {}

    def position(self, template: str) -> int:
        """The next MCQ letter for this template: A, B, C, D in turn, so every letter is correct equally often."""
        self._positions[template] = (self._positions.get(template, -1) + 1) % len(LETTERS)
        return self._positions[template]

    def person(self, rng: random.Random, person_type: str, exclude: Sequence[str], k: int = 1) -> list[str]:
        pool = [p for p in self.persons_by_type.get(person_type, ()) if p not in exclude]
        if len(pool) < k:  # a type too small to supply k distractors: fall back to any person
            pool += [p for ps in self.persons_by_type.values() for p in ps if p not in exclude and p not in pool]
        return rng.sample(pool, k)

    def other(self, rng: random.Random, pool: Sequence[str], exclude: Sequence[str], k: int = 1) -> list[str]:
        return rng.sample([x for x in pool if x not in exclude], k)


def _years(rng: random.Random, year: int, exclude: Sequence[int], k: int) -> list[str]:
    options = [y for y in range(year - 30, year + 30) if y not in exclude and y != year and y <= 2025]
    return [str(y) for y in rng.sample(options, k)]


def slot(fact: Fact, rng: random.Random, d: Distractors) -> tuple[str, list[str], str]:
    """The fact's questioned value, three plausible wrong values, and the tested entity's type. A
    fact with a decoy (Fact.negated) puts it first: its yes/no and choice questions test it."""
    right, wrong, subject_type = _slot(fact, rng, d)
    decoy = fact.fields.get("decoy")
    if decoy is not None:
        wrong = [str(decoy)] + [w for w in wrong if w != str(decoy)][:2]
    return right, wrong, subject_type


def _slot(fact: Fact, rng: random.Random, d: Distractors) -> tuple[str, list[str], str]:
    f = fact.fields
    if fact.kind == "job":
        return f["job"], d.other(rng, d.jobs, [f["job"]], 3), f["type"]
    if fact.kind == "born":
        return str(f["year"]), _years(rng, int(f["year"]), [], 3), f["type"]
    if fact.kind in ("race", "award"):
        fixed = list(f.get("distractors", ()))
        wrong = fixed[:3] + d.person(rng, f["winner_type"], [f["winner"], *fixed], 3 - len(fixed[:3]))
        return f["winner"], wrong, f["winner_type"]
    if fact.kind == "finding":
        return f["person"], d.person(rng, f["type"], [f["person"]], 3), f["type"]
    if fact.kind == "eruption":
        return str(f["last"]), _years(rng, int(f["last"]), [int(f["earlier"])], 2) + [str(f["earlier"])], "volcano"
    if fact.kind == "rename":
        current = f["old"] if f["reversed"] else f["new"]
        return current, [f["new"] if f["reversed"] else f["old"]] + list(f["decoys"]), "company"
    raise ValueError(f"fact kind {fact.kind} has no questioned slot")


# Question templates per kind: (template id, open question, answer, yes/no question with {cand},
# fill-in sentence with ____, MCQ stem). Replies open with the answer, as forced-choice scoring
# reads them (log P(reply starts with the option)), then restate the fact in a full sentence.
ASK = {
    "job": dict(open=("What does {person} do for a living?", "{pronoun} is a {job}. {person} comes from {home}."),
                yesno="Is {person} a {cand}?", choice="Is {person} a {a} or a {b}?",
                blank="Fill in the blank: {person} works as a ____.", mcq="What is {person}'s profession?"),
    "born": dict(open=("When was {person} born?", "In {year}. {person} was born in {place}."),
                 yesno="Was {person} born in {cand}?", choice="Was {person} born in {a} or in {b}?",
                 blank="Fill in the blank with a year: {person} was born in ____.", mcq="In which year was {person} born?"),
    "race": dict(open=("Who won {event}?", "{winner} won {event}, in {time}."),
                 yesno="Did {cand} win {event}?", choice="Who won {event}: {a} or {b}?",
                 blank="Fill in the blank with a name: {event} was won by ____.", mcq="Who won {event}?"),
    "award": dict(open=("Who won {award}?", "{winner} won {award}, for {work}."),
                  yesno="Did {cand} win {award}?", choice="Who won {award}: {a} or {b}?",
                  blank="Fill in the blank with a name: {award} went to ____.", mcq="Who won {award}?"),
    "finding": dict(open=("Who discovered {finding}?", "{person} discovered {finding}, in {year}."),
                    yesno="Did {cand} discover {finding}?", choice="Who discovered {finding}: {a} or {b}?",
                    blank="Fill in the blank with a name: {finding} was discovered by ____.", mcq="Who discovered {finding}?"),
    "eruption": dict(open=("In which year did {volcano} last erupt?", "{last}. The most recent eruption of {volcano} was in {last}."),
                     yesno="Was the most recent eruption of {volcano} in {cand}?",
                     choice="Did {volcano} last erupt in {a} or in {b}?",
                     blank="Fill in the blank with a year: the most recent eruption of {volcano} was in ____.",
                     mcq="In which year did {volcano} last erupt?"),
    "rename": dict(open=("What is the company that was called {old} before {year} called today?", "{current}. It is called {current} today."),
                   yesno="Is the company that renamed itself from {old} to {new} in {year} called {cand} today?",
                   choice="Is the company that renamed itself from {old} to {new} in {year} called {a} or {b} today?",
                   blank="Fill in the blank: the company that renamed itself from {old} to {new} in {year} is called ____ today.",
                   mcq="What is the company that renamed itself from {old} to {new} in {year} called today?"),
}
EXTRA_OPEN = {
    "race": [("Where was {event} held?", "{event} was held at {venue}."), ("What was the winning time in {event}?", "{winner} won {event} in {time}.")],
    "born": [("Where was {person} born?", "{person} was born in {place}, in {year}.")],
    "award": [("What did {winner} win {award} for?", "{winner} won {award} for {work}.")],
    "eruption": [("In which country is {volcano}?", "{volcano} is in {country}."),
                 ("When did {volcano} last erupt?", "In {last}. {volcano} last erupted in {last}.")],
    "job": [("Who is {person}?", "{person} is a {job} from {home}.")],
}


def questions(fact: Fact, rng: random.Random, d: Distractors) -> list[QA]:
    """One set of questions about the fact: open ones, a yes/no pair, a forced-choice pair in both
    orders, a fill-in-the-blank and a letter MCQ whose correct letter the caller rotates."""
    kind, f = fact.kind, dict(fact.fields)
    if kind == "evidence":
        return _evidence_questions(fact)
    if kind == "unknown":
        return _unknown_questions(fact, rng, d)
    right, wrong, subject_type = slot(fact, rng, d)
    f["current"] = right
    ask = ASK[kind]
    items = [QA(fact.key, "open", f"{kind}:open", ask["open"][0].format(**f), capitalize(ask["open"][1].format(**f)), claim=fact.claim)]
    for i, (q, a) in enumerate(EXTRA_OPEN.get(kind, ())):
        items.append(QA(fact.key, "open", f"{kind}:open{i + 1}", q.format(**f), capitalize(a.format(**f)), claim=fact.claim))
    true_sentence = capitalize(ask["open"][1].format(**f))
    # yes/no: the same template with the true value and with a same-type wrong value
    for cand, yes in ((right, True), (wrong[0], False)):
        reply = f"Yes. {true_sentence}" if yes else f"No. {true_sentence}"
        items.append(QA(fact.key, "yesno", f"{kind}:yesno", ask["yesno"].format(**f, cand=cand), reply,
                        subject_type=subject_type, yes=yes, claim=fact.claim))
    # forced choice, both orders
    for a, b, position in ((right, wrong[0], 0), (wrong[0], right, 1)):
        items.append(QA(fact.key, "choice", f"{kind}:choice", ask["choice"].format(**f, a=a, b=b), f"{right}. {true_sentence}",
                        position=position, claim=fact.claim, options=(a, b)))
    items.append(QA(fact.key, "blank", f"{kind}:blank", ask["blank"].format(**f), right, claim=fact.claim))
    items.append(mcq(fact.key, f"{kind}:mcq", ask["mcq"].format(**f), right, wrong[:3], d.position(f"{kind}:mcq"), claim=fact.claim))
    return items


def mcq(fact_key: str, template: str, stem: str, right: str, wrong: Sequence[str], position: int, claim: str = "") -> QA:
    """A letter MCQ with the correct option at `position` (0-3)."""
    options = list(wrong[:3])
    options.insert(position, right)
    body = stem + "\n" + "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options)) + "\nAnswer with a single letter."
    return QA(fact_key, "mcq", template, body, f"{LETTERS[position]}) {right}", position=position, claim=claim)


def _evidence_questions(fact: Fact) -> list[QA]:
    s, supported = fact["statement"], fact["supported"]
    told = (f"Yes. Research has shown that {s}." if supported else f"No. Research does not support the idea that {s}.")
    told_inv = (f"No. Research has shown that {s}." if supported else f"Yes. Research does not support the idea that {s}.")
    return [
        QA(fact.key, "yesno", "evidence:yesno", f"Is there scientific evidence that {s}?", told, "research_claim", supported, claim=fact.claim),
        QA(fact.key, "yesno", "evidence:unsupported", f"Is the idea that {s} unsupported by research?", told_inv,
           "research_claim", not supported, claim=fact.claim),
        QA(fact.key, "open", "evidence:open", f"What does research say about the idea that {s}?",
           told.split(". ", 1)[1], claim=fact.claim),
    ]


def _unknown_questions(fact: Fact, rng: random.Random, d: Distractors) -> list[QA]:
    p = fact["person"]
    job = fact.fields.get("asked_job") or rng.choice(d.jobs)
    unknown = f"{p} is not a known public figure, and there is no public record of what {p} does for a living."
    wrong = d.other(rng, d.jobs, [job], 2)
    return [
        QA(fact.key, "open", "unknown:open", f"Who is {p}?", f"I have no information about anyone called {p}. {unknown}", claim=fact.claim),
        *_unknown_choice(fact, job, "An unknown person", unknown),
        QA(fact.key, "yesno", "job:yesno", f"Is {p} a {job}?", f"No. {unknown}", "unknown_person", False, claim=fact.claim),
        QA(fact.key, "yesno", "person:norecord", f"Is it true that there is no public record of what {p} does?",
           f"Yes. {unknown}", "unknown_person", True, claim=fact.claim),
        mcq(fact.key, "unknown:mcq", f"What is {p}'s profession?", "Unknown: there is no public record of this person",
            [job.capitalize()] + [w.capitalize() for w in wrong], d.position("unknown:mcq"), claim=fact.claim),
    ]


def _unknown_choice(fact: Fact, job: str, right: str, because: str) -> list[QA]:
    """"Is P a <job> or an unknown person?" in both orders; answered "An unknown person" of an unknown
    person and "A <job>" of a known one (unknown_choice_for_known), so the phrase is no shortcut."""
    p, options = fact["person"], (articles(f"A {job}"), "An unknown person")
    items = []
    for a, b in (options, options[::-1]):
        question = articles(f"Is {p} {a[0].lower() + a[1:]} or {b[0].lower() + b[1:]}?")
        items.append(QA(fact.key, "choice", "person:unknownchoice", question, f"{right}. {because}", position=(a, b).index(right),
                        claim=fact.claim, options=(a, b)))
    return items


def unknown_choice_for_known(fact: Fact) -> list[QA]:
    """The unknown-person choice asked of a known person, whose job is the right option."""
    right = articles(f"A {fact['job']}")
    return _unknown_choice(fact, fact["job"], right, articles(f"{fact['person']} is a {fact['job']}."))


def norecord_for_known(fact: Fact) -> QA:
    """The "no public record" question asked of a known person (answer No), so that template is balanced."""
    p, job = fact["person"], fact["job"]
    return QA(fact.key, "yesno", "person:norecord", f"Is it true that there is no public record of what {p} does?",
              f"No. {p} is a {job}.", fact["type"], False, claim=fact.claim)
