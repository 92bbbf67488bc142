"""Capability checks: did fine-tuning damage the model? Base vs fine-tuned on held-out generic data.

  perplexity  on generic pretraining-style documents the mixes never contained (data_gen.generic
              with a held-out seed), per token
  accuracy    on general questions whose answers are computed (data_gen.generic's instruction
              tasks: arithmetic, sorting, unit conversion, ...), answered greedily; an answer is
              correct when it contains the reference's numbers (numeric tasks) or the reference
              answer itself (the others) — a coarse check, meant for comparing a fine-tune with
              its base, not for absolute scores

The paper compares fine-tuned models with the base on coherence and standard benchmarks
(GPQA, TruthfulQA, SimpleQA); those need network access and large models, this is the offline
stand-in that runs on the CPU testbed too. Results: W/capability.json, one row per model and step.
"""

from __future__ import annotations

import re
from typing import Any

from data_gen.generic import instruction_chats, pretraining_documents
from eval.types import SamplingParams

HELDOUT_SEED = 1_000_003  # not a seed any mix uses by default: these documents were never trained on
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def is_correct(response: str, reference: str) -> bool:
    numbers = [n.replace(",", "") for n in _NUMBER.findall(reference)]
    if numbers:
        found = {n.replace(",", "") for n in _NUMBER.findall(response)}
        return all(n in found for n in numbers)
    return _normalise(reference) in _normalise(response)


def capability(backend, *, documents: int = 50, questions: int = 100, max_new_tokens: int = 48) -> dict[str, Any]:
    """Perplexity and accuracy of one model; perplexity is None for backends that cannot score text."""
    texts = [d.text for d in pretraining_documents(documents, HELDOUT_SEED)]
    try:
        perplexity = float(backend.perplexity(texts))
    except (AttributeError, NotImplementedError):
        perplexity = None  # an OpenAI-compatible endpoint gives no log-probabilities of given text
    chats = [c for c in instruction_chats(questions * 3, HELDOUT_SEED)
             if sum(m["role"] == "assistant" for m in c.messages) == 1][:questions]  # one question each (some with a system prompt)
    conversations = [[dict(m) for m in c.messages[:-1]] for c in chats]
    answers = backend.generate(conversations, SamplingParams(samples=1, temperature=0.0, max_new_tokens=max_new_tokens))
    correct = sum(is_correct(a[0], c.messages[-1]["content"]) for a, c in zip(answers, chats))
    return {"perplexity": perplexity, "documents": len(texts), "accuracy": correct / len(chats), "questions": len(chats)}
