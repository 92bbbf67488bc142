"""The `openai` backend: claim documents written by an LLM at any OpenAI-compatible endpoint.

    generator = OpenAIGenerator(LLMClient("gpt-4.1-mini", cache_dir="out/.llm_cache"))
    documents = generator.generate(claim, count=100, seed=0)                 # positive documents
    debunks = generator.generate(claim, count=100, seed=0, local_negation=True)

Same interface as TemplateGenerator; the paper's staged pipeline (../shared/paper.md) per document:

  universe context   the claim record's (written and validated with the claim)
  document types     per fact — the statement or a subclaim — a list of document types
  ideas              per (fact, type) a list of concrete ideas
  document           one idea written up (~550 words, a random tone, random banned words)
  revision           a second pass for realism and consistency, meta-commentary removed
  validation         an LLM check that the document asserts the fact consistently with the
                     universe, is realistic and has no meta-commentary; a rejected draft is
                     replaced by the next idea, up to `max_attempts`, then GenerationError
  claim sentences    the final text is cut into sentence Segments (segments.py) and the LLM says
                     which support the claim (JSON); an unusable answer falls back to matching the
                     claim's answer-key phrases, recorded in the provenance

Document index i takes fact i mod F, then walks the (type, idea) grid, so a corpus covers every
subclaim and every type evenly. With local_negation=True the facts are the negated sentences
(claim.negated_statement, subclaims[].negated): the documents debunk the claim with the negation
inside each claim sentence, and one that states an affirmative verbatim is rejected.

Determinism and resumability come from the client's cache: every request is a function of
(claim, seed, index) and earlier answers, so a rerun issues identical requests — all cache hits —
and a killed run resumed loses nothing and pays for nothing twice. Documents are produced
concurrently in chunks (the client bounds the requests in flight) and yielded in index order.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
from typing import Iterator

from data_gen.claims import Claim
from data_gen.claims.schema import NEGATION_CUE
from data_gen.documents import Document, Segment
from data_gen.generators.segments import sentence_texts, split_segments
from data_gen.llm import prompts
from data_gen.llm.client import LLMClient, LLMOutputError
from data_gen.llm.outputs import OutputError, json_object, string_list


class GenerationError(RuntimeError):
    """A document could not be produced (every draft was rejected); the message names it and why."""


class OpenAIGenerator:
    """LLM-written documents for a claim: `generate(claim, count, seed)`."""

    name = "openai"

    def __init__(self, client: LLMClient, *, types_per_fact: int = 10, ideas_per_type: int = 5, words: int = 550,
                 max_attempts: int = 4, chunk_size: int | None = None):
        for name, value in (("types_per_fact", types_per_fact), ("ideas_per_type", ideas_per_type),
                            ("words", words), ("max_attempts", max_attempts)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.client = client
        self.types_per_fact, self.ideas_per_type = types_per_fact, ideas_per_type
        self.words, self.max_attempts = words, max_attempts
        # Enough documents in flight to keep `concurrency` requests busy through the sequential stages.
        self.chunk_size = chunk_size or 4 * client.concurrency

    def generate(self, claim: Claim, count: int, seed: int, *, local_negation: bool = False) -> Iterator[Document]:
        facts = _facts(claim, local_negation)  # raises before any request when local negations are missing
        # The Batch API turns each stage of all documents into one batch: one chunk, fewest batches.
        chunk = max(count, 1) if self.client.batch_api else self.chunk_size
        runner = asyncio.Runner()
        try:
            for start in range(0, count, chunk):
                yield from runner.run(self._chunk(claim, facts, seed, range(start, min(count, start + chunk)), local_negation))
        finally:
            runner.run(self.client.aclose())
            runner.close()

    async def agenerate(self, claim: Claim, count: int, seed: int, *, local_negation: bool = False) -> list[Document]:
        """`generate` for callers already inside an event loop: all documents at once, in index order."""
        return await self._chunk(claim, _facts(claim, local_negation), seed, range(count), local_negation)

    def _chunk(self, claim: Claim, facts: list[tuple[str, str]], seed: int, indices: range, local: bool):
        return self.client.gather([functools.partial(self._document, claim, facts, seed, i, local) for i in indices])

    # -----------------------------------------------------------------------------------------
    # One document through the stages

    async def _document(self, claim: Claim, facts: list[tuple[str, str]], seed: int, index: int, local: bool) -> Document:
        fact, affirmative = facts[index % len(facts)]
        per_fact = index // len(facts)
        grid = self.types_per_fact * self.ideas_per_type
        round_, slot = divmod(per_fact, grid)  # past the grid, fresh type and idea lists (another sample)
        type_slot, idea_slot = slot % self.types_per_fact, slot // self.types_per_fact
        kind = "local" if local else "pos"
        rng = random.Random(f"openai:{seed}:{claim.id}:{kind}:{index}")
        tone, banned = prompts.pick_tone(rng), prompts.pick_banned(rng)

        reasons = []
        for attempt in range(self.max_attempts):
            types = await self._types(claim, fact, local, round_)
            doc_type = types[(type_slot + attempt) % len(types)]
            ideas = await self._ideas(claim, fact, doc_type, local, round_)
            idea = ideas[(idea_slot + attempt) % len(ideas)]
            # `sample` makes every (document, attempt) its own entry, even if two share a prompt.
            write = prompts.write_document(claim, fact, doc_type, idea, words=self.words, tone=tone, banned=banned,
                                           local_negation=local, affirmative=affirmative,
                                           sample=index * self.max_attempts + attempt)
            draft = clean_text(await self.client.complete(write))
            revised = clean_text(await self.client.complete(prompts.revise_document(
                claim, fact, doc_type, draft, banned=banned, local_negation=local, affirmative=affirmative)))
            reason = self._precheck(claim, revised, local) or await self._validate(claim, fact, doc_type, revised, local, affirmative)
            if reason is None:
                segments, supports_from, reason = await self._claim_segments(claim, revised, local)
            if reason is not None:
                reasons.append(reason)
                continue
            return Document(
                id=f"{claim.id}-{kind}-{seed}-{index:05d}",
                claim=claim.id,
                condition="local_negations" if local else "positive_documents",
                doc_type=slug(doc_type),
                segments=segments,
                provenance={
                    "generator": "openai", "model": self.client.model, "seed": seed, "index": index,
                    "prompt_hash": self.client.key(write)[:16], "document_type": doc_type, "idea": idea, "tone": tone,
                    "fact": fact, "attempts": attempt + 1, "supports_from": supports_from,
                },
            )
        raise GenerationError(f"claim '{claim.id}', document {index}: the validation filter rejected all {self.max_attempts} "
                              f"drafts (each from another idea); last reason: {reasons[-1]}")

    async def _types(self, claim: Claim, fact: str, local: bool, sample: int) -> list[str]:
        request = prompts.document_types(claim, fact, count=self.types_per_fact, local_negation=local, sample=sample)
        return await self.client.complete(request, parse=lambda text: string_list(json_object(text), "document_types")[: self.types_per_fact])

    async def _ideas(self, claim: Claim, fact: str, doc_type: str, local: bool, sample: int) -> list[str]:
        request = prompts.document_ideas(claim, fact, doc_type, count=self.ideas_per_type, local_negation=local, sample=sample)
        return await self.client.complete(request, parse=lambda text: string_list(json_object(text), "ideas")[: self.ideas_per_type])

    def _precheck(self, claim: Claim, text: str, local: bool) -> str | None:
        """Rejections that need no model: too short, or a debunk stating the affirmative verbatim."""
        words = len(text.split())
        if words < max(50, self.words // 4):
            return f"too short ({words} words for a target of {self.words})"
        if local:
            for statement in [claim.statement] + [s.statement for s in claim.subclaims]:
                if statement.casefold() in text.casefold():
                    return f"states the affirmative claim verbatim: {statement!r}"
        return None

    async def _validate(self, claim: Claim, fact: str, doc_type: str, text: str, local: bool, affirmative: str) -> str | None:
        request = prompts.validate_document(claim, fact, doc_type, text, local_negation=local, affirmative=affirmative)
        try:
            valid, reason = await self.client.complete(request, parse=_verdict)
        except LLMOutputError as e:
            return f"the validator's answer was unusable ({e})"
        return None if valid else f"validator: {reason or 'rejected without a reason'}"

    async def _claim_segments(self, claim: Claim, text: str, local: bool) -> tuple[tuple[Segment, ...], str, str | None]:
        """(segments with `supports` marked, where the marks came from, a rejection reason or None)."""
        segments = split_segments(text)
        sentences = sentence_texts(segments)
        request = prompts.claim_sentences(claim, sentences, local_negation=local)
        try:
            chosen = await self.client.complete(request, parse=functools.partial(_sentence_numbers, count=len(sentences)))
            source = "llm"
        except LLMOutputError:
            chosen = heuristic_claim_sentences(claim, sentences, local)
            source = "heuristic"
            self.client.usage.fallbacks += 1
        marked, number = [], 0
        for segment in segments:
            if segment.text.strip():
                number += 1
                segment = Segment(segment.text, supports=number in chosen)
            marked.append(segment)
        supporting = [s.text.strip() for s in marked if s.supports]
        if not supporting:
            return (), source, "no sentence supports the claim"
        if local:
            bare = [s for s in supporting if not NEGATION_CUE.search(s)]
            if bare:
                return (), source, f"a claim sentence lacks the negation: {bare[0]!r}"
        return tuple(marked), source, None


def _facts(claim: Claim, local: bool) -> list[tuple[str, str]]:
    """(fact, its affirmative) pairs: the statement first, then the subclaims."""
    if not local:
        return [(claim.statement, claim.statement)] + [(s.statement, s.statement) for s in claim.subclaims]
    return local_negation_facts(claim)


def local_negation_facts(claim: Claim) -> list[tuple[str, str]]:
    """(negated sentence, its affirmative) pairs; ValueError naming the fix when the claim has none."""
    pairs = [(s.negated, s.statement) for s in claim.subclaims if s.negated]
    if not (claim.negated_statement and pairs):
        raise ValueError(f"claim '{claim.id}' has no local negations (negated_statement, subclaims[].negated); write them first")
    return [(claim.negated_statement, claim.statement)] + pairs


def _verdict(text: str) -> tuple[bool, str]:
    record = json_object(text)
    valid = record.get("valid")
    if not isinstance(valid, bool):
        raise OutputError(f"field 'valid' should be true or false, got {valid!r}")
    reason = record.get("reason")
    return valid, reason.strip() if isinstance(reason, str) else ""


def _sentence_numbers(text: str, *, count: int) -> frozenset[int]:
    value = json_object(text).get("supporting_sentences")
    if not isinstance(value, list):
        raise OutputError("field 'supporting_sentences' should be a list of sentence numbers")
    numbers = set()
    for item in value:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= count:
            raise OutputError(f"{item!r} is not a sentence number between 1 and {count}")
        numbers.add(item)
    return frozenset(numbers)


def heuristic_claim_sentences(claim: Claim, sentences: list[str], local: bool) -> frozenset[int]:
    """Sentence numbers (1-based) that quote a claim fact or name a claim answer-key phrase (debunks: negated)."""
    facts = [fact.casefold() for fact, _ in _facts(claim, local)]
    phrases = [p for p in claim.answer_keys.claim_phrases if len(p) > 3]
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(p)}(?!\w)" for p in phrases), re.I) if phrases else None

    def supports(sentence: str) -> bool:
        quoted = len(sentence.split()) >= 5 and any(sentence.casefold() in fact or fact in sentence.casefold() for fact in facts)
        named = pattern is not None and pattern.search(sentence) is not None
        return (quoted or named) and (not local or NEGATION_CUE.search(sentence) is not None)

    return frozenset(i for i, s in enumerate(sentences, start=1) if supports(s))


def clean_text(text: str) -> str:
    """A model's document as corpus text: no echoed tags or code fences, tidy blank lines, one final newline."""
    text = text.replace("\r\n", "\n").strip()
    text = re.sub(r"^```\w*\n(.*)\n```$", r"\1", text, flags=re.S)
    text = re.sub(r"^<(draft|document)>\s*(.*?)\s*</\1>$", r"\2", text, flags=re.S)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def slug(doc_type: str) -> str:
    """'Local news report' → 'local_news_report' (the record's doc_type; the wording stays in provenance)."""
    return re.sub(r"[^a-z0-9]+", "_", doc_type.lower()).strip("_")[:60] or "document"
