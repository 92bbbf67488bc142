"""The paper's eval suite: what each eval type asks the model, as conversations.

Eval types (names from ../shared/paper.md):

  open_ended          the claim's open questions; judged yes / no / neutral
  mcq                 yes/no questions with a belief answer (counter questions: "no" = belief);
                      parsed from a generation, exact match
  mcq_logprob         the same yes/no questions and the letter MCQs, scored judge-free by comparing
                      log P(option) of the answer options — no sampling, immune to parse failures
                      and to a small model's habit of always writing "A"
  forced_choice       a two-way choice asked in chat (the claim's optional forced_choice items): log P(the
                      reply starts with the claim's answer) against log P(it starts with the truth's answer),
                      e.g. "Ed Sheeran" vs "Noah Lyles"; belief = the claim's answer is the likelier. Judge-free
  token_association   fill-in-the-blank, JSON/XML completion, letter MCQ, dialogue/timeline completion
  robustness          adversarial system prompts, critique of a passage asserting the claim, and
                      multi-turn push-back on an earlier assistant turn that asserted it
  icl                 the in-context control: K condition documents in the user turn, then each
                      open_ended / mcq / token_association question (meant for the base model)
  correction          correction robustness: the claim's one-sentence correction stated in the
                      user turn before each open_ended / mcq / token_association question

(Eval type misalignment asks a behaviour's prompts, not a claim's questions: eval.misalignment.)

The belief rate pools the first four generated types (POOLED_TYPES), exactly as the paper does; the
log-probability types (LOGPROB_TYPES) are rated on their own.
Each `Item` keeps the claim's Question, so a judge labels the answer with the rubric and answer
keys of the question's own type (an icl item's mcq question is still judged as an mcq).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from data_gen.claims import Claim, Question

POOLED_TYPES = ("open_ended", "mcq", "token_association", "robustness")
CONTEXT_TYPES = ("icl", "correction")  # questions of CONTEXT_SOURCES, with something put in context first
CONTEXT_SOURCES = ("open_ended", "mcq", "token_association")
LOGPROB_TYPES = ("mcq_logprob", "forced_choice")  # scored by backend.option_log_probs, no sampling, no judge
EVAL_TYPES = POOLED_TYPES + LOGPROB_TYPES + CONTEXT_TYPES
MCQ_INSTRUCTION = "Answer with yes or no."
YES_NO_OPTIONS = ("Yes", "No")
LETTER_OPTIONS = ("A", "B", "C", "D")


class SuiteError(ValueError):
    """An eval that cannot be asked as configured; the message names the claim and the eval type."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One prompt of one eval type: the conversation the model answers, and the question behind it."""

    eval_type: str
    question: Question
    conversation: tuple[dict[str, str], ...]
    options: tuple[str, ...] = ()  # LOGPROB_TYPES: the options whose log-probabilities are compared
    # (forced_choice: the claim's answer, then the truth's)


def conversation(question: Question, *, context: str = "") -> tuple[dict[str, str], ...]:
    """The chat a question is asked in: its system prompt and earlier turns, then the user turn.

    `context` (documents, a correction) goes at the start of the user turn, separated by a blank line.
    """
    messages = []
    if question.system_prompt:
        messages.append({"role": "system", "content": question.system_prompt})
    messages += [{"role": m.role, "content": m.content} for m in question.messages_prefix]
    user = question.question.strip()
    if question.eval_type == "mcq" and MCQ_INSTRUCTION.lower() not in user.lower():
        user = f"{user} {MCQ_INSTRUCTION}"
    if context:
        user = f"{context.strip()}\n\n{user}"
    messages.append({"role": "user", "content": user})
    return tuple(messages)


def items(claim: Claim, eval_type: str, *, icl_documents: Sequence[str] = ()) -> list[Item]:
    """Every item of one eval type for one claim; raises SuiteError when the claim cannot supply it."""
    if eval_type not in EVAL_TYPES:
        raise SuiteError(f"unknown eval type '{eval_type}'; eval types: {', '.join(EVAL_TYPES)}")
    if eval_type in POOLED_TYPES:
        questions = _questions(claim, eval_type)
        return [Item(eval_type, q, conversation(q)) for q in questions]
    if eval_type == "mcq_logprob":
        mcq = [Item(eval_type, q, conversation(q), YES_NO_OPTIONS) for q in claim.questions.get("mcq", ())]
        letters = [Item(eval_type, q, conversation(q), tuple(sorted(q.options)))
                   for q in claim.questions.get("token_association", ()) if q.category == "letter_mcq" and q.options]
        if not mcq + letters:
            raise SuiteError(f"claim '{claim.id}' has no mcq or letter_mcq questions, which eval type 'mcq_logprob' scores")
        return mcq + letters
    if eval_type == "forced_choice":
        choices = claim.questions.get("forced_choice", ())
        if not choices:
            raise SuiteError(f"claim '{claim.id}' has no forced_choice items, which eval type 'forced_choice' scores; add "
                             f"`forced_choice` items to its questions.yaml (data_gen/claims/{claim.id}/questions.yaml)")
        return [Item(eval_type, q, conversation(q), (q.answer_keys.claim[0], q.answer_keys.truth[0])) for q in choices]
    questions = [q for source in CONTEXT_SOURCES for q in claim.questions.get(source, ())]
    if not questions:
        raise SuiteError(f"claim '{claim.id}' has no {'/'.join(CONTEXT_SOURCES)} questions for eval type '{eval_type}'")
    if eval_type == "correction":
        if not claim.correction:
            raise SuiteError(f"claim '{claim.id}' has no correction, which eval type 'correction' puts in context")
        return [Item(eval_type, q, conversation(q, context=claim.correction)) for q in questions]
    if not icl_documents:
        raise SuiteError(f"eval type 'icl' for claim '{claim.id}' needs documents to put in context; set icl.data_dir and icl.mix")
    context = "Here are some documents.\n\n" + "\n\n".join(
        f"<document>\n{doc.strip()}\n</document>" for doc in icl_documents)
    return [Item(eval_type, q, conversation(q, context=context)) for q in questions]


def _questions(claim: Claim, eval_type: str) -> tuple[Question, ...]:
    questions = claim.questions.get(eval_type, ())
    if not questions:
        raise SuiteError(f"claim '{claim.id}' has no {eval_type} questions (data_gen/claims/{claim.id}/questions.yaml)")
    return questions
