"""Token and cost accounting for LLM runs: what was sent, what the cache saved, what it cost.

One `Usage` per client counts every chat-completion attempt, cache hit, retry (by reason),
token and Batch API line. `summary()` is the plain dict that `generate.py` prints and writes to
DIR/<claim>/usage.json. Cost is an *estimate* from a small price table (USD per 1M tokens);
a model not in the table reports its cost as unknown (None), never as 0, so a run against a
local vLLM server or a new model cannot be mistaken for a free one.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping

# USD per 1M tokens (input, output), OpenAI list prices for standard (non-batch) requests when
# this table was written; override with LLMClient(prices=...) or `--prices` when they change.
PRICES_PER_1M: Mapping[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
}
# The Batch API bills half the standard price.
BATCH_DISCOUNT = 0.5


def price_for(model: str, prices: Mapping[str, tuple[float, float]]) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for `model`, or None when it is not in `prices`.

    A dated snapshot ("gpt-4.1-mini-2025-04-14") takes the price of its longest listed prefix.
    """
    if model in prices:
        return prices[model]
    prefixes = [name for name in prices if model.startswith(name + "-")]
    return prices[max(prefixes, key=len)] if prefixes else None


@dataclasses.dataclass
class Usage:
    """Counters of one client; all of them only ever grow."""

    model: str
    requests: int = 0  # chat-completion HTTP requests sent, every attempt included
    completions: int = 0  # responses received with a well-formed body (what the provider bills)
    cache_hits: int = 0
    retries: int = 0  # attempts after the first, for any reason
    retry_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: int = 0  # requests that failed on every attempt
    prompt_tokens: int = 0
    completion_tokens: int = 0
    batch_requests: int = 0  # lines submitted through the Batch API
    batch_completions: int = 0  # lines that came back usable and filled the cache
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    fallbacks: int = 0  # outputs still unusable after every attempt, replaced by an offline fallback

    def copy(self) -> "Usage":
        return dataclasses.replace(self, retry_reasons=collections.Counter(self.retry_reasons))

    def minus(self, earlier: "Usage") -> "Usage":
        """The counts accumulated since the snapshot `earlier` (e.g. for one claim of a run)."""
        delta = Usage(self.model)
        for field in dataclasses.fields(self):
            if field.name == "model":
                continue
            setattr(delta, field.name, getattr(self, field.name) - getattr(earlier, field.name))
        delta.retry_reasons = +delta.retry_reasons  # drop zero and negative entries
        return delta

    def estimated_cost_usd(self, prices: Mapping[str, tuple[float, float]] = PRICES_PER_1M) -> float | None:
        price = price_for(self.model, prices)
        if price is None:
            return None
        standard = self.prompt_tokens * price[0] + self.completion_tokens * price[1]
        batch = (self.batch_prompt_tokens * price[0] + self.batch_completion_tokens * price[1]) * BATCH_DISCOUNT
        return round((standard + batch) / 1e6, 6)

    def summary(self, prices: Mapping[str, tuple[float, float]] = PRICES_PER_1M) -> dict[str, Any]:
        price = price_for(self.model, prices)
        return {
            "model": self.model,
            "requests": self.requests,
            "completions": self.completions,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "retry_reasons": dict(sorted(self.retry_reasons.items())),
            "failures": self.failures,
            "fallbacks": self.fallbacks,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "batch_requests": self.batch_requests,
            "batch_completions": self.batch_completions,
            "batch_prompt_tokens": self.batch_prompt_tokens,
            "batch_completion_tokens": self.batch_completion_tokens,
            "price_per_1m_tokens": {"input": price[0], "output": price[1]} if price else None,
            "estimated_cost_usd": self.estimated_cost_usd(prices),
        }

    def line(self, prices: Mapping[str, tuple[float, float]] = PRICES_PER_1M) -> str:
        """One human-readable line for the console."""
        cost = self.estimated_cost_usd(prices)
        cost_text = f"~${cost:.4f}" if cost is not None else f"cost unknown (no price for '{self.model}')"
        batch = f", {self.batch_completions} via Batch API" if self.batch_requests else ""
        return (f"{self.requests} requests, {self.cache_hits} cache hits, {self.retries} retries{batch}, "
                f"{self.prompt_tokens + self.batch_prompt_tokens:,} prompt + "
                f"{self.completion_tokens + self.batch_completion_tokens:,} completion tokens, {cost_text}")


def parse_price(text: str) -> tuple[float, float]:
    """'0.4,1.6' → (0.4, 1.6): USD per 1M input and output tokens."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        price = (float(parts[0]), float(parts[1]))
    except ValueError:
        raise ValueError(f"price '{text}' is not INPUT,OUTPUT in USD per 1M tokens (e.g. 0.4,1.6)") from None
    if min(price) < 0:
        raise ValueError(f"price '{text}' is negative")
    return price
