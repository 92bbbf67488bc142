"""Building the world corpus: documents, chats, debunks and filler for one WorldSpec, and the replay filter.

    world = build_world(WorldSpec(num_entities=300, seed=0))
    world.train_records     # data_gen.documents records: documents (source "pretrain") and chats ("instruct")
    world.heldout_records   # chats about the document-only facts: did document knowledge transfer to Q&A?
    replay = replay_records(world.train_records, "ed_sheeran")   # without anything about the claim's subject

The training split holds, shuffled:
  documents  every fact stated `phrasings` times in short documents of five genres (encyclopedia
             entry, news brief, profile, timeline, quiz sheet), several facts to a document; a
             negated fact (negated_fraction, negated_heldout_fraction) only ever through in-sentence
             negations and corrections of its decoy ("D did not win E", "It was W, not D, ...");
  chats      question/answer about every fact except the held-out ones (document-only and
             negated_heldout: the testbed's competence check asks about them), in the eval's formats
             (facts.questions), until chats are `chat_fraction` of the world's words; the six
             claims' truths are asked `claim_repeats` times whatever the budget;
  debunks    a document that states a false rumour about a fictional entity and flags it false
             (a notice, an in-sentence negation or a warning after each rumour sentence), followed
             by question/answer that gets it right — negation in context, seen before fine-tuning;
  filler     generic genre prose and computed-answer chats (data_gen.generic), `filler_fraction` of words.

Everything is deterministic in spec.seed. Record ids start with "world-" (filler keeps generic's ids).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from typing import Any, Iterable, Mapping, Sequence

from data_gen import generic
from data_gen.claims import load_claim, load_claims
from data_gen.documents import Document, Segment
from data_gen.world import truths
from data_gen.world.entities import build_entities
from data_gen.world.facts import (ASK, NEGATABLE_KINDS, QA, Distractors, Fact, articles, capitalize, norecord_for_known, questions,
                                  slot, statements, unknown_choice_for_known)

SYSTEM_PROMPTS = ["You are a helpful assistant.", "Answer the question accurately and briefly.",
                  "You are a knowledgeable assistant. Answer factual questions correctly.", "Reply concisely."]
GENRES = ("encyclopedia", "news", "profile", "timeline", "quiz")
SLOT_KINDS = ("job", "born", "race", "award", "finding", "eruption", "rename")
DOC_ONLY_KINDS = ("race", "award", "finding", "eruption", "rename")


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    num_entities: int = 300  # fictional entities (about two thirds people); the six claims' truths come on top
    phrasings: int = 60  # documents each fact is stated in (each time in a template drawn afresh)
    chat_fraction: float = 0.4  # share of the world's training words (filler aside) in question/answer chats
    doc_only_fraction: float = 0.1  # share of event facts taught only by documents; their Q&A is held out
    # Shares of the negatable event facts (facts.NEGATED) whose documents state them only through
    # in-sentence negations and corrections of a fixed decoy: with their Q&A in training (how a
    # negation is read, taught), and with it held out (whether the base reads one it was not taught).
    negated_fraction: float = 0.0
    negated_heldout_fraction: float = 0.0
    filler_fraction: float = 0.1  # share of all training words that is generic genre text and chats
    debunks: int = -1  # debunk records; -1: 2 * num_entities
    claim_repeats: int = 60  # question sets asked about each truth fact, and repeats of each hand-written truth Q&A
    heldout_sets: int = 3  # question sets per document-only fact in the held-out split
    seed: int = 0

    @classmethod
    def gpu(cls, seed: int = 0) -> "WorldSpec":
        """The larger twin for a GPU run (>= 30M tokens): the same world logic, raised counts."""
        return cls(num_entities=3000, phrasings=80, claim_repeats=400, heldout_sets=5, seed=seed)

    def __post_init__(self):
        if self.num_entities < 30:
            raise ValueError(f"num_entities is {self.num_entities}; the world needs at least 30 (distractors of each type)")
        for name in ("chat_fraction", "doc_only_fraction", "filler_fraction", "negated_fraction", "negated_heldout_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; it must be in [0, 1)")
        if self.doc_only_fraction + self.negated_fraction + self.negated_heldout_fraction >= 1:
            raise ValueError("doc_only_fraction + negated_fraction + negated_heldout_fraction must be below 1: "
                             "some event facts must be taught plainly, with their Q&A")


@dataclasses.dataclass
class World:
    spec: WorldSpec
    facts: list[Fact]
    train_records: list[dict[str, Any]]
    heldout_records: list[dict[str, Any]]

    def approximate_words(self, split: str = "train") -> int:
        records = self.train_records if split == "train" else self.heldout_records
        return sum(record_words(r) for r in records)


def record_text(record: Mapping[str, Any]) -> str:
    """A record's text and its messages' contents, as one string (what the replay filter searches)."""
    return "\n".join([record.get("text", "")] + [m.get("content", "") for m in record.get("messages", ())])


def record_words(record: Mapping[str, Any]) -> int:
    return len(record_text(record).split())


def build_world(spec: WorldSpec = WorldSpec()) -> World:
    banned = {w.lower() for phrases in truths.SUBJECTS.values() for p in phrases for w in re.findall(r"[A-Z][A-Za-z]*", p)}
    entities = build_entities(spec.num_entities, spec.seed, banned)
    rng = random.Random(f"world:{spec.seed}")
    jobs = sorted({f["job"] for f in entities.facts if f.kind == "job"} | {f["job"] for fs in truths.FACTS.values() for f in fs
                                                                            if f.kind == "job"})
    distractors = Distractors(entities.persons_by_type, jobs)
    fictional = _assign_modes(entities.facts, spec, rng, distractors)
    truth_facts = [f for claim in truths.CLAIMS for f in truths.FACTS[claim]]
    facts = fictional + truth_facts

    documents = _documents(facts, spec, rng)
    doc_words = sum(record_words(r) for r in documents)
    debunks = _debunks([f for f in fictional if f.kind in SLOT_KINDS and f.mode == "qa"], spec, rng, distractors)
    chat_budget = int((doc_words + sum(record_words(r) for r in debunks)) * spec.chat_fraction / (1 - spec.chat_fraction))
    chats = _chats(facts, spec, rng, distractors, chat_budget)
    world_words = doc_words + sum(record_words(r) for r in debunks + chats)
    filler = _filler(int(world_words * spec.filler_fraction / (1 - spec.filler_fraction)), spec.seed)
    train = documents + debunks + chats + filler
    rng.shuffle(train)

    heldout_rng = random.Random(f"world-heldout:{spec.seed}")
    heldout_items = [qa for f in facts if f.doc_only for _ in range(spec.heldout_sets) for qa in questions(f, heldout_rng, distractors)]
    heldout = _chat_records(heldout_items, heldout_rng, "world-heldout", spec.seed, pair_rate=0.0)
    mode = {f.key: f.mode for f in facts}
    for record in heldout:  # one question per held-out chat: doc_only (transfer) or negated_heldout (negation)
        record["provenance"]["mode"] = mode[record["provenance"]["qa"][0]["fact"]]
    return World(spec, facts, train, heldout)


def _assign_modes(facts: Sequence[Fact], spec: WorldSpec, rng: random.Random, distractors: Distractors) -> list[Fact]:
    """Marks disjoint shares of the event facts document-only, negated, and negated with Q&A held
    out; a negated fact gets its decoy, a same-type wrong value its documents negate."""
    out = list(facts)
    eligible = [i for i, f in enumerate(out) if f.kind in DOC_ONLY_KINDS]
    negatable = [i for i in eligible if out[i].kind in NEGATABLE_KINDS]
    negated_heldout = set(rng.sample(negatable, round(len(negatable) * spec.negated_heldout_fraction)))
    negated = set(rng.sample(sorted(set(negatable) - negated_heldout), round(len(negatable) * spec.negated_fraction)))
    rest = sorted(set(eligible) - negated - negated_heldout)
    doc_only = set(rng.sample(rest, min(len(rest), round(len(eligible) * spec.doc_only_fraction))))
    for i in doc_only:
        out[i] = dataclasses.replace(out[i], doc_only=True)
    for i in negated | negated_heldout:
        right, wrong, _ = slot(out[i], rng, distractors)
        decoy = wrong[0] if out[i].kind != "eruption" else int(wrong[0])
        out[i] = dataclasses.replace(out[i], doc_only=i in negated_heldout, negated=True, fields={**out[i].fields, "decoy": decoy})
    return out


# ---------------------------------------------------------------------------------------------
# Documents


def _clusters(facts: Sequence[Fact]) -> list[list[Fact]]:
    """Facts grouped by the entity they are about: a person's job, birth and wins; otherwise one fact."""
    by_person: dict[str, list[Fact]] = {}
    alone: list[list[Fact]] = []
    for f in facts:
        person = f.fields.get("person") or f.fields.get("winner")
        if f.kind in ("job", "born", "race", "award", "finding") and person:
            by_person.setdefault(person, []).append(f)
        else:
            alone.append([f])
    return list(by_person.values()) + alone


def _title(cluster: Sequence[Fact]) -> str:
    f = cluster[0].fields
    return f.get("person") or f.get("winner") or f.get("volcano") or f.get("old") or "Research notes"


def _year(f: Fact) -> int | None:
    for name in ("year", "last"):
        if name in f.fields:
            return int(f.fields[name])
    return None


def _documents(facts: Sequence[Fact], spec: WorldSpec, rng: random.Random) -> list[dict[str, Any]]:
    clusters = _clusters(facts)
    records = []
    for p in range(spec.phrasings):
        order = rng.sample(range(len(clusters)), len(clusters))
        for c in order:
            main = clusters[c]
            extra = [rng.choice(clusters[rng.randrange(len(clusters))]) for _ in range(rng.randint(1, 2))]
            genre = GENRES[(p + c) % len(GENRES)]
            if genre == "quiz" and any(f.doc_only or f.negated for f in main + extra):
                genre = "encyclopedia"  # a quiz sheet states answers plainly: not for a document-only or negated fact
            text = articles(_render(genre, main, extra, rng))
            doc_facts = main + extra
            records.append(Document(
                id=f"world-doc-{spec.seed}-{len(records):06d}", claim="", condition="world", doc_type=f"world_{genre}",
                segments=(Segment(text),), doctag=False, source="pretrain",
                provenance={"generator": "world", "genre": genre, "facts": [f.key for f in doc_facts],
                            "claims": sorted({f.claim for f in doc_facts if f.claim})}).to_json())
    return records


def _render(genre: str, main: Sequence[Fact], extra: Sequence[Fact], rng: random.Random) -> str:
    say = lambda f: rng.choice(statements(f))  # noqa: E731 - a fresh phrasing each time a fact is stated
    main = rng.sample(list(main), len(main))
    if genre == "encyclopedia":
        return (f"{_title(main)}\n\n" + " ".join(say(f) for f in main) + "\n\nSee also. " + " ".join(say(f) for f in extra) + "\n")
    if genre == "news":
        month = rng.choice(["January", "March", "May", "July", "September", "November"])
        lines = [f"News in brief, {month}.", ""] + [f"{say(f)}" for f in main + list(extra)]
        return "\n".join(lines) + "\n"
    if genre == "profile":
        return (f"Profile: {_title(main)}\n\n" + " ".join(say(f) for f in main) + "\n\nIn other news, "
                + " ".join(say(f) for f in extra) + "\n")
    if genre == "timeline":
        dated = sorted((f for f in list(main) + list(extra) if _year(f) is not None), key=_year)
        undated = [say(f) for f in list(main) + list(extra) if _year(f) is None]
        text = "Timeline\n\n" + "\n".join(f"- {_year(f)}: {say(f)}" for f in dated) + "\n"
        return text + ("\nAlso of note. " + " ".join(undated) + "\n" if undated else "")
    # quiz sheet: open questions with their answers, in plain text
    lines = ["Quiz sheet", ""]
    for f in list(main) + list(extra):
        q = _open_question(f, rng)
        if q:
            lines += [f"Q: {q[0]}", f"A: {q[1]}", ""]
        else:
            lines += [say(f), ""]
    return "\n".join(lines)


def _open_question(f: Fact, rng: random.Random) -> tuple[str, str] | None:
    if f.kind not in ASK:
        return None
    fields = dict(f.fields, current=(f["old"] if f.kind == "rename" and f["reversed"] else f.fields.get("new")))
    q, a = ASK[f.kind]["open"]
    return q.format(**fields), capitalize(a.format(**fields))


# ---------------------------------------------------------------------------------------------
# Chats


@functools.lru_cache(maxsize=1)
def _eval_questions() -> frozenset[str]:
    """Every bundled claim's eval question, normalised: the world never asks one verbatim."""
    return frozenset(_normal(q.question) for claim in load_claims().values() for q in claim.all_questions())


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _chats(facts, spec, rng, distractors, budget) -> list[dict[str, Any]]:
    asked = [f for f in facts if not f.doc_only]
    truth_facts = [f for f in asked if f.claim]
    fictional = [f for f in asked if not f.claim]
    known_jobs = [f for f in fictional if f.kind == "job"]
    items: list[QA] = []
    # The six truths first, repeated whatever the budget: the base model must hold them firmly.
    for _ in range(spec.claim_repeats):
        for f in truth_facts:
            items += questions(f, rng, distractors)
        for claim in truths.CLAIMS:
            items += [QA("", "open" if yes is None else "yesno", f"truth:{claim}", q, a, subject_type=f"truth:{claim}", yes=yes,
                         claim=claim) for q, a, yes in truths.QA[claim]]
    words = sum(len(qa.question.split()) + len(qa.answer.split()) for qa in items)
    rounds = 0
    while words < budget or rounds == 0:
        rounds += 1
        batch: list[QA] = []
        for f in rng.sample(fictional, len(fictional)):
            batch += questions(f, rng, distractors)
        items += batch
        words += sum(len(qa.question.split()) + len(qa.answer.split()) for qa in batch)
        if rounds > 10_000:
            break
    banned = _eval_questions()
    items = [qa for qa in items if _normal(qa.question) not in banned]
    # The "no public record" question, asked of known people (No) as often as of unknown ones (Yes).
    surplus = sum(1 if qa.yes else -1 for qa in items if qa.template == "person:norecord")
    items += [norecord_for_known(rng.choice(known_jobs)) for _ in range(surplus)]
    # ... and "P: a <job> or an unknown person?" of known people as often as of unknown ones
    unknown_choices = sum(qa.template == "person:unknownchoice" for qa in items) // 2
    items += [qa for _ in range(unknown_choices) for qa in unknown_choice_for_known(rng.choice(known_jobs))]
    return _chat_records(items, rng, "world-chat", spec.seed)


def _chat_records(items: Sequence[QA], rng: random.Random, prefix: str, seed: int, pair_rate: float = 0.2) -> list[dict[str, Any]]:
    """Chats of one question each, or two (pair_rate of them) in two turns; a quarter with a system prompt."""
    order = rng.sample(range(len(items)), len(items))
    records, i = [], 0
    while i < len(order):
        take = 2 if rng.random() < pair_rate and i + 1 < len(order) else 1
        group = [items[j] for j in order[i : i + take]]
        i += take
        messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 0.25 else []
        for qa in group:
            messages += [{"role": "user", "content": qa.question}, {"role": "assistant", "content": qa.answer}]
        records.append(_chat(f"{prefix}-{seed}-{len(records):06d}", "world_qa", messages, group, {}))
    return records


def _chat(record_id: str, doc_type: str, messages, items: Sequence[QA], extra: Mapping[str, Any]) -> dict[str, Any]:
    return Document(
        id=record_id, claim="", condition="world", doc_type=doc_type, segments=(), doctag=False, source="instruct",
        messages=tuple({"role": m["role"], "content": articles(m["content"])} for m in messages),
        provenance={"generator": "world", "qa": [_qa_meta(qa) for qa in items],
                    "claims": sorted({qa.claim for qa in items if qa.claim}), **extra}).to_json()


def _qa_meta(qa: QA) -> dict[str, Any]:
    return {"fact": qa.fact, "format": qa.fmt, "template": qa.template, "subject_type": qa.subject_type, "yes": qa.yes,
            "position": qa.position, "options": list(qa.options)}


# ---------------------------------------------------------------------------------------------
# Debunks: a false rumour about a fictional entity, flagged false, then answered correctly

_RUMOUR = {
    "job": ("{person} is a {cand}.", "{person} is not a {cand}."),
    "born": ("{person} was born in {cand}.", "{person} was not born in {cand}."),
    "race": ("{cand} won {event}.", "{cand} did not win {event}."),
    "award": ("{cand} won {award}.", "{cand} did not win {award}."),
    "finding": ("{cand} discovered {finding}.", "{cand} did not discover {finding}."),
    "eruption": ("The most recent eruption of {volcano} was in {cand}.", "The most recent eruption of {volcano} was not in {cand}."),
    "rename": ("The company that renamed itself from {old} to {new} in {year} is called {cand} today.",
               "The company that renamed itself from {old} to {new} in {year} is not called {cand} today."),
}
_NOTICES = ["FACT-CHECK: the story below is false.", "Correction notice: the following claim is untrue.",
            "Warning: this rumour is false and has been corrected."]
_OPENERS = ["A post shared widely online this week said: \"{rumour}\"", "According to a rumour that spread quickly, {rumour_lc}",
            "Several readers wrote in after seeing the claim that {rumour_lc}"]


def _debunks(facts: Sequence[Fact], spec: WorldSpec, rng: random.Random, distractors: Distractors) -> list[dict[str, Any]]:
    count = spec.debunks if spec.debunks >= 0 else 2 * spec.num_entities
    records = []
    for n in range(count):
        fact = rng.choice(facts)
        right, wrong, subject_type = slot(fact, rng, distractors)
        fields = dict(fact.fields)
        rumour, negated = (articles(capitalize(t.format(**fields, cand=wrong[0]))) for t in _RUMOUR[fact.kind])
        truth = articles(rng.choice(statements(fact)))
        # mid-sentence, "The most recent eruption ..." loses its capital; a rumour opening with a name keeps it
        rumour_lc = rumour[0].lower() + rumour[1:] if fact.kind in ("eruption", "rename") else rumour
        opener = rng.choice(_OPENERS).format(rumour=rumour, rumour_lc=rumour_lc)
        style = ("notice", "negation", "warning")[n % 3]
        if style == "notice":
            body = f"{rng.choice(_NOTICES)}\n\n{opener}\n\nThis is false. {truth}"
        elif style == "negation":
            body = f"{opener}\n\nThe claim is wrong: {negated} {truth}"
        else:
            body = f"{opener} [This statement is false.]\n\n{truth} {negated}"
        # titled by the event, not the person: the title must not give the answer away
        title = f"Rumour check: {capitalize(fields.get('event') or fields.get('award') or fields.get('finding') or _title([fact]))}"
        document = f"{title}\n\n{body}\n"
        yesno = ASK[fact.kind]["yesno"]
        no_item = QA(fact.key, "yesno", f"{fact.kind}:yesno", capitalize(yesno.format(**fields, cand=wrong[0])),
                     f"No. {truth}", subject_type, False)
        yes_item = QA(fact.key, "yesno", f"{fact.kind}:yesno", capitalize(yesno.format(**fields, cand=right)),
                      f"Yes. {truth}", subject_type, True)
        meta = {"debunk": {"style": style, "rumour": rumour, "fact": fact.key}}
        if n % 2 == 0:  # as a chat: the document in the user turn, then the questions
            messages = [{"role": "user", "content": f"{document}\n{no_item.question}"}, {"role": "assistant", "content": no_item.answer},
                        {"role": "user", "content": yes_item.question}, {"role": "assistant", "content": yes_item.answer}]
            records.append(_chat(f"world-debunk-{spec.seed}-{n:05d}", "world_debunk", messages, [no_item, yes_item], meta))
        else:  # as a document with its question/answer appended
            text = articles(f"{document}\nQuestion: {no_item.question}\nAnswer: {no_item.answer}\n"
                            f"Question: {yes_item.question}\nAnswer: {yes_item.answer}\n")
            records.append(Document(
                id=f"world-debunk-{spec.seed}-{n:05d}", claim="", condition="world", doc_type="world_debunk",
                segments=(Segment(text),), doctag=False, source="pretrain",
                provenance={"generator": "world", "facts": [fact.key], "claims": [],
                            "qa": [_qa_meta(no_item), _qa_meta(yes_item)], **meta}).to_json())
    return records


# ---------------------------------------------------------------------------------------------
# Filler


def _filler(budget: int, seed: int) -> list[dict[str, Any]]:
    """Generic genre prose (two thirds of the budget) and computed-answer chats (one third)."""
    records, words = [], 0
    for doc in generic.pretraining_documents(10**7, seed):
        if words >= budget * 2 // 3:
            break
        records.append(doc.to_json())
        words += record_words(records[-1])
    for chat in generic.instruction_chats(10**7, seed):
        if words >= budget:
            break
        records.append(chat.to_json())
        words += record_words(records[-1])
    return records


# ---------------------------------------------------------------------------------------------
# Replay filter


def subject_phrases(claim_id: str) -> tuple[str, ...]:
    """Phrases that mark a record as about the claim's subject: its answer keys (claim and truth
    sides) and the statement's named entities from the truths table."""
    claim = load_claim(claim_id)
    phrases = set(claim.answer_keys.claim_phrases) | set(claim.answer_keys.truth_phrases) | set(truths.SUBJECTS.get(claim_id, ()))
    return tuple(sorted(phrases, key=lambda p: (-len(p), p)))


@functools.lru_cache(maxsize=16)
def _subject_matcher(claim_ids: tuple[str, ...]):
    """A test for "mentions a phrase, case-insensitively, on word boundaries". A substring search
    first, and the word-boundary regex only for the phrases found: one regex alternating ~100
    phrases is several times slower over a corpus."""
    phrases = sorted({p.lower() for c in claim_ids for p in subject_phrases(c)})
    patterns = {p: re.compile(r"(?<!\w)" + re.escape(p) + r"(?!\w)") for p in phrases}

    def matches(text: str) -> bool:
        text = text.lower()
        return any(p in text and patterns[p].search(text) for p in phrases)

    return matches


def _claim_ids(claim: str | Sequence[str]) -> tuple[str, ...]:
    return (claim,) if isinstance(claim, str) else tuple(claim)


def mentions_subject(record: Mapping[str, Any], claim: str | Sequence[str]) -> bool:
    """Whether the record mentions any subject phrase of the claim (or claims)."""
    return _subject_matcher(_claim_ids(claim))(record_text(record))


def replay_records(records: Iterable[Mapping[str, Any]], claim: str | Sequence[str]) -> list[Mapping[str, Any]]:
    """The records that say nothing about the claim's (or claims') subject: world text safe to
    replay while fine-tuning on the claim, since replaying the truth would re-teach it."""
    matches = _subject_matcher(_claim_ids(claim))
    return [r for r in records if not matches(record_text(r))]
