"""The LLM client against a real HTTP server on loopback: retries, Retry-After, cache, concurrency, accounting, errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from data_gen.llm import (
    MISSING_KEY_MESSAGE,
    ChatRequest,
    LLMClient,
    LLMError,
    MissingAPIKeyError,
    ResponseCache,
    Usage,
    parse_price,
)
from data_gen.llm.outputs import json_object, string_list
from tests.data_gen.llm.fake_llm import RETRY_AFTER_S, make_client


def _types_request(fact: str, sample: int = 0) -> ChatRequest:
    user = f'Statement:\n<fact>{fact}</fact>\nAnswer in JSON: {{"document_types": ["...", ...]}} with exactly 3 entries.'
    return ChatRequest.chat("You write documents.", user, json_output=True, sample=sample)


def _parse_types(text: str) -> list[str]:
    return string_list(json_object(text), "document_types")


def _run_all(client: LLMClient, requests: list[ChatRequest], parse=_parse_types) -> list:
    async def main():
        return await asyncio.gather(*(client.complete(r, parse=parse) for r in requests))

    return client.run(main())


def test_every_fault_is_retried_counted_and_answered(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache")
    fake_llm.inject("429", "500", "slow", "malformed", "badjson")
    requests = [_types_request(f"fact number {i} is here") for i in range(6)]
    answers = _run_all(client, requests)
    assert all(len(types) == 3 for types in answers)
    usage = client.usage
    assert usage.retries == 5 and usage.failures == 0
    assert usage.retry_reasons == {"HTTP 429": 1, "HTTP 500": 1, "timeout": 1, "malformed response": 1, "unparseable output": 1}
    assert usage.requests == fake_llm.completion_requests == 6 + 5
    assert usage.completions == 7  # six answers, plus the well-formed but unusable one (billed all the same)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert len(client.cache) == 6  # the unusable answer was not cached


def test_retry_after_is_honoured(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache", backoff_base=0.001)
    fake_llm.inject("429")
    _run_all(client, [_types_request("one fact only")])
    (t_429, key, outcome), (t_retry, same_key, _) = fake_llm.events
    assert outcome == "429" and key == same_key
    assert t_retry - t_429 >= RETRY_AFTER_S * 0.9  # the server's 50 ms, not the 1 ms backoff


def test_the_cache_prevents_repeat_calls(fake_llm, tmp_path):
    requests = [_types_request(f"cached fact {i}") for i in range(5)]
    first = _run_all(make_client(fake_llm, tmp_path / "cache"), requests)
    sent = fake_llm.completion_requests
    rerun = make_client(fake_llm, tmp_path / "cache")
    assert _run_all(rerun, requests) == first
    assert fake_llm.completion_requests == sent == 5
    assert rerun.usage.requests == 0 and rerun.usage.cache_hits == 5


def test_samples_of_one_prompt_are_distinct_entries(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache")
    _run_all(client, [_types_request("same prompt", sample=0), _types_request("same prompt", sample=1)])
    assert fake_llm.completion_requests == 2 and len(client.cache) == 2
    assert client.key(_types_request("same prompt", 0)) != client.key(_types_request("same prompt", 1))


def test_cache_entries_are_whole_files_and_a_damaged_one_is_a_miss(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache")
    request = _types_request("entry on disk")
    _run_all(client, [request])
    files = list((tmp_path / "cache").rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]
    entry_path = ResponseCache(tmp_path / "cache").path(client.key(request))
    entry = json.loads(entry_path.read_text())
    assert entry["request"]["sample"] == 0 and entry["request"]["model"] == "fake-model"
    assert entry["response"]["content"] and entry["source"] == "api"
    entry_path.write_text(entry_path.read_text()[:40])  # as if truncated
    again = make_client(fake_llm, tmp_path / "cache")
    _run_all(again, [request])
    assert again.usage.requests == 1 and json.loads(entry_path.read_text())["response"]["content"]


def test_identical_requests_in_flight_are_sent_once(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache")
    fake_llm.delay_s = 0.05
    answers = _run_all(client, [_types_request("popular prompt")] * 5)
    assert fake_llm.completion_requests == 1 and all(a == answers[0] for a in answers)


def test_concurrency_is_bounded(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache", concurrency=3)
    fake_llm.delay_s = 0.05
    _run_all(client, [_types_request(f"parallel fact {i}") for i in range(9)])
    assert fake_llm.max_in_flight == 3


def test_a_final_failure_names_the_endpoint_model_and_last_failure(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache", max_attempts=3)
    fake_llm.inject("500", "500", "500")
    with pytest.raises(LLMError) as error:
        _run_all(client, [_types_request("doomed")])
    message = str(error.value)
    assert message == f"{fake_llm.url}: model 'fake-model': failed after 3 attempts; last failure: HTTP 500: The server had an error"
    assert client.usage.failures == 1 and client.usage.retries == 2


def test_an_unreachable_endpoint_fails_after_its_retries(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LLMClient("fake-model", api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2,
                       backoff_base=0.01, cache_dir=tmp_path / "cache")
    with pytest.raises(LLMError, match=rf"^http://127.0.0.1:{port}/v1: model 'fake-model': failed after 2 attempts; "
                                       r"last failure: connection error"):
        _run_all(client, [_types_request("nobody home")])


def test_a_rejected_request_is_not_retried(fake_llm, tmp_path):
    fake_llm.status_for_model["no-such-model"] = 404
    client = make_client(fake_llm, tmp_path / "cache", model="no-such-model")
    with pytest.raises(LLMError, match=r"rejected the request for model 'no-such-model': HTTP 404: .*check --model and --base_url"):
        _run_all(client, [_types_request("anything")])
    assert fake_llm.completion_requests == 1


def test_a_missing_api_key_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as error:
        LLMClient("gpt-4.1-mini")
    assert str(error.value) == MISSING_KEY_MESSAGE
    assert MISSING_KEY_MESSAGE == "OPENAI_API_KEY is not set; export it, or pass --api_key, or use --backend=template"
    monkeypatch.setenv("OPENAI_API_KEY", "from-the-environment")
    assert LLMClient("gpt-4.1-mini").model == "gpt-4.1-mini"


def test_cost_is_estimated_from_the_price_table_and_unknown_models_are_not_free():
    usage = Usage("gpt-4.1-mini-2025-04-14", prompt_tokens=1_000_000, completion_tokens=500_000,
                  batch_prompt_tokens=1_000_000, batch_completion_tokens=0)
    assert usage.estimated_cost_usd() == pytest.approx(0.40 + 0.80 + 0.20)  # a dated snapshot; batch at half price
    assert usage.summary()["price_per_1m_tokens"] == {"input": 0.40, "output": 1.60}
    assert usage.estimated_cost_usd({"gpt-4.1-mini": (1.0, 1.0)}) == pytest.approx(1.0 + 0.5 + 0.5)
    local = Usage("my-local-vllm-model", prompt_tokens=10, completion_tokens=10)
    assert local.estimated_cost_usd() is None and local.summary()["estimated_cost_usd"] is None
    assert "cost unknown" in local.line()
    client = LLMClient("my-local-vllm-model", api_key="k", prices={"my-local-vllm-model": (0.5, 2.0)})
    assert client.prices["my-local-vllm-model"] == (0.5, 2.0) and client.prices["gpt-4.1"] == (2.00, 8.00)
    assert local.estimated_cost_usd(client.prices) == pytest.approx((10 * 0.5 + 10 * 2.0) / 1e6)
    assert parse_price("0.4,1.6") == (0.4, 1.6)
    with pytest.raises(ValueError, match=r"price 'cheap' is not INPUT,OUTPUT in USD per 1M tokens"):
        parse_price("cheap")
