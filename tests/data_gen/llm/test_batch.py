"""The Batch API path: passes of jobs, the cache filled from batch output, failed lines through the normal path, resume."""

from __future__ import annotations

import asyncio

import pytest

from data_gen.llm import ChatRequest
from data_gen.llm.outputs import json_object, string_list
from tests.data_gen.llm.fake_llm import make_client


def _two_stage_job(client, fact: str):
    """A job whose second request depends on the first answer: two passes under the Batch API."""

    async def job():
        types = await client.complete(ChatRequest.chat(
            "You write documents.", f'<fact>{fact}</fact> Answer in JSON: {{"document_types": [...]}} with exactly 2 entries.',
            json_output=True), parse=lambda t: string_list(json_object(t), "document_types"))
        ideas = await client.complete(ChatRequest.chat(
            "You write documents.", f'<fact>{fact}</fact>\n<document_type>{types[0]}</document_type>\n'
            f'Answer in JSON: {{"ideas": [...]}} with exactly 3 entries.', json_output=True),
            parse=lambda t: string_list(json_object(t), "ideas"))
        return fact, types, ideas

    return job


def _gather(client, facts):
    return client.run(client.gather([_two_stage_job(client, fact) for fact in facts]))


def test_the_batch_api_fills_the_cache_and_failed_lines_fall_back(fake_llm, tmp_path):
    fake_llm.fail_batch_lines_every = 4
    client = make_client(fake_llm, tmp_path / "cache", batch_api=True)
    facts = [f"batch fact {i}" for i in range(10)]
    results = _gather(client, facts)
    assert [r[0] for r in results] == facts
    assert all(len(types) == 2 and len(ideas) == 3 for _, types, ideas in results)
    assert len(fake_llm.batches) == 2  # one batch per pass: first stage, then second stage
    failed = 2 + 2  # every 4th of 10 lines, in each batch
    assert fake_llm.completion_requests == failed  # only the failed lines went through /chat/completions
    usage = client.usage
    assert usage.batch_requests == 20 and usage.batch_completions == fake_llm.batch_lines_answered == 16
    assert usage.batch_prompt_tokens > 0 and usage.requests == failed
    assert len(client.cache) == 20
    assert not (tmp_path / "cache" / "batches").exists() or not list((tmp_path / "cache" / "batches").iterdir())
    # The filled cache serves a normal run with no request at all.
    rerun = make_client(fake_llm, tmp_path / "cache")
    assert _gather(rerun, facts) == results
    assert rerun.usage.requests == 0 and fake_llm.completion_requests == failed and len(fake_llm.batches) == 2


def test_a_pending_batch_is_resumed_not_submitted_again(fake_llm, tmp_path):
    fake_llm.hold_batches = True
    client = make_client(fake_llm, tmp_path / "cache", batch_api=True)
    facts = ["pending fact a", "pending fact b"]

    async def interrupted():
        await asyncio.wait_for(client.gather([_two_stage_job(client, f) for f in facts]), timeout=0.3)

    with pytest.raises(asyncio.TimeoutError):  # as if the run were killed while the batch is in progress
        client.run(interrupted())
    assert len(fake_llm.batches) == 1 and list((tmp_path / "cache" / "batches").glob("*.json"))
    fake_llm.hold_batches = False
    resumed = make_client(fake_llm, tmp_path / "cache", batch_api=True)
    results = _gather(resumed, facts)
    assert [r[0] for r in results] == facts
    assert len(fake_llm.batches) == 2  # the held batch, resumed; then the second stage's batch
    assert fake_llm.completion_requests == 0 and resumed.usage.batch_requests == 2  # only the second stage was submitted anew


def test_identical_requests_are_one_batch_line(fake_llm, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache", batch_api=True)
    jobs = [_two_stage_job(client, "shared fact") for _ in range(3)]
    results = client.run(client.gather(jobs))
    assert results[0] == results[1] == results[2]
    assert client.usage.batch_requests == 2  # one line per stage
