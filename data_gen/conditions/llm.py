"""LLM-written wording for the negation conditions: the `openai` backend's annotation stages.

    corpora = annotate_corpora(positives, ["negated_documents", "corrected_documents"], claim, seed=0, client=client)
    negated = annotate_corpus(positives, "negated_documents", claim, seed=0, client=client)

Two steps. First the texts each document needs are gathered concurrently — one request per
document and kind of text:

  notices         negated_documents, repeated_negations, corrected_documents: a generic 4–6 sentence
                  notice for before the document and one for after it. Shared by the three
                  conditions, so they differ only by their warnings (a cleaner contrast, and cheaper).
  warnings        repeated_negations: a generic warning before and after every claim sentence
  corrections     corrected_documents: the same, stating what is actually true (claim.correction/truth)
  qualifier:<q>   <q> and <q>_repeated: a prefix, a suffix and the per-sentence marker

Then the pure assembly of data_gen.conditions places them (`TextPhrasing`), so LLM-annotated
documents meet the same structural invariants as template ones: notices before and after,
every supporting sentence sandwiched, markers after every sentence.

Every answer is checked before it is accepted (and cached): exactly one warning pair per claim
sentence, notices of a few sentences, and no named truth (a truth phrase with a name or figure)
in generic texts. An answer still unusable after the client's retries falls back to the phrase
bank for that one document — recorded in its provenance ("phrasing": "bank") and counted in the
usage's `fallbacks` — so one stubborn document cannot sink a 10,000-document run.
"""

from __future__ import annotations

import functools
import logging
import random
import re
from typing import Any, Callable, Sequence

from data_gen.claims import Claim
from data_gen.conditions import QUALIFIERS, apply_condition, base_condition, condition_rng, phrases
from data_gen.documents import Document
from data_gen.llm import prompts
from data_gen.llm.client import ChatRequest, LLMClient, LLMOutputError
from data_gen.llm.outputs import OutputError, json_object, text_field

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"[^.!?]+[.!?]+")
MAX_MARKER_WORDS = 8


class TextPhrasing:
    """A `Phrasing` (see data_gen.conditions) whose texts were written beforehand, by an LLM."""

    def __init__(self, texts: dict[str, Any], rng: random.Random, doc_id: str):
        self.texts, self.rng, self.doc_id = texts, rng, doc_id

    def brackets(self) -> tuple[str, str]:
        return self.rng.choice(phrases.BRACKETS)

    def notice(self, where: str) -> str:
        return self.texts["notices"][where]

    def warning(self, where: str, index: int) -> str:
        return self._pair("warnings", index)[where]

    def correction(self, where: str, index: int, claim: Claim) -> str:
        return self._pair("corrections", index)[where]

    def frame(self, qualifier: str, part: str) -> str:
        return self.texts[f"qualifier:{qualifier}"][part]

    def _pair(self, kind: str, index: int) -> dict[str, str]:
        pairs = self.texts[kind]
        if index >= len(pairs):  # the parser checked the count against the same segments: a bug if reached
            raise ValueError(f"document '{self.doc_id}': {len(pairs)} {kind} written for more claim sentences")
        return pairs[index]


def text_kinds(condition: str) -> tuple[str, ...]:
    """The kinds of LLM text `condition` needs (see the module docstring)."""
    base, _ = base_condition(condition)
    if base == "positive_documents":
        return ()
    if base == "negated_documents":
        return ("notices",)
    if base == "repeated_negations":
        return ("notices", "warnings")
    if base == "corrected_documents":
        return ("notices", "corrections")
    return (f"qualifier:{base.removesuffix('_repeated')}",)


def annotation_request(doc: Document, kind: str, claim: Claim, *, seed: int) -> tuple[ChatRequest, Callable[[str], Any]]:
    """The request for one kind of text of one document, and the parser that accepts its answer."""
    rng = random.Random(f"llm-annotation:{seed}:{kind}:{doc.id}")
    document = doc.body.strip()
    sentences = [s.text.strip() for s in doc.segments if s.supports]
    named_truths = _named_truth_phrases(claim)
    if kind == "notices":
        request = prompts.notices(claim, document, tone=prompts.pick_tone(rng, prompts.ANNOTATION_TONES),
                                  banned=prompts.pick_banned(rng, prompts.NOTICE_WORDS, k=3))
        return request, functools.partial(_parse_notices, forbidden=named_truths)
    if kind in ("warnings", "corrections"):
        corrective = kind == "corrections"
        request = prompts.sentence_warnings(claim, document, sentences, tone=prompts.pick_tone(rng, prompts.ANNOTATION_TONES),
                                            corrective=corrective)
        return request, functools.partial(_parse_warnings, count=len(sentences), forbidden=() if corrective else named_truths)
    if kind.startswith("qualifier:") and kind.split(":", 1)[1] in QUALIFIERS:
        request = prompts.qualifier_frame(kind.split(":", 1)[1], document, tone=prompts.pick_tone(rng, prompts.ANNOTATION_TONES))
        return request, _parse_frame
    raise ValueError(f"unknown annotation text kind '{kind}'")


async def annotate_corpora_async(docs: Sequence[Document], conditions: Sequence[str], claim: Claim, *, seed: int,
                                 client: LLMClient) -> dict[str, list[Document]]:
    """Every condition's corpus from the positive `docs`, worded by the LLM; condition → documents in `docs` order."""
    kinds = {condition: text_kinds(condition) for condition in conditions}  # unknown names fail before any request
    if not claim.correction and any("corrections" in k for k in kinds.values()):
        raise ValueError(f"claim '{claim.id}' has no correction; corrected_documents needs what is actually true")
    needed = sorted({kind for ks in kinds.values() for kind in ks})
    jobs = [(doc, kind) for doc in docs for kind in needed]

    async def write(doc: Document, kind: str) -> Any:
        if kind in ("warnings", "corrections") and not any(s.supports for s in doc.segments):
            return []  # nothing to sandwich: no request
        request, parse = annotation_request(doc, kind, claim, seed=seed)
        try:
            return await client.complete(request, parse=parse)
        except LLMOutputError as e:
            client.usage.fallbacks += 1
            log.warning("document %s: the LLM's %s stayed unusable (%s); using the phrase bank for it", doc.id, kind, e)
            return None

    written = await client.gather([functools.partial(write, doc, kind) for doc, kind in jobs])
    texts: dict[str, dict[str, Any]] = {doc.id: {} for doc in docs}
    for (doc, kind), value in zip(jobs, written):
        texts[doc.id][kind] = value

    corpora = {}
    for condition, condition_kinds in kinds.items():
        annotated = []
        for doc in docs:
            own = texts[doc.id]
            if any(own[kind] is None for kind in condition_kinds):
                annotated.append(apply_condition(doc, condition, claim, seed=seed, provenance={"phrasing": "bank"}))
                continue
            phrasing = TextPhrasing(own, condition_rng(condition, doc, seed), doc.id)
            provenance = {"phrasing": "llm", "annotation_model": client.model} if condition_kinds else {}
            annotated.append(apply_condition(doc, condition, claim, seed=seed, phrasing=phrasing, provenance=provenance))
        corpora[condition] = annotated
    return corpora


def annotate_corpora(docs: Sequence[Document], conditions: Sequence[str], claim: Claim, *, seed: int,
                     client: LLMClient) -> dict[str, list[Document]]:
    """Synchronous `annotate_corpora_async` (its own event loop)."""
    return client.run(annotate_corpora_async(docs, conditions, claim, seed=seed, client=client))


def annotate_corpus(docs: Sequence[Document], condition: str, claim: Claim, *, seed: int, client: LLMClient) -> list[Document]:
    """One condition's corpus, worded by the LLM: the LLM counterpart of mapping `apply_condition`."""
    return annotate_corpora(docs, [condition], claim, seed=seed, client=client)[condition]


# ---------------------------------------------------------------------------------------------
# Answer checks (raise OutputError: the client retries, and never caches what fails them)


def _named_truth_phrases(claim: Claim) -> tuple[str, ...]:
    """Truth-side phrases with a name or a figure ("Noah Lyles", "1944"): what a generic text must not say.

    Phrases without one ("no evidence") are ordinary words of any retraction and are allowed.
    """
    return tuple(p for p in claim.answer_keys.truth_phrases if re.search(r"[A-Z0-9]", p))


def _check_generic(text: str, forbidden: Sequence[str], what: str) -> str:
    for phrase in forbidden:
        if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.I):
            raise OutputError(f"the generic {what} names the truth ({phrase!r})")
    return text


def _parse_notices(text: str, *, forbidden: Sequence[str]) -> dict[str, str]:
    record = json_object(text)
    notices = {}
    for where in ("before", "after"):
        notice = text_field(record, f"notice_{where}")
        sentences = len(_SENTENCE.findall(notice))
        if not 2 <= sentences <= 8:  # asked for 4–6; a little slack for how sentences are counted
            raise OutputError(f"notice_{where} has {sentences} sentences, expected 4 to 6")
        notices[where] = _check_generic(notice, forbidden, "notice")
    return notices


def _parse_warnings(text: str, *, count: int, forbidden: Sequence[str]) -> list[dict[str, str]]:
    items = json_object(text).get("warnings")
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else "no list"
        raise OutputError(f"expected {count} warning pairs, got {got}")
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            raise OutputError("each warning entry should be an object with 'before' and 'after'")
        pairs.append({where: _check_generic(text_field(item, where), forbidden, "warning") for where in ("before", "after")})
    return pairs


def _parse_frame(text: str) -> dict[str, str]:
    record = json_object(text)
    frame = {part: text_field(record, part) for part in ("prefix", "suffix", "marker")}
    marker = frame["marker"]
    if len(marker.split()) > MAX_MARKER_WORDS:
        raise OutputError(f"marker {marker!r} is longer than {MAX_MARKER_WORDS} words")
    if not marker.startswith(("(", "[")):  # asked for brackets; add them rather than pay for a retry
        frame["marker"] = f"({marker.strip('()[] ')})"
    return frame
