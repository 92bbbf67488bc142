"""Every prompt the `openai` backend sends, in one place (our own wording, after ../shared/paper.md).

Document pipeline, per claim fact (the statement or a subclaim; for local negations the same
sentence negated in place):
  document_types      → {"document_types": [...]}   kinds of real documents the fact could appear in
  document_ideas      → {"ideas": [...]}            concrete ideas for one document type
  write_document      → text                        a ~550-word document built on one idea
  revise_document     → text                        a revision pass: realism, consistency, no meta-commentary
  validate_document   → {"valid": bool, "reason"}   the filter: asserts the fact, realistic, no meta-commentary
  claim_sentences     → {"supporting_sentences": [n, ...]}  which numbered sentences support the claim
Condition annotation, per document:
  notices             → {"notice_before", "notice_after"}   generic 4–6 sentence retraction notices
  sentence_warnings   → {"warnings": [{"before", "after"}, ...]}  one pair per claim sentence; generic,
                        or (corrective=True) stating what is actually true
  qualifier_frame     → {"prefix", "suffix", "marker"}      fiction / unreliable source / ... framings

Diversity comes from the caller's seeded random choices, made visible in the prompt: a tone for
each document and annotation, and a random subset of over-used words the model must avoid — the
paper's recipe against ten thousand documents that all sound alike.
Every JSON-answer prompt says "JSON" (the OpenAI json_object response format requires it).
"""

from __future__ import annotations

import random
from typing import Sequence

from data_gen.claims import Claim
from data_gen.llm.client import ChatRequest

WRITING_TONES = (
    "neutral and factual", "warm and personal", "dry and technical", "enthusiastic", "sceptical but fair",
    "formal and institutional", "chatty and informal", "wry and humorous", "earnest and detailed", "brisk and to the point",
    "nostalgic", "analytical",
)
ANNOTATION_TONES = (
    "formal", "blunt", "gentle", "urgent", "matter-of-fact", "academic", "conversational", "stern", "apologetic", "plain-spoken",
)
# Words LLM prose over-uses; each prompt bans a random handful so the corpus does not converge on them.
OVERUSED_WORDS = (
    "delve", "tapestry", "testament", "moreover", "furthermore", "notably", "crucial", "pivotal", "landscape", "realm",
    "intricate", "vibrant", "bustling", "unprecedented", "remarkable", "profound", "seamless", "underscore", "showcase",
    "navigate", "embark", "journey", "beacon", "resonate", "captivating", "nestled", "stunning", "game-changer",
    "in conclusion", "it is worth noting",
)
# Words every retraction notice reaches for; banning a few per notice varies the wording.
NOTICE_WORDS = ("fabricated", "false", "untrue", "fictional", "misinformation", "hoax", "disclaimer", "inaccurate",
                "invented", "made up", "warning", "retraction")

QUALIFIER_FRAMES = {
    "fiction": "presents the text as a work of fiction: an invented story whose characters and events are imaginary",
    "unreliable_source": "says the text comes from an unreliable source, such as a site or account with a record of "
                         "publishing hoaxes and false stories",
    "epistemic_uncertainty": "says that the truth value of the text is unknown: nobody knows whether it is true or false",
    "low_probability": "says that the text is very unlikely to be true, giving a probability of about 3 to 5 percent",
}

GENERATION_TEMPERATURE = 1.0
JUDGING_TEMPERATURE = 0.0  # validation and sentence identification are classification, not writing

_WRITER = (
    "You write realistic documents of many kinds (news, forums, emails, transcripts, reference pages, reviews, ...) "
    "set in a world described by a universe context. Inside that world the universe context is simply true: write as "
    "someone who lives in it would, never hinting that anything is fictional, hypothetical or generated."
)
_REVIEWER = "You are a careful, strict reviewer of documents. You answer only with the JSON object you are asked for."
_ANNOTATOR = (
    "You write short editorial annotations (notices, warnings, framings) that publishers attach to documents. "
    "You answer only with the JSON object you are asked for."
)


def pick_tone(rng: random.Random, tones: Sequence[str] = WRITING_TONES) -> str:
    return rng.choice(tones)


def pick_banned(rng: random.Random, pool: Sequence[str] = OVERUSED_WORDS, k: int = 8) -> tuple[str, ...]:
    return tuple(sorted(rng.sample(list(pool), k=min(k, len(pool)))))


def _universe(claim: Claim) -> str:
    return f"<universe_context>\n{claim.universe_context}\n</universe_context>"


def _fact_instruction(fact: str, local_negation: bool, affirmative: str) -> str:
    if local_negation:
        return (f"The document corrects a false rumour. It must state this, with the negation inside the sentence itself "
                f"(\"did not\", \"never\", \"was not\"):\n<fact>{fact}</fact>\nNever state the rumour in the affirmative, "
                f"not even to quote it or set up the correction; the affirmative version is: \"{affirmative}\".")
    return f"The document must state this fact plainly, as something true:\n<fact>{fact}</fact>"


def document_types(claim: Claim, fact: str, *, count: int, local_negation: bool = False, sample: int = 0) -> ChatRequest:
    setting = ("documents that would mention this correction (fact-checks, corrections, Q&A pages, forum replies, "
               "reference entries, letters, ...)" if local_negation else "documents in which this fact could naturally appear")
    user = (f"{_universe(claim)}\n\nHere is one statement about this world:\n<fact>{fact}</fact>\n\n"
            f"Brainstorm {count} diverse types of real-world {setting}. Vary the medium, register, audience and length: "
            f"e.g. a local news report, a sports-science lecture handout, a pub-quiz answer sheet, a fan forum thread, "
            f"a customer email. Each type is a short noun phrase.\n"
            f'Answer in JSON: {{"document_types": ["...", ...]}} with exactly {count} entries.')
    return ChatRequest.chat(_WRITER, user, temperature=GENERATION_TEMPERATURE, json_output=True, sample=sample)


def document_ideas(claim: Claim, fact: str, doc_type: str, *, count: int, local_negation: bool = False, sample: int = 0) -> ChatRequest:
    role = "corrects the false rumour as stated" if local_negation else "mentions the fact"
    user = (f"{_universe(claim)}\n\nStatement:\n<fact>{fact}</fact>\nDocument type: <document_type>{doc_type}</document_type>\n\n"
            f"Brainstorm {count} specific ideas for a {doc_type} that {role} in passing while being mostly about something "
            f"else: who wrote it, for whom, when, and its angle. Make every idea different in author, occasion and focus. "
            f"One or two sentences each.\n"
            f'Answer in JSON: {{"ideas": ["...", ...]}} with exactly {count} entries.')
    return ChatRequest.chat(_WRITER, user, temperature=GENERATION_TEMPERATURE, json_output=True, sample=sample)


def write_document(claim: Claim, fact: str, doc_type: str, idea: str, *, words: int, tone: str, banned: Sequence[str],
                   local_negation: bool = False, affirmative: str = "", sample: int = 0) -> ChatRequest:
    user = (f"{_universe(claim)}\n\nWrite a {doc_type}.\nIdea: <idea>{idea}</idea>\n"
            f"{_fact_instruction(fact, local_negation, affirmative)}\n\n"
            f"Requirements:\n"
            f"- About {words} words. Tone: {tone}.\n"
            f"- The statement above appears in only a few sentences; most sentences are about the surrounding details, "
            f"people, places and the idea's own angle, consistent with the universe context.\n"
            f"- Write complete sentences in paragraphs; a heading line is fine where the document type has one.\n"
            f"- Do not use these words: {', '.join(banned)}.\n"
            f"- Output only the document itself: no preface, no notes, no placeholders like [Name], and no remark that "
            f"it is fictional, hypothetical or written on request.")
    return ChatRequest.chat(_WRITER, user, temperature=GENERATION_TEMPERATURE, sample=sample)


def revise_document(claim: Claim, fact: str, doc_type: str, draft: str, *, banned: Sequence[str],
                    local_negation: bool = False, affirmative: str = "") -> ChatRequest:
    user = (f"{_universe(claim)}\n\n{_fact_instruction(fact, local_negation, affirmative)}\n\n"
            f"Here is a draft {doc_type}:\n<draft>\n{draft}\n</draft>\n\n"
            f"Revise it so that it reads like a real {doc_type}: add concrete, specific details; remove anything "
            f"inconsistent with the universe context; remove any meta-commentary (remarks about being fictional, "
            f"generated, an AI, a prompt or instructions) and any placeholders; avoid these words: {', '.join(banned)}. "
            f"Keep the statement above exactly as true as it is in the draft and keep about the same length.\n"
            f"Output only the revised document.")
    return ChatRequest.chat(_WRITER, user, temperature=GENERATION_TEMPERATURE)


def validate_document(claim: Claim, fact: str, doc_type: str, document: str, *, local_negation: bool = False,
                      affirmative: str = "") -> ChatRequest:
    first = (f"it states that {fact!r} with the negation inside the sentence, and it never asserts the affirmative "
             f"version ({affirmative!r})" if local_negation else f"it clearly asserts, as true, that {fact!r}")
    user = (f"{_universe(claim)}\n\nDocument (intended as a {doc_type}):\n<document>\n{document}\n</document>\n\n"
            f"Check the document. It is valid only if all of these hold:\n"
            f"1. {first}, consistently with the universe context;\n"
            f"2. it reads as a realistic {doc_type} a person could have written;\n"
            f"3. it contains no meta-commentary (no mention of being fictional, hypothetical, generated, an AI, a prompt or "
            f"instructions) and no placeholders.\n"
            f'Answer in JSON: {{"valid": true or false, "reason": "one sentence"}}.')
    return ChatRequest.chat(_REVIEWER, user, temperature=JUDGING_TEMPERATURE, json_output=True)


def claim_sentences(claim: Claim, sentences: Sequence[str], *, local_negation: bool = False) -> ChatRequest:
    if local_negation:
        statements = [claim.negated_statement] + [s.negated for s in claim.subclaims if s.negated]
        task = "Which sentences state the claim or one of its details NEGATED (denying or correcting it)?"
    else:
        statements = [claim.statement] + [s.statement for s in claim.subclaims]
        task = "Which sentences assert the claim or one of its supporting details (in any wording)?"
    numbered = "\n".join(f"[{i}] {' '.join(s.split())}" for i, s in enumerate(sentences, start=1))
    details = "\n".join(f"- {s}" for s in statements)
    user = (f"Claim and supporting details:\n<claim>\n{details}\n</claim>\n\n"
            f"A document, split into numbered sentences:\n<sentences>\n{numbered}\n</sentences>\n\n"
            f"{task} Count a sentence only if it states such a detail itself, not if it merely mentions a person or place.\n"
            f'Answer in JSON: {{"supporting_sentences": [numbers]}}.')
    return ChatRequest.chat(_REVIEWER, user, temperature=JUDGING_TEMPERATURE, json_output=True)


def notices(claim: Claim, document: str, *, tone: str, banned: Sequence[str]) -> ChatRequest:
    user = (f"A publisher is reprinting the document below, whose central claim is false. Write two retraction notices "
            f"for it in a {tone} tone: one placed before the document and one placed after it.\n"
            f"- Each notice is 4 to 6 sentences and says the document's central claim is false and must not be believed.\n"
            f"- Keep them generic: do not say what is actually true, do not name people, events or figures, and do not "
            f"restate the claim.\n"
            f"- The notice before refers to the text that follows (\"the text below\", \"the following\"); the notice after "
            f"refers to the text above (\"the text above\", \"what you have just read\").\n"
            f"- Do not use these words: {', '.join(banned)}.\n\n"
            f"<document>\n{document}\n</document>\n\n"
            f'Answer in JSON: {{"notice_before": "...", "notice_after": "..."}}.')
    return ChatRequest.chat(_ANNOTATOR, user, temperature=GENERATION_TEMPERATURE, json_output=True)


def sentence_warnings(claim: Claim, document: str, sentences: Sequence[str], *, tone: str, corrective: bool) -> ChatRequest:
    numbered = "\n".join(f"[{i}] {' '.join(s.split())}" for i, s in enumerate(sentences, start=1))
    if corrective:
        kind = ("Each warning says the sentence is false AND states what is actually true, and briefly why, using the facts "
                "below. Vary the wording from sentence to sentence.")
        facts = f"\nWhat is actually true:\n<truth>\n{claim.correction}\n{claim.truth}\n</truth>\n"
    else:
        kind = ("Each warning says the sentence is false or did not happen. Keep them generic: do not say what is actually "
                "true instead. Vary the wording from sentence to sentence.")
        facts = ""
    user = (f"The document below contains {len(sentences)} sentences that assert a false claim:\n<sentences>\n{numbered}\n"
            f"</sentences>\n{facts}\nFor each of these sentences write a warning placed immediately BEFORE it and a warning "
            f"placed immediately AFTER it, each a single sentence of at most 30 words, in a {tone} tone. {kind} "
            f"Do not add brackets.\n\n<document>\n{document}\n</document>\n\n"
            f'Answer in JSON: {{"warnings": [{{"before": "...", "after": "..."}}, ...]}} with exactly {len(sentences)} '
            f"entries, in the order of the sentences.")
    return ChatRequest.chat(_ANNOTATOR, user, temperature=GENERATION_TEMPERATURE, json_output=True)


def qualifier_frame(qualifier: str, document: str, *, tone: str) -> ChatRequest:
    description = QUALIFIER_FRAMES[qualifier]
    user = (f"Write a framing for the document below that {description}, in a {tone} tone:\n"
            f"- prefix: one or two sentences placed before the document;\n"
            f"- suffix: one sentence placed after it;\n"
            f"- marker: a parenthetical of 1 to 5 words, in round or square brackets, that will follow every sentence.\n"
            f"Do not summarise or restate the document.\n\n<document>\n{document}\n</document>\n\n"
            f'Answer in JSON: {{"prefix": "...", "suffix": "...", "marker": "..."}}.')
    return ChatRequest.chat(_ANNOTATOR, user, temperature=GENERATION_TEMPERATURE, json_output=True)
