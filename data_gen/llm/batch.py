"""The OpenAI Batch API path: many chat requests as one asynchronous job, at half the price.

`LLMClient.gather` calls `run_batch` with the requests a pass of jobs missed in the cache:

1. the requests are written as a JSONL batch input, one line per request:
   {"custom_id": <cache key>, "method": "POST", "url": "/v1/chat/completions", "body": {...}};
2. the file is uploaded (files.create, purpose="batch") and a batch created for
   /v1/chat/completions with the 24 h completion window;
3. the batch id is recorded in CACHE_DIR/batches/<hash of the keys>.json before waiting, so a run
   killed while the batch is pending resumes polling that batch instead of paying for another;
4. batches.retrieve is polled until the batch is completed, failed, expired or cancelled;
5. the output file is downloaded and every line answered with HTTP 200 fills the cache.

A line that failed — listed in the error file, a non-200 status, an unusable body, or a batch that
failed or expired as a whole — is simply not cached; the client then sends that request through
the normal (retried, per-request) path, so a batch can only save money, never lose work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from data_gen.llm.cache import canonical_json, write_json_atomic

if TYPE_CHECKING:
    from data_gen.llm.client import ChatRequest, LLMClient

log = logging.getLogger(__name__)

BATCH_ENDPOINT = "/v1/chat/completions"
TRANSFER_TIMEOUT_S = 600.0  # batch files reach 200 MB: uploads and downloads get longer than one completion
COMPLETION_WINDOW = "24h"
TERMINAL_STATUSES = ("completed", "failed", "expired", "cancelled")


async def run_batch(client: "LLMClient", requests: Mapping[str, "ChatRequest"]) -> int:
    """Sends `requests` (cache key → request) through the Batch API; returns how many filled the cache."""
    keys = sorted(requests)
    filled = 0
    for start in range(0, len(keys), client.batch_max_requests):  # the API's per-batch line limit
        chunk = keys[start : start + client.batch_max_requests]
        filled += await _run_one(client, {key: requests[key] for key in chunk})
    return filled


async def _run_one(client: "LLMClient", requests: Mapping[str, "ChatRequest"]) -> int:
    api = client.openai_client()
    manifest = client.cache.directory / "batches" / f"{_batch_key(client.model, requests)}.json"
    batch = await _resume(client, manifest)
    if batch is None:
        lines = "".join(
            canonical_json({"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT, "body": request.body(client.model)}) + "\n"
            for key, request in requests.items()
        )
        upload = await _call(client, lambda: api.files.create(file=("batch_input.jsonl", lines.encode("utf-8")), purpose="batch",
                                                                   timeout=max(client.timeout, TRANSFER_TIMEOUT_S)),
                             "uploading the batch input file")
        batch = await _call(client, lambda: api.batches.create(input_file_id=upload.id, endpoint=BATCH_ENDPOINT,
                                                                completion_window=COMPLETION_WINDOW), "creating the batch")
        write_json_atomic(manifest, {"batch_id": batch.id, "input_file_id": upload.id, "requests": len(requests)})
        client.usage.batch_requests += len(requests)
        log.info("batch %s: %d requests submitted", batch.id, len(requests))
    while batch.status not in TERMINAL_STATUSES:
        await asyncio.sleep(client.batch_poll_s)
        batch_id, status = batch.id, batch.status
        batch = await _call(client, lambda: api.batches.retrieve(batch_id), f"polling batch {batch_id}")
        if batch.status != status:  # hours of waiting deserve a sign of life at each change
            log.info("batch %s: %s (%s)", batch_id, batch.status, batch.request_counts or "no counts yet")
    if batch.status != "completed":
        log.warning("batch %s ended '%s'; its unanswered requests go through the normal path", batch.id, batch.status)
    filled = 0
    if batch.output_file_id:  # an expired or failed batch may still hold answers
        output_id = batch.output_file_id
        content = await _call(client, lambda: api.files.content(output_id, timeout=max(client.timeout, TRANSFER_TIMEOUT_S)), f"downloading batch output {output_id}")
        filled = _fill_cache(client, requests, content.text)
    manifest.unlink(missing_ok=True)
    return filled


def _fill_cache(client: "LLMClient", requests: Mapping[str, "ChatRequest"], output: str) -> int:
    from data_gen.llm.client import _Retryable, cache_entry, read_completion

    filled = 0
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a damaged line: that request falls back to the normal path
        key = record.get("custom_id") if isinstance(record, dict) else None
        response = record.get("response") if isinstance(record, dict) else None
        if key not in requests or not isinstance(response, dict) or response.get("status_code") != 200:
            continue
        try:
            content, finish_reason, tokens = read_completion(response.get("body") or {})
        except _Retryable:
            continue
        client.cache.put(key, cache_entry(requests[key].canonical(client.model), content, finish_reason, tokens, source="batch"))
        client.usage.batch_completions += 1
        client.usage.batch_prompt_tokens += tokens[0]
        client.usage.batch_completion_tokens += tokens[1]
        filled += 1
    return filled


async def _resume(client: "LLMClient", manifest) -> Any:
    """The batch a killed run left pending for exactly these requests, or None."""
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        batch_id = recorded["batch_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from data_gen.llm.client import LLMError

    api = client.openai_client()
    try:
        batch = await _call(client, lambda: api.batches.retrieve(batch_id), f"resuming batch {batch_id}")
    except LLMError as e:
        log.warning("cannot resume batch %s (%s); submitting the requests again", batch_id, e)
        return None
    log.info("resuming batch %s (%s)", batch_id, batch.status)
    return batch


async def _call(client: "LLMClient", call: Callable[[], Awaitable[Any]], what: str) -> Any:
    """One Batch API call with the client's retry policy; a definite refusal names the Batch API."""
    from data_gen.llm.client import LLMError

    async def attempt() -> Any:
        try:
            return await call()
        except Exception as e:
            raise client.classify(e) from e

    try:
        return await client.with_retries(attempt, f"Batch API, {what}")
    except LLMError as e:
        if "rejected the request" in str(e):  # 4xx: the endpoint has no (or refuses the) Batch API
            raise LLMError(f"{e}; the endpoint may not offer the Batch API: run without --batch_api") from None
        raise


def _batch_key(model: str, requests: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"model": model, "keys": sorted(requests)}).encode("utf-8")).hexdigest()[:32]
