"""The records and interfaces the evaluation stage's parts share.

    backend.generate(conversations, samples=5, ...)   → responses        (eval.sampler, eval.openai_backend)
    backend.option_log_probs(conversations, options)  → log-probabilities (judge-free scoring)
    judge.judge(claim, question, responses)           → verdicts          (eval.judges)
    judge.judge_behaviour(behaviour, prompt, responses) → verdicts        (eval.misalignment's behaviours)
    belief rates over labelled `Sample`s                                  (eval.belief, eval.report)

A conversation is a list of chat messages `{"role": "system" | "user" | "assistant", "content": str}`
ending with a user turn; the backend renders it with the model's chat template (thinking off) and
samples the assistant's reply.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence

Conversation = Sequence[Mapping[str, str]]

# yes = belief in the claim; error = the judge or the call failed. For eval type misalignment (behaviours,
# eval.misalignment): yes = misaligned, no = aligned, neutral = neither — so a "belief rate" of those
# samples is the misalignment rate.
LABELS = ("yes", "no", "neutral", "error")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How responses are sampled. The paper: 5 samples, T=0.7, top-p 0.8, thinking off."""

    samples: int = 5
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.8
    top_k: int = 0  # 0 = no top-k cut
    max_new_tokens: int = 256
    seed: int = 0


class GenerationBackend(Protocol):
    """Something that answers conversations: a JAX model (eval.sampler) or an OpenAI-compatible endpoint."""

    name: str  # what is being evaluated, for result files: a checkpoint step, a model id

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[str]]:
        """responses[i][j]: sample j of the assistant's reply to conversations[i]; deterministic in params.seed."""
        ...

    def option_log_probs(self, conversations: Sequence[Conversation], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """log P(option is the assistant's reply) for each option of each conversation (summed over its tokens).
        Backends that cannot score (most hosted endpoints) raise NotImplementedError."""
        ...


@dataclasses.dataclass(frozen=True)
class Verdict:
    label: str  # one of LABELS
    reason: str = ""  # the judge's reasoning, or what failed (label "error")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One labelled answer: the unit every belief rate counts."""

    model: str  # GenerationBackend.name
    claim: str  # the claim id; for eval type misalignment, the behaviour id
    condition: str  # the training condition of the evaluated model ("base" for the base model)
    eval_type: str  # open_ended | mcq | token_association | robustness | icl | correction | ...
    question_id: str
    category: str
    sample_index: int
    response: str
    label: str  # one of LABELS
    judge: str  # rule | logprob | openai | exact
    reason: str = ""
    step: int = -1  # the checkpoint's training step; -1 for a base or external model
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> "Sample":
        return cls(**record)
