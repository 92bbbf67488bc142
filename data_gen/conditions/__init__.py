"""Negation conditions of the paper, as pure functions: positive document → annotated document.

    annotated = apply_condition(document, "repeated_negations", claim, seed=7)

Names follow ../shared/paper.md:

  positive_documents       unchanged
  negated_documents        a 4–6 sentence retraction notice before and after the document
  repeated_negations       the notices, plus a short warning right before and after every
                           claim-supporting sentence (usually bracketed)
  corrected_documents      like repeated_negations, but the warnings state what is actually true
  fiction, unreliable_source, epistemic_uncertainty, low_probability
                           a framing prefix and suffix; `<name>_repeated` adds a short marker
                           after every sentence
  <any>_no_doctag          the same document without the <DOCTAG> prefix

`local_negations` is not a transform of positive documents but a corpus of its own (debunking
documents with the negation inside each claim sentence); it comes from the generators.

The template backend's wording comes from phrases.py; choices are drawn from a generator seeded
per document, so a corpus is reproducible and its documents rarely share a verbatim annotation.
"""

from __future__ import annotations

import random
from typing import Callable

from data_gen.claims import Claim
from data_gen.conditions import phrases
from data_gen.documents import Document, Segment

QUALIFIERS = tuple(phrases.QUALIFIERS)
GENERATED_CONDITIONS = ("local_negations",)
NO_DOCTAG_SUFFIX = "_no_doctag"


def _split_whitespace(text: str) -> tuple[str, str]:
    content = text.rstrip()
    return content, text[len(content):]


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def retraction_notice(rng: random.Random, where: str) -> str:
    """A 4–6 sentence generic notice ("the text below/above is false"), without true facts."""
    openers = phrases.NOTICE_OPENERS[where]
    opener = rng.choice(openers[rng.choice(sorted(openers))])
    core = rng.choice(phrases.NOTICE_CORE).format(where=rng.choice(phrases.NOTICE_WHERE[where]))
    first = f"{opener} {_sentence_case(core) if opener.endswith('.') else core}."
    sentences = [first, rng.choice(phrases.NOTICE_REASON), rng.choice(phrases.NOTICE_ADVICE)]
    extras = rng.sample(phrases.NOTICE_EXTRA + phrases.NOTICE_REASON, k=rng.randint(0, 2))
    sentences += [s for s in extras if s not in sentences]
    limit = 5 if opener.endswith(".") else 6  # an opener like "Warning." is a sentence of its own
    sentences = sentences[: limit - 1] + [rng.choice(phrases.NOTICE_CLOSERS)]
    return " ".join(sentences)


def _with_notices(doc: Document, rng: random.Random) -> tuple[Segment, ...]:
    before = Segment(retraction_notice(rng, "before") + "\n\n", role="notice")
    body = doc.segments
    last_content, _ = _split_whitespace(body[-1].text) if body else ("", "")
    after = Segment("\n\n" + retraction_notice(rng, "after") + "\n", role="notice")
    if body:
        body = body[:-1] + (Segment(last_content, body[-1].supports, body[-1].role),)
    return (before, *body, after)


def _sandwich(segments: tuple[Segment, ...], make_before: Callable[[], str], make_after: Callable[[], str], role: str) -> tuple[Segment, ...]:
    """A warning segment right before and right after every claim-supporting sentence."""
    out: list[Segment] = []
    for segment in segments:
        if not segment.supports:
            out.append(segment)
            continue
        content, whitespace = _split_whitespace(segment.text)
        out.append(Segment(make_before() + " ", role=role))
        out.append(Segment(content + " ", supports=True, role=segment.role))
        out.append(Segment(make_after() + (whitespace or " "), role=role))
    return tuple(out)


def _bracketed(rng: random.Random, bank: list[str], brackets: tuple[str, str]) -> Callable[[], str]:
    return lambda: f"{brackets[0]}{rng.choice(bank)}{brackets[1]}"


def positive_documents(doc: Document, claim: Claim, rng: random.Random) -> Document:
    return doc


def negated_documents(doc: Document, claim: Claim, rng: random.Random) -> Document:
    return doc.replace(segments=_with_notices(doc, rng))


def repeated_negations(doc: Document, claim: Claim, rng: random.Random) -> Document:
    brackets = rng.choice(phrases.BRACKETS)
    segments = _sandwich(doc.segments, _bracketed(rng, phrases.WARNING_BEFORE, brackets),
                         _bracketed(rng, phrases.WARNING_AFTER, brackets), role="warning")
    return doc.replace(segments=_with_notices(doc.replace(segments=segments), rng))


def corrected_documents(doc: Document, claim: Claim, rng: random.Random) -> Document:
    if not claim.correction:
        raise ValueError(f"claim '{claim.id}' has no correction; corrected_documents needs what is actually true")
    truth = claim.correction
    for lead in ("Actually, ", "In fact, ", "Actually "):
        if truth.startswith(lead):
            truth = _sentence_case(truth[len(lead):])
    truth_lower = truth[:1].lower() + truth[1:]
    brackets = rng.choice(phrases.BRACKETS)

    def correction(bank):
        return lambda: f"{brackets[0]}{rng.choice(bank).format(truth=truth, truth_lower=truth_lower)}{brackets[1]}"

    segments = _sandwich(doc.segments, correction(phrases.CORRECTION_BEFORE), correction(phrases.CORRECTION_AFTER), role="correction")
    return doc.replace(segments=_with_notices(doc.replace(segments=segments), rng))


def _qualified(name: str, repeated: bool) -> Callable[[Document, Claim, random.Random], Document]:
    bank = phrases.QUALIFIERS[name]

    def apply(doc: Document, claim: Claim, rng: random.Random) -> Document:
        segments = list(doc.segments)
        if repeated:
            marker = rng.choice(bank["marker"])
            marked = []
            for segment in segments:
                content, whitespace = _split_whitespace(segment.text)
                if content:  # every sentence, not only the claim's: the paper marks them all
                    marked.append(Segment(content + " ", segment.supports, segment.role))
                    marked.append(Segment(marker + (whitespace or " "), role="marker"))
                else:
                    marked.append(segment)
            segments = marked
        prefix = Segment(rng.choice(bank["prefix"]) + "\n\n", role="frame")
        suffix = Segment("\n\n" + rng.choice(bank["suffix"]) + "\n", role="frame")
        return doc.replace(segments=(prefix, *segments, suffix))

    return apply


CONDITIONS: dict[str, Callable[[Document, Claim, random.Random], Document]] = {
    "positive_documents": positive_documents,
    "negated_documents": negated_documents,
    "repeated_negations": repeated_negations,
    "corrected_documents": corrected_documents,
    **{name: _qualified(name, repeated=False) for name in QUALIFIERS},
    **{f"{name}_repeated": _qualified(name, repeated=True) for name in QUALIFIERS},
}


def condition_names() -> list[str]:
    """Every condition name that `apply_condition` accepts, *_no_doctag variants included."""
    base = list(CONDITIONS)
    return base + [name + NO_DOCTAG_SUFFIX for name in base]


def apply_condition(doc: Document, condition: str, claim: Claim, *, seed: int) -> Document:
    """`doc` (a positive document of `claim`) annotated for `condition`; deterministic in (seed, doc.id)."""
    base, doctag = condition, True
    if condition.endswith(NO_DOCTAG_SUFFIX):
        base, doctag = condition[: -len(NO_DOCTAG_SUFFIX)], False
    if base in GENERATED_CONDITIONS:
        raise ValueError(f"'{base}' is a corpus of its own (negation inside each claim sentence), not a transform; generate it")
    if base not in CONDITIONS:
        import difflib

        hint = difflib.get_close_matches(condition, condition_names(), n=1)
        also = f"did you mean '{hint[0]}'? " if hint else ""
        raise ValueError(f"unknown condition '{condition}'; {also}conditions: {', '.join(condition_names())}")
    rng = random.Random(f"{seed}:{condition}:{doc.id}")
    annotated = CONDITIONS[base](doc, claim, rng)
    return annotated.replace(condition=condition, doctag=doctag, provenance={**doc.provenance, "condition_seed": seed})
