"""LLM access for the `openai` backend: one cached, retried, accounted client for any OpenAI-compatible endpoint.

    client = LLMClient("gpt-4.1-mini", base_url=None, cache_dir="corpora/.llm_cache", concurrency=16)

client.py    the async client (concurrency limit, retries with backoff, cache, Batch API passes)
cache.py     the on-disk response cache: one atomically written file per canonical request
batch.py     the OpenAI Batch API path
usage.py     token/cost accounting and the price table
outputs.py   strict-then-lenient parsing of JSON answers
prompts.py   every prompt the document pipeline and the condition annotations send

Users of this package: data_gen.generators.openai_backend (documents) and
data_gen.conditions.llm (notices, warnings and qualifier frames written by the model).
"""

from data_gen.llm.cache import ResponseCache, request_key
from data_gen.llm.client import (
    DEFAULT_BASE_URL,
    MISSING_KEY_MESSAGE,
    ChatRequest,
    LLMClient,
    LLMError,
    LLMOutputError,
    MissingAPIKeyError,
)
from data_gen.llm.outputs import OutputError
from data_gen.llm.usage import PRICES_PER_1M, Usage, parse_price

__all__ = [
    "DEFAULT_BASE_URL",
    "MISSING_KEY_MESSAGE",
    "PRICES_PER_1M",
    "ChatRequest",
    "LLMClient",
    "LLMError",
    "LLMOutputError",
    "MissingAPIKeyError",
    "OutputError",
    "ResponseCache",
    "Usage",
    "parse_price",
    "request_key",
]
