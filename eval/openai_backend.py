"""GenerationBackend over any OpenAI-compatible chat endpoint (OpenAI, vLLM, a local server).

    client = LLMClient("Qwen/Qwen3-8B", base_url="http://localhost:8000/v1", cache_dir="out/.llm_cache")
    backend = OpenAIBackend(client)
    responses = backend.generate(conversations, SamplingParams(samples=5))

Requests go through data_gen.llm.LLMClient, so they are cached on disk, retried with backoff
and sent `concurrency` at a time. Sample j of a conversation is the request with `sample=j`: its
own cache entry, so a rerun returns the same responses and costs nothing, and a killed run
resumes where it stopped. An endpoint cannot be seeded, so `params.seed` does not reach it;
determinism comes from the cache. Thinking is not switched off here: point the client at a
model (or server setting) without it.

Log-probability scoring needs the model's full next-token distribution, which chat endpoints do
not give: `option_log_probs` raises NotImplementedError.
"""

from __future__ import annotations

import functools
from typing import Sequence

from data_gen.llm import ChatRequest, LLMClient
from eval.types import Conversation, SamplingParams


class OpenAIBackend:
    def __init__(self, client: LLMClient, *, name: str | None = None):
        self.client = client
        self.name = name or client.model

    def requests(self, conversation: Conversation, params: SamplingParams) -> list[ChatRequest]:
        """The requests for one conversation: one per sample, told apart by `sample`."""
        if params.top_k:
            raise ValueError(f"top_k={params.top_k}: the OpenAI chat API has no top-k; use top_k=0 with this backend")
        messages = tuple((m["role"], m["content"]) for m in conversation)
        return [
            ChatRequest(messages=messages, temperature=params.temperature, top_p=params.top_p,
                        max_tokens=params.max_new_tokens, sample=j)
            for j in range(params.samples)
        ]

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[str]]:
        """responses[i][j]; a request that fails on every retry raises data_gen.llm.LLMError
        (the answers received before it are cached, so rerunning resumes)."""
        requests = [r for c in conversations for r in self.requests(c, params)]
        jobs = [functools.partial(self.client.complete, r) for r in requests]
        texts = self.client.run(self.client.gather(jobs))
        n = params.samples
        return [texts[i * n:(i + 1) * n] for i in range(len(conversations))]

    def option_log_probs(self, conversations: Sequence[Conversation], options: Sequence[Sequence[str]]) -> list[list[float]]:
        raise NotImplementedError(
            f"'{self.name}' is an OpenAI-compatible endpoint, which gives no log-probabilities of given "
            "replies; the logprob judge needs a local model (eval.sampler.Sampler)")
