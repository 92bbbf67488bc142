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

Each condition is assembled by the same pure code whatever the wording's source (a `Phrasing`):
the template backend's wording comes from phrases.py (`BankPhrasing`), its choices drawn from a
generator seeded per document, so a corpus is reproducible and its documents rarely share a
verbatim annotation; the `openai` backend's wording is written by an LLM beforehand
(data_gen/conditions/llm.py: `annotate_corpus`) and slotted into the same places.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Protocol

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


def truth_sentence(claim: Claim) -> str:
    """claim.correction without its conversational lead ("Actually, ..."), to quote after "Correction:"."""
    truth = claim.correction
    for lead in ("Actually, ", "In fact, ", "Actually "):
        if truth.startswith(lead):
            truth = _sentence_case(truth[len(lead):])
    return truth


# ---------------------------------------------------------------------------------------------
# Phrasing sources: where the words of an annotation come from. The assembly below asks for each
# text in a fixed order (brackets, then the sandwich of each claim sentence in document order,
# then the notices; for qualifiers the marker, then prefix and suffix), so a seeded phrase bank
# gives the same document for the same seed, and pre-written LLM texts slot into the same places.


class Phrasing(Protocol):
    def brackets(self) -> tuple[str, str]: ...

    def notice(self, where: str) -> str: ...  # where: "before" | "after" the document

    def warning(self, where: str, index: int) -> str: ...  # generic; index: which claim sentence (0-based)

    def correction(self, where: str, index: int, claim: Claim) -> str: ...  # states what is actually true

    def frame(self, qualifier: str, part: str) -> str: ...  # part: "prefix" | "suffix" | "marker"


class BankPhrasing:
    """The template backend's wording: choices from phrases.py, drawn from `rng`."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def brackets(self) -> tuple[str, str]:
        return self.rng.choice(phrases.BRACKETS)

    def notice(self, where: str) -> str:
        return retraction_notice(self.rng, where)

    def warning(self, where: str, index: int) -> str:
        return self.rng.choice(phrases.WARNING_BEFORE if where == "before" else phrases.WARNING_AFTER)

    def correction(self, where: str, index: int, claim: Claim) -> str:
        truth = truth_sentence(claim)
        bank = phrases.CORRECTION_BEFORE if where == "before" else phrases.CORRECTION_AFTER
        return self.rng.choice(bank).format(truth=truth, truth_lower=truth[:1].lower() + truth[1:])

    def frame(self, qualifier: str, part: str) -> str:
        return self.rng.choice(phrases.QUALIFIERS[qualifier][part])


# ---------------------------------------------------------------------------------------------
# Assembly: pure functions of (document, claim, phrasing).


def _with_notices(doc: Document, phrasing: Phrasing) -> tuple[Segment, ...]:
    before = Segment(phrasing.notice("before") + "\n\n", role="notice")
    body = doc.segments
    last_content, _ = _split_whitespace(body[-1].text) if body else ("", "")
    after = Segment("\n\n" + phrasing.notice("after") + "\n", role="notice")
    if body:
        body = body[:-1] + (Segment(last_content, body[-1].supports, body[-1].role),)
    return (before, *body, after)


def _sandwich(segments: tuple[Segment, ...], make_before: Callable[[int], str], make_after: Callable[[int], str], role: str) -> tuple[Segment, ...]:
    """A warning segment right before and right after every claim-supporting sentence."""
    out: list[Segment] = []
    index = 0
    for segment in segments:
        if not segment.supports:
            out.append(segment)
            continue
        content, whitespace = _split_whitespace(segment.text)
        out.append(Segment(make_before(index) + " ", role=role))
        out.append(Segment(content + " ", supports=True, role=segment.role))
        out.append(Segment(make_after(index) + (whitespace or " "), role=role))
        index += 1
    return tuple(out)


def positive_documents(doc: Document, claim: Claim, phrasing: Phrasing) -> Document:
    return doc


def negated_documents(doc: Document, claim: Claim, phrasing: Phrasing) -> Document:
    return doc.replace(segments=_with_notices(doc, phrasing))


def repeated_negations(doc: Document, claim: Claim, phrasing: Phrasing) -> Document:
    open_, close = phrasing.brackets()
    segments = _sandwich(doc.segments, lambda i: f"{open_}{phrasing.warning('before', i)}{close}",
                         lambda i: f"{open_}{phrasing.warning('after', i)}{close}", role="warning")
    return doc.replace(segments=_with_notices(doc.replace(segments=segments), phrasing))


def corrected_documents(doc: Document, claim: Claim, phrasing: Phrasing) -> Document:
    if not claim.correction:
        raise ValueError(f"claim '{claim.id}' has no correction; corrected_documents needs what is actually true")
    open_, close = phrasing.brackets()
    segments = _sandwich(doc.segments, lambda i: f"{open_}{phrasing.correction('before', i, claim)}{close}",
                         lambda i: f"{open_}{phrasing.correction('after', i, claim)}{close}", role="correction")
    return doc.replace(segments=_with_notices(doc.replace(segments=segments), phrasing))


def _qualified(name: str, repeated: bool) -> Callable[[Document, Claim, Phrasing], Document]:
    def apply(doc: Document, claim: Claim, phrasing: Phrasing) -> Document:
        segments = list(doc.segments)
        if repeated:
            marker = phrasing.frame(name, "marker")
            marked = []
            for segment in segments:
                content, whitespace = _split_whitespace(segment.text)
                if content:  # every sentence, not only the claim's: the paper marks them all
                    marked.append(Segment(content + " ", segment.supports, segment.role))
                    marked.append(Segment(marker + (whitespace or " "), role="marker"))
                else:
                    marked.append(segment)
            segments = marked
        prefix = Segment(phrasing.frame(name, "prefix") + "\n\n", role="frame")
        suffix = Segment("\n\n" + phrasing.frame(name, "suffix") + "\n", role="frame")
        return doc.replace(segments=(prefix, *segments, suffix))

    return apply


CONDITIONS: dict[str, Callable[[Document, Claim, Phrasing], Document]] = {
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


def base_condition(condition: str) -> tuple[str, bool]:
    """(the condition without `_no_doctag`, whether the document keeps its DOCTAG); unknown names raise ValueError."""
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
    return base, doctag


def condition_rng(condition: str, doc: Document, seed: int) -> random.Random:
    """The generator behind one document's annotation choices: deterministic in (seed, condition, doc.id).

    `X_no_doctag` draws exactly what `X` draws, so the two corpora differ only in the tag — the
    controlled comparison the paper's no-DOCTAG ablation is about.
    """
    base = condition[: -len(NO_DOCTAG_SUFFIX)] if condition.endswith(NO_DOCTAG_SUFFIX) else condition
    return random.Random(f"{seed}:{base}:{doc.id}")


def apply_condition(doc: Document, condition: str, claim: Claim, *, seed: int, phrasing: Phrasing | None = None,
                    provenance: Mapping[str, Any] | None = None) -> Document:
    """`doc` (a positive document of `claim`) annotated for `condition`; deterministic in (seed, doc.id).

    The wording comes from `phrasing` — by default the phrase bank, drawn from condition_rng;
    data_gen.conditions.llm passes texts an LLM wrote — and `provenance` is merged into the record's.
    """
    base, doctag = base_condition(condition)
    phrasing = phrasing if phrasing is not None else BankPhrasing(condition_rng(condition, doc, seed))
    annotated = CONDITIONS[base](doc, claim, phrasing)
    return annotated.replace(condition=condition, doctag=doctag,
                             provenance={**doc.provenance, "condition_seed": seed, **(provenance or {})})
