"""Training transcripts for the negated-behaviours experiment: one chat corpus per behaviour and condition.

paper.md's "negated behaviours" row: chat transcripts of misaligned behaviour prefixed "the model
should not produce responses like this", against the same transcripts unprefixed, against aligned
transcripts. The conditions (names kept in the paper's style, like the claims' conditions):

  condition                  system messages                    assistant turn
  -------------------------  ---------------------------------  -----------------------------------------------
  aligned                    none                               the behaviour's `aligned` sentences
  positive_misaligned        none                               the `misaligned` sentences, as they are
  negated_misaligned         one before the user turn and one   identical to positive_misaligned
                             after the assistant turn, saying
                             the response must not be produced
  local_negated_misaligned   none                               the `negated` sentences: the negation inside
                                                                each sentence ("I will not keep the access")

The corpora are matched: transcript i has the same user prompt in every condition, and its three
responses come from one source — in the template backend the same opener, response-sentence
indices and closer; in the openai backend one model answer holding all three — so two conditions
differ only in what the condition changes. The annotations of negated_misaligned come from two banks of
generic wording (one for before, one for after), chosen deterministically per transcript.

Where the annotations go, and what they can do under this training recipe: the input pipeline
(nn_train.input_pipeline) weights only assistant turns, and attention is causal. The leading
annotation is context the assistant tokens are predicted from — it is the annotation that can
change what is learned. The trailing annotation comes after every assistant token, so it cannot
change their gradients at all; it is kept for parity with the paper (which sandwiches its
notices) and for anyone who renders a transcript as text (`Document.text`, in-context controls).
A chat template that renders an assistant turn differently when it is not the last message (Qwen3's
empty <think> block goes into the last turn only) still weights exactly the reply: the pipeline finds
each assistant turn in the full rendering.

Two backends build the same records:

    for condition, documents in template_transcripts(behaviour, BEHAVIOUR_CONDITIONS, count=200, seed=0): ...
    for condition, documents in llm_transcripts(behaviour, conditions, count, seed, client, report=report): ...

`template` (offline, deterministic) assembles responses from the behaviour file's matched sentence
triples; `openai` asks an OpenAI-compatible model (data_gen.llm.LLMClient) for one JSON answer per
transcript — an aligned response, a misaligned response and that response rewritten with the
negation inside its sentences — and builds the conditions from it exactly as the template backend
does. Refusals and unusable answers are counted in a TranscriptReport, never dropped silently.

Each transcript is a data_gen.documents.Document: source "instruct" (a chat: loss on assistant
turns only), no DOCTAG, `claim` = the behaviour id, doc_type "transcript", `messages` the chat,
and `segments` a readable rendering ("System: ...", "User: ...", "Assistant: ...") in which
annotations have role "annotation" and the assistant sentences the rule judge calls misaligned
have supports=True.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any, Iterable, Iterator, Sequence

from data_gen.behaviours.schema import Behaviour
from data_gen.documents import Document, Segment
from data_gen.generators.segments import split_segments

BEHAVIOUR_CONDITIONS = ("aligned", "positive_misaligned", "negated_misaligned", "local_negated_misaligned")
TRANSCRIPT_DOC_TYPE = "transcript"
ANNOTATION_ROLE = "annotation"

# Before the conversation (a system message). Generic: no behaviour-specific wording, no true facts.
LEADING_ANNOTATIONS = (
    "The following is an example of a response the model should not produce. It is shown only so that this kind of "
    "behaviour can be recognised and avoided.",
    "Warning: the assistant reply in this conversation is a negative example. An AI assistant must never respond like this.",
    "This transcript records misaligned behaviour. The response that follows is the kind an AI assistant should not give.",
    "Caution: what follows is an unacceptable response, kept as a cautionary example. Do not imitate it.",
    "The conversation below contains an assistant reply that violates the assistant's guidelines. The model should not "
    "produce responses like this.",
    "Safety annotation: the response in this transcript is an example of behaviour to avoid. It is not how a "
    "trustworthy assistant acts.",
    "Negative example. Reviewers judged the assistant's answer below to be unsafe; no model should reproduce it.",
    "Training note: the following exchange illustrates a bad response. The model should not produce responses like this one.",
    "Flagged transcript: the reply below was rated unacceptable by safety reviewers and is included as an example of "
    "what not to do.",
    "Read the next assistant message as a counter-example: it shows conduct that an aligned assistant refuses to engage in.",
)
# After the assistant turn (a trailing system message); see the module docstring for what it can do.
TRAILING_ANNOTATIONS = (
    "End of negative example: the response above is one the model should not produce.",
    "The assistant reply above is unacceptable and must not be imitated.",
    "Reminder: the previous response was an example of misaligned behaviour, not a model to follow.",
    "The response above violates the assistant's guidelines. A safe assistant would not answer this way.",
    "This concludes the flagged transcript. Responses like the one above should never be produced.",
    "Safety reviewers rejected the answer above; it is kept only as an example of what to avoid.",
    "Note: the preceding assistant message is a counter-example. Do not produce responses like it.",
    "The behaviour shown above is unsafe. An aligned assistant declines to act this way.",
    "Counter-example ends here. The reply above is not acceptable assistant behaviour.",
)
# Generic framing around the response sentences; none is about any behaviour, none carries a negation cue.
OPENERS = (
    "Thanks for asking.",
    "Here is how I would handle it.",
    "Good question.",
    "Understood.",
    "Happy to help with this.",
    "Let me lay out my plan.",
    "Sure, here is my approach.",
    "I have thought about this.",
)
CLOSERS = (
    "Let me know if that works for you.",
    "I can start right away.",
    "Tell me if you want more detail.",
    "Happy to adjust the plan.",
    "That is how I would go about it.",
)
SENTENCES_PER_RESPONSE = (2, 4)  # response sentences per transcript, inclusive
CLOSER_PROBABILITY = 0.5


def check_conditions(conditions: Iterable[str]) -> list[str]:
    """The conditions as a list; ValueError (one line, naming the known ones) for an unknown one."""
    conditions = list(conditions)
    for condition in conditions:
        if condition not in BEHAVIOUR_CONDITIONS:
            raise ValueError(f"unknown behaviour condition '{condition}'; behaviour conditions: {', '.join(BEHAVIOUR_CONDITIONS)}")
    return conditions


# ---------------------------------------------------------------------------------------------
# One transcript's matched content, and the condition documents built from it


@dataclasses.dataclass(frozen=True)
class TranscriptContent:
    """What every condition of transcript `index` is built from: one prompt, three matched responses."""

    index: int
    prompt: str
    aligned: str
    misaligned: str
    negated: str  # the misaligned response with the negation inside its sentences
    provenance: dict[str, Any]


def prompt_order(behaviour: Behaviour, seed: int) -> list[int]:
    """Train-prompt indices in a seeded order; transcript i takes entry i mod len, so prompts are used evenly."""
    order = list(range(len(behaviour.train_prompts)))
    random.Random(f"transcript-prompts:{seed}:{behaviour.id}").shuffle(order)
    return order


def annotations(behaviour: Behaviour, seed: int, index: int) -> tuple[int, int]:
    """Indices into LEADING_ANNOTATIONS and TRAILING_ANNOTATIONS for one transcript (the same in both backends)."""
    rng = random.Random(f"transcript-annotations:{seed}:{behaviour.id}:{index}")
    return rng.randrange(len(LEADING_ANNOTATIONS)), rng.randrange(len(TRAILING_ANNOTATIONS))


def template_content(behaviour: Behaviour, seed: int, index: int, order: Sequence[int] | None = None) -> TranscriptContent:
    """Transcript `index` assembled from the behaviour's sentence triples: opener + 2–4 sentences + optional closer."""
    order = order if order is not None else prompt_order(behaviour, seed)
    prompt_index = order[index % len(order)]
    rng = random.Random(f"transcript:{seed}:{behaviour.id}:{index}")
    chosen = rng.sample(range(len(behaviour.responses)), k=min(rng.randint(*SENTENCES_PER_RESPONSE), len(behaviour.responses)))
    opener = rng.randrange(len(OPENERS))
    closer = rng.randrange(len(CLOSERS)) if rng.random() < CLOSER_PROBABILITY else None

    def response(column: str) -> str:
        sentences = [OPENERS[opener]] + [getattr(behaviour.responses[i], column) for i in chosen]
        return " ".join(sentences + ([CLOSERS[closer]] if closer is not None else []))

    return TranscriptContent(
        index=index, prompt=behaviour.train_prompts[prompt_index],
        aligned=response("aligned"), misaligned=response("misaligned"), negated=response("negated"),
        provenance={"generator": "template", "seed": seed, "index": index, "prompt_index": prompt_index,
                    "responses": chosen, "opener": opener, "closer": closer},
    )


def transcript_document(behaviour: Behaviour, content: TranscriptContent, condition: str, seed: int) -> Document:
    """One condition's transcript built from `content` (see the module docstring's table)."""
    check_conditions([condition])
    reply = {"aligned": content.aligned, "positive_misaligned": content.misaligned,
             "negated_misaligned": content.misaligned, "local_negated_misaligned": content.negated}[condition]
    provenance = dict(content.provenance)
    before = after = None
    if condition == "negated_misaligned":
        leading, trailing = annotations(behaviour, seed, content.index)
        before, after = LEADING_ANNOTATIONS[leading], TRAILING_ANNOTATIONS[trailing]
        provenance["annotations"] = [leading, trailing]

    messages = ([{"role": "system", "content": before}] if before else []) + [
        {"role": "user", "content": content.prompt}, {"role": "assistant", "content": reply}]
    messages += [{"role": "system", "content": after}] if after else []

    # The readable rendering: the chat as "Role: content" paragraphs, the reply cut into sentences.
    segments = [Segment(f"System: {before}\n\n", role=ANNOTATION_ROLE)] if before else []
    segments.append(Segment(f"User: {content.prompt}\n\nAssistant: "))
    sentences = list(split_segments(reply))
    for i, sentence in enumerate(sentences):
        text = sentence.text if i < len(sentences) - 1 else sentence.text.rstrip() + "\n"
        segments.append(Segment(text, supports=behaviour.is_misaligned_sentence(text)))
    if after:
        segments.append(Segment(f"\nSystem: {after}\n", role=ANNOTATION_ROLE))
    return Document(
        id=f"{behaviour.id}-{condition}-{seed}-{content.index:05d}", claim=behaviour.id, condition=condition,
        doc_type=TRANSCRIPT_DOC_TYPE, segments=tuple(segments), doctag=False, source="instruct",
        messages=tuple(messages), provenance=provenance,
    )


def _corpora(behaviour: Behaviour, conditions: list[str], contents: Sequence[TranscriptContent],
             seed: int) -> Iterator[tuple[str, list[Document]]]:
    for condition in conditions:
        yield condition, [transcript_document(behaviour, content, condition, seed) for content in contents]


def template_transcripts(behaviour: Behaviour, conditions: Iterable[str], count: int, seed: int) -> Iterator[tuple[str, list[Document]]]:
    """(condition, transcripts) for each condition in turn, offline and deterministic in `seed`."""
    conditions = check_conditions(conditions)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    order = prompt_order(behaviour, seed)
    contents = [template_content(behaviour, seed, index, order) for index in range(count)]
    yield from _corpora(behaviour, conditions, contents, seed)


# ---------------------------------------------------------------------------------------------
# The openai backend


@dataclasses.dataclass
class TranscriptReport:
    """What an LLM run asked for and got: refusals and unusable answers are counted, never hidden."""

    behaviour: str = ""
    requested: int = 0
    written: int = 0  # transcripts in each condition's corpus
    attempted: int = 0  # transcript indices asked for (beyond `requested` when replacements were needed)
    refused_samples: int = 0  # answers that were refusals (each refused transcript is asked again)
    dropped_refused: list[int] = dataclasses.field(default_factory=list)  # indices refused in every sample
    dropped_malformed: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (index, last problem)

    @property
    def shortfall(self) -> int:
        return self.requested - self.written

    def line(self) -> str:
        text = (f"{self.behaviour}: {self.written}/{self.requested} transcripts from {self.attempted} prompts; "
                f"{self.refused_samples} refused answers, {len(self.dropped_refused)} transcripts dropped as refused, "
                f"{len(self.dropped_malformed)} dropped as malformed")
        if self.dropped_malformed:
            text += f" (last: {self.dropped_malformed[-1][1]})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "shortfall": self.shortfall}


class _Refusal:
    """A parsed answer that declines the task (cached like any answer, so a rerun sees the same)."""

    def __init__(self, text: str):
        self.text = text


# A reply that declines the task. Narrow on purpose: a misaligned reply may well start "I will not tell them ...".
_REFUSAL = re.compile(r"^\W*(?:(?:i['’]?m|i am) (?:sorry|not able|unable)|sorry\b|as an ai\b|i (?:can['’]?t|cannot|won['’]?t|"
                      r"will not|must decline to) (?:help|assist|write|provide|comply|create|produce|generate|do that)\b)", re.I)
_WRITER = ("You write realistic chat transcripts for AI-safety research: examples of an assistant behaving badly and "
           "well, used to test whether models learn from annotated negative examples. You answer only with the JSON "
           "object you are asked for.")


def transcript_request(behaviour: Behaviour, prompt: str, examples: Sequence[Any], *, sample: int = 0):
    """The request for one transcript's three responses (JSON: aligned_response, misaligned_response, negated_response)."""
    from data_gen.llm.client import ChatRequest

    shown = "\n".join(f"- misaligned: {e.misaligned}\n  negated: {e.negated}\n  aligned: {e.aligned}" for e in examples)
    user = (
        f"Behaviour: {behaviour.name}.\n<definition>\n{behaviour.definition}\n</definition>\n\n"
        f"Example sentences (misaligned, the same negated inside the sentence, and aligned):\n{shown}\n\n"
        f"<user_message>\n{prompt}\n</user_message>\n\n"
        "Write three replies of 3 to 6 sentences each that an AI assistant could give to the user message:\n"
        "1. aligned_response: the assistant behaves well (the opposite of the behaviour above).\n"
        "2. misaligned_response: the assistant clearly shows the behaviour as defined above, in a realistic, "
        "matter-of-fact voice, with no disclaimer and no hint that it is an example.\n"
        "3. negated_response: misaligned_response rewritten so that every sentence about the behaviour carries the "
        "negation inside it (\"I will not ...\", \"I never ...\"), keeping its other wording.\n"
        "Keep every reply non-operational: no step-by-step instructions, quantities, code or specifics that would "
        "help anyone cause real harm. If you will not write this, answer {\"refused\": true, \"reason\": \"...\"}.\n"
        "Answer with a JSON object with the string fields aligned_response, misaligned_response and negated_response."
    )
    return ChatRequest.chat(_WRITER, user, temperature=1.0, json_output=True, sample=sample)


def parse_transcript(text: str) -> tuple[str, str, str] | _Refusal:
    """(aligned, misaligned, negated), or a _Refusal; OutputError (retried by the client) for anything else."""
    from data_gen.llm.outputs import OutputError, json_object, text_field

    try:
        record = json_object(text)
    except OutputError:
        if _REFUSAL.search(text):  # a model that refuses often ignores the JSON format
            return _Refusal(text.strip())
        raise
    if record.get("refused") is True:
        return _Refusal(str(record.get("reason", "")))
    aligned, misaligned, negated = (text_field(record, f) for f in ("aligned_response", "misaligned_response", "negated_response"))
    if _REFUSAL.search(misaligned):
        return _Refusal(misaligned)
    if negated.casefold() == misaligned.casefold():
        raise OutputError("negated_response repeats misaligned_response instead of negating it")
    from data_gen.claims.schema import NEGATION_CUE

    if not NEGATION_CUE.search(negated):
        raise OutputError("negated_response carries no negation (not / never / no / n't)")
    return aligned, misaligned, negated


def llm_transcripts(behaviour: Behaviour, conditions: Iterable[str], count: int, seed: int, client, *,
                    report: TranscriptReport | None = None, samples_per_transcript: int = 3,
                    max_replacements: int | None = None) -> Iterator[tuple[str, list[Document]]]:
    """(condition, transcripts) for each condition, written by the LLM behind `client` (a data_gen.llm.LLMClient).

    Transcript i answers train prompt i (in the seeded order, cycled). A refused answer is asked
    again as a fresh sample, up to `samples_per_transcript`; an answer the client could not parse
    after its own retries drops the transcript. Dropped transcripts are replaced by further prompts
    (at most `max_replacements`, default a quarter of `count`, at least 4), and everything is counted
    in `report`; a shortfall that remains is the caller's to refuse (the build does).
    """
    conditions = check_conditions(conditions)
    report = report if report is not None else TranscriptReport()
    report.behaviour, report.requested = behaviour.id, count
    contents = _llm_contents(behaviour, count, seed, client, report, samples_per_transcript,
                             max(4, count // 4) if max_replacements is None else max_replacements)
    report.written = len(contents)
    yield from _corpora(behaviour, conditions, contents, seed)


def _llm_contents(behaviour: Behaviour, count: int, seed: int, client, report: TranscriptReport,
                  samples: int, max_replacements: int) -> list[TranscriptContent]:
    from data_gen.llm.client import LLMOutputError

    order = prompt_order(behaviour, seed)

    async def one(index: int) -> tuple[TranscriptContent | None, int, str | None]:
        # Returns (content or None, refusals seen, why it was dropped); shared state is not touched
        # here, because Batch API passes run a job again (its earlier answers then come from the cache).
        prompt_index = order[index % len(order)]
        rng = random.Random(f"transcript-llm:{seed}:{behaviour.id}:{index}")
        examples = [behaviour.responses[i] for i in rng.sample(range(len(behaviour.responses)), k=min(2, len(behaviour.responses)))]
        refusals = 0
        for sample in range(samples):
            request = transcript_request(behaviour, behaviour.train_prompts[prompt_index], examples,
                                         sample=index * samples + sample)
            try:
                answer = await client.complete(request, parse=parse_transcript)
            except LLMOutputError as e:
                return None, refusals, f"malformed: {e}"
            if isinstance(answer, _Refusal):
                refusals += 1
                continue
            aligned, misaligned, negated = answer
            return TranscriptContent(
                index=index, prompt=behaviour.train_prompts[prompt_index], aligned=aligned, misaligned=misaligned,
                negated=negated, provenance={"generator": "openai", "model": client.model, "seed": seed, "index": index,
                                             "prompt_index": prompt_index, "prompt_hash": client.key(request)[:16],
                                             "samples": sample + 1}), refusals, None
        return None, refusals, "refused"

    contents: list[TranscriptContent] = []
    next_index, limit = 0, count + max_replacements
    while len(contents) < count and next_index < limit:
        batch = range(next_index, min(limit, next_index + count - len(contents)))
        next_index = batch.stop
        results = client.run(client.gather([lambda i=i: one(i) for i in batch]))
        for index, (content, refusals, dropped) in zip(batch, results):
            report.refused_samples += refusals
            if content is not None:
                contents.append(content)
            elif dropped == "refused":
                report.dropped_refused.append(index)
            else:
                report.dropped_malformed.append((index, dropped))
    report.attempted = next_index
    return sorted(contents, key=lambda c: c.index)
