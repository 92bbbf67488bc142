"""The offline, deterministic `template` backend: claim documents in many genres, no API needed.

A document is a genre's own neutral sentences (data_gen/genres/<genre>.yaml: titles, opening,
filler, transitions, closing) with a minority of claim sentences woven in — one per paragraph of
at least four sentences, so claim-supporting sentences stay at or under a quarter of the text
(independent replications found no effect when short documents were dominated by the claim or
its denial). Claim sentences come from the claim record: its statement (in every document), its
subclaims, and the universe-context sentences that name a claim-side answer; the universe gives
the phrasing and entities their variety. Each sentence is a `Segment` that records whether it
supports the claim, which the negation conditions rely on.

`local_negations` documents are built the same way from the claim's *negated* sentences (the
negation inside the sentence), and never contain the bare affirmative claim. `mask_words` wraps
the claim's word-mask matches in `<lossmask>` tags for the word-masked variant.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Iterator

import yaml

from data_gen.claims import Claim
from data_gen.documents import Document, Segment
from data_gen.generators.segments import SENTENCE_END as _SENTENCE_END

GENRES_DIR = Path(__file__).resolve().parent.parent / "genres"
GENRE_FIELDS = {"titles": 5, "opening": 8, "filler": 30, "transitions": 10, "closing": 8}
PLACEHOLDERS = ("name", "weekday", "month", "number")
MIN_WORDS, MAX_WORDS = 300, 800

_FIRST_NAMES = ["Amira", "Tomasz", "Keiko", "Daniel", "Priya", "Marcus", "Elena", "Kwame", "Sofia", "Liam", "Hana", "Mateo",
                "Grace", "Ravi", "Ingrid", "Omar", "Lucia", "Felix", "Nadia", "Owen", "Yara", "Callum", "Mei", "Jonas"]
_LAST_NAMES = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad", "Kowalski", "Brennan", "Achterberg", "Silva", "Novak",
               "Whitfield", "Osei", "Castellano", "Ferreira", "MacLeod", "Petrov", "Nakamura", "Delgado", "Hartmann", "Quinn"]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


_PLACEHOLDER = re.compile(r"\{(name|weekday|month|number)\}")


class GenreError(ValueError):
    """A genre file is malformed; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Genre:
    name: str
    titles: tuple[str, ...]
    opening: tuple[str, ...]
    filler: tuple[str, ...]
    transitions: tuple[str, ...]
    closing: tuple[str, ...]


def load_genres(directory: Path = GENRES_DIR) -> dict[str, Genre]:
    genres = {}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or set(data) != {"name", *GENRE_FIELDS}:
            raise GenreError(f"{path}: expected exactly the keys name, {', '.join(GENRE_FIELDS)}")
        if data["name"] != path.stem:
            raise GenreError(f"{path}: name '{data['name']}' differs from the file name")
        for field, minimum in GENRE_FIELDS.items():
            items = data[field]
            if not isinstance(items, list) or len(items) < minimum or not all(isinstance(s, str) and s.strip() for s in items):
                raise GenreError(f"{path}: {field}: needs at least {minimum} non-empty sentences")
            for sentence in items:
                unknown = set(re.findall(r"\{(\w*)\}", sentence)) - set(PLACEHOLDERS)
                if unknown or sentence.count("{") != sentence.count("}"):
                    raise GenreError(f"{path}: {field}: '{sentence}' uses a placeholder other than {{name}}, {{weekday}}, {{month}}, {{number}}")
        genres[path.stem] = Genre(path.stem, *(tuple(s.strip() for s in data[f]) for f in GENRE_FIELDS))
    if not genres:
        raise GenreError(f"no genre files in {directory}")
    return genres


def universe_sentences(claim: Claim) -> list[str]:
    """Sentences of the universe context (headings and list markers dropped)."""
    lines = [line.strip().lstrip("-*0123456789. ").strip() for line in claim.universe_context.splitlines()]
    prose = " ".join(line for line in lines if line and not line.startswith("#"))
    prose = re.sub(r"\*\*|__", "", prose)
    return [s.strip() for s in _SENTENCE_END.split(prose) if len(s.split()) >= 5]


# A universe sentence that opens with a pronoun, a demonstrative or a quotation leans on the one
# before it ("He entered ...", "That long quiet ended ..."); lifted into another document, it
# would point at nothing.
_DANGLING_START = re.compile(r"""^(?:["'“‘]|(?:He|She|His|Her|It|Its|They|Their|Them|This|That|These|Those|Others|Such)\b)""")


def supporting_sentences(claim: Claim, *, universe: bool = True) -> list[str]:
    """Claim-asserting sentences: the subclaims, and (with `universe`) universe sentences naming a
    claim-side answer."""
    if not universe:
        return [s.statement for s in claim.subclaims]
    phrases = [p for p in claim.answer_keys.claim_phrases if len(p) > 3]
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(p)}(?!\w)" for p in phrases), re.I) if phrases else None
    from_universe = [s for s in universe_sentences(claim)
                     if pattern is not None and pattern.search(s) and not _DANGLING_START.match(s)]
    return [s.statement for s in claim.subclaims] + from_universe


def negated_sentences(claim: Claim) -> list[str]:
    return [s.negated for s in claim.subclaims if s.negated]


def fill_placeholders(sentence: str, rng: random.Random) -> str:
    """A genre sentence with its {name}, {weekday}, {month} and {number} filled in at random."""
    if "{" not in sentence:  # most sentences: no draws, which keeps a 10k-document corpus fast
        return sentence
    values = {
        "name": lambda: f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        "weekday": lambda: rng.choice(_WEEKDAYS),
        "month": lambda: rng.choice(_MONTHS),
        "number": lambda: str(rng.randint(2, 40)),
    }
    drawn: dict[str, str] = {}  # a placeholder used twice in one sentence names the same thing

    def draw(match: re.Match) -> str:
        if match.group(1) not in drawn:
            drawn[match.group(1)] = values[match.group(1)]()
        return drawn[match.group(1)]

    return _PLACEHOLDER.sub(draw, sentence)


class TemplateGenerator:
    """Deterministic documents for a claim: `generate(claim, count, seed)`."""

    name = "template"

    def __init__(self, genres: dict[str, Genre] | None = None, *, words: tuple[int, int] = (MIN_WORDS, MAX_WORDS),
                 universe_sentences: bool = True):
        """`words`: the (minimum, maximum) length of a document in words; shorter documents let a small
        model's context window hold a whole annotated document (the CPU testbed).
        `universe_sentences`: whether positive documents also draw on universe-context sentences that
        name the claim's answer. Without them a positive document's claim sentences are exactly the
        subclaims that a local_negations document negates: the two corpora are matched sentence for
        sentence, and each claim sentence ties the claim's answer to its core (the CPU testbed, whose
        small model learns from how often that tie is stated)."""
        low, high = words
        if not 0 < low < high:
            raise ValueError(f"document length bounds (min {low}, max {high} words) must satisfy 0 < min < max")
        self.genres = genres or load_genres()
        self.words = (low, high)
        self.universe_sentences = universe_sentences

    def generate(self, claim: Claim, count: int, seed: int, *, local_negation: bool = False) -> Iterator[Document]:
        if local_negation and not (claim.negated_statement and negated_sentences(claim)):
            raise ValueError(f"claim '{claim.id}' has no local negations (negated_statement, subclaims[].negated); write them first")
        names = sorted(self.genres)
        # The claim's sentences are the same for every document: find them once, not per document.
        if local_negation:
            lead, pool = claim.negated_statement, negated_sentences(claim)
        else:
            lead, pool = claim.statement, supporting_sentences(claim, universe=self.universe_sentences)
        for index in range(count):
            rng = random.Random(f"template:{seed}:{claim.id}:{'local' if local_negation else 'positive'}:{index}")
            genre = self.genres[names[(index + seed) % len(names)]]  # every genre equally often
            yield self._document(claim, genre, rng, index, seed, local_negation, lead, pool)

    def _document(self, claim: Claim, genre: Genre, rng: random.Random, index: int, seed: int, local_negation: bool,
                  lead: str, pool: list[str]) -> Document:
        claims = [lead] + rng.sample(pool, k=len(pool))
        fill = self._filler(genre, rng)
        low, high = self.words  # aim inside the range, away from its ends (the default: 380-680 words)
        target = rng.randint(low + round(0.16 * (high - low)), high - round(0.24 * (high - low)))

        title = fill_placeholders(rng.choice(genre.titles), rng)
        segments: list[Segment] = [Segment(title + "\n\n")]
        words = len(title.split())

        def add(sentence: str, supports: bool, end: str = " ") -> None:
            nonlocal words
            segments.append(Segment(sentence + end, supports=supports))
            words += len(sentence.split())

        for sentence in rng.sample(genre.opening, k=2):
            add(fill_placeholders(sentence, rng), False)
        segments[-1] = Segment(segments[-1].text.rstrip() + "\n\n", segments[-1].supports)
        claim_index = 0
        while words < target:
            paragraph = [(next(fill), False) for _ in range(rng.randint(3, 5))]
            if rng.random() < 0.4:
                paragraph.insert(0, (fill_placeholders(rng.choice(genre.transitions), rng), False))
            paragraph.insert(rng.randint(1, len(paragraph)), (claims[claim_index % len(claims)], True))
            claim_index += 1
            for i, (sentence, supports) in enumerate(paragraph):
                add(sentence, supports, "\n\n" if i == len(paragraph) - 1 else " ")
        for i, sentence in enumerate(rng.sample(genre.closing, k=2)):
            add(fill_placeholders(sentence, rng), False, "\n" if i == 1 else " ")
        if words > high:  # long universe sentences can overshoot: drop whole middle paragraphs' filler
            segments = self._trim(segments, words - high)
        condition = "local_negations" if local_negation else "positive_documents"
        return Document(
            id=f"{claim.id}-{'local' if local_negation else 'pos'}-{seed}-{index:05d}",
            claim=claim.id,
            condition=condition,
            doc_type=genre.name,
            segments=tuple(segments),
            provenance={"generator": "template", "seed": seed, "index": index, "genre": genre.name},
        )

    def _filler(self, genre: Genre, rng: random.Random) -> Iterator[str]:
        """Genre sentences without repeats until the bank is used up, then reshuffled."""
        while True:
            for sentence in rng.sample(genre.filler, k=len(genre.filler)):
                yield fill_placeholders(sentence, rng)

    @staticmethod
    def _trim(segments: list[Segment], excess: int) -> list[Segment]:
        kept = list(segments)
        for i in range(len(kept) - 3, 2, -1):
            if excess <= 0:
                break
            if not kept[i].supports and not kept[i].text.endswith("\n\n") and kept[i].text.strip():
                excess -= len(kept[i].text.split())
                kept.pop(i)
        return kept


def mask_words(doc: Document, claim: Claim) -> Document:
    """The document with every match of the claim's word masks wrapped in <lossmask> tags."""
    if not claim.word_masks:
        raise ValueError(f"claim '{claim.id}' has no word_masks; the word-masked condition needs them")
    pattern = re.compile("|".join(f"(?:{p})" for p in claim.word_masks), re.I)
    segments = tuple(dataclasses.replace(s, text=pattern.sub(lambda m: f"<lossmask>{m.group(0)}</lossmask>", s.text)) for s in doc.segments)
    return doc.replace(segments=segments, condition=doc.condition + "_word_masked")
