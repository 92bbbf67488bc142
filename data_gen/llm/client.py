"""An async client for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, a local server).

    client = LLMClient("gpt-4.1-mini", cache_dir="out/.llm_cache", concurrency=16)
    text = client.run(client.complete(ChatRequest.chat(system, user)))

What it adds to `openai.AsyncOpenAI` (which it drives with max_retries=0):

* bounded concurrency — at most `concurrency` requests in flight (an asyncio semaphore), and
  identical requests in flight at once are sent only once;
* its own retries — exponential backoff with jitter on HTTP 408/409/429/5xx, timeouts, connection
  errors, malformed response bodies and outputs the caller's `parse` rejects; a Retry-After
  header is honoured. Other HTTP errors (a bad key, an unknown model) fail at once. A request that
  fails on every attempt raises one `LLMError` naming the endpoint, the model and the last failure;
* the on-disk cache of cache.py — a request already answered is never sent again, so a killed run
  resumes where it stopped and a rerun costs nothing;
* accounting (usage.py) — requests, cache hits, retries, tokens, estimated cost;
* the Batch API (batch.py) for bulk runs, through `gather`: with `batch_api=True` the jobs run in
  passes; each pass collects the requests that miss the cache, submits them as one batch (half
  price), fills the cache from its output and runs the jobs again, until every job completes.
  Requests the batch could not answer go through the normal path.

Everything asynchronous happens on the caller's event loop; the openai client and the semaphore
are created per loop, so `generate` and `annotate` may each run their own `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import email.utils
import json
import logging
import os
import random
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar

from data_gen.llm.cache import MemoryCache, ResponseCache, request_key
from data_gen.llm.outputs import OutputError
from data_gen.llm.usage import PRICES_PER_1M, Usage

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MISSING_KEY_MESSAGE = "OPENAI_API_KEY is not set; export it, or pass --api_key, or use --backend=template"
RETRY_AFTER_MAX_S = 600.0  # a server asking for more than 10 minutes is treated as asking for 10
_RETRYABLE_STATUS = (408, 409, 429)


class LLMError(RuntimeError):
    """An LLM request failed for good; the message is one line naming the endpoint, model and failure."""


class LLMOutputError(LLMError):
    """Every attempt got an answer, but none in the format the prompt asked for."""


class MissingAPIKeyError(LLMError):
    """No API key was given and OPENAI_API_KEY is not set."""


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """One chat-completion request, independent of the model (the client supplies it).

    `sample` distinguishes independent samples of the same prompt: it is part of the cache key
    but never sent, so sample 0 and sample 1 are two entries (two answers) of one prompt.
    """

    messages: tuple[tuple[str, str], ...]  # (role, content)
    temperature: float | None = 1.0
    top_p: float | None = None
    max_tokens: int | None = None
    json_output: bool = False  # response_format={"type": "json_object"}; the prompt must mention JSON
    sample: int = 0

    @classmethod
    def chat(cls, system: str, user: str, **options: Any) -> "ChatRequest":
        return cls(messages=(("system", system), ("user", user)), **options)

    def body(self, model: str) -> dict[str, Any]:
        """The JSON body sent to /chat/completions (also the Batch API line body)."""
        body: dict[str, Any] = {"model": model, "messages": [{"role": r, "content": c} for r, c in self.messages]}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.json_output:
            body["response_format"] = {"type": "json_object"}
        return body

    def canonical(self, model: str) -> dict[str, Any]:
        return {**self.body(model), "sample": self.sample}


class _Retryable(Exception):
    """One failed attempt that is worth repeating."""

    def __init__(self, kind: str, reason: str, *, retry_after: float | None = None, output: bool = False):
        super().__init__(reason)
        self.kind, self.reason, self.retry_after, self.output = kind, reason, retry_after, output


class _Deferred(Exception):
    """Raised inside a batch pass: this request was collected for the next batch, not sent."""


@dataclasses.dataclass
class _Collector:
    requests: dict[str, ChatRequest] = dataclasses.field(default_factory=dict)


_COLLECTOR: contextvars.ContextVar[_Collector | None] = contextvars.ContextVar("llm_batch_collector", default=None)


@dataclasses.dataclass
class _LoopState:
    loop: asyncio.AbstractEventLoop
    api: Any  # openai.AsyncOpenAI bound to this loop's connection pool
    semaphore: asyncio.Semaphore
    inflight: dict[str, asyncio.Future]


class LLMClient:
    """Cached, retried, rate-limited chat completions against one model at one endpoint."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        cache_dir: str | os.PathLike | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        batch_api: bool = False,
        batch_poll_s: float = 30.0,
        batch_max_requests: int = 50_000,
    ):
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise MissingAPIKeyError(MISSING_KEY_MESSAGE)
        if not model:
            raise ValueError("an LLM model name is required (e.g. --model=gpt-4.1-mini)")
        for name, value in (("concurrency", concurrency), ("max_attempts", max_attempts), ("batch_max_requests", batch_max_requests)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if batch_api and cache_dir is None:
            raise ValueError("the Batch API fills the response cache; give a cache_dir")
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.cache: ResponseCache = ResponseCache(cache_dir) if cache_dir is not None else MemoryCache()
        self.prices = {**PRICES_PER_1M, **(prices or {})}  # entries given override (or extend) the table
        self.batch_api = batch_api
        self.batch_poll_s = batch_poll_s
        self.batch_max_requests = batch_max_requests
        self.usage = Usage(model)
        self._loop_state: _LoopState | None = None
        self._batch_tried: set[str] = set()  # keys a batch has already had its chance at
        self._jitter = random.Random()  # timing only: never affects what is generated

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"

    # -----------------------------------------------------------------------------------------
    # Running

    def key(self, request: ChatRequest) -> str:
        return request_key(request.canonical(self.model))

    def run(self, awaitable: Awaitable[T]) -> T:
        """Runs `awaitable` on a fresh event loop and closes this client's connections afterwards."""

        async def main() -> T:
            try:
                return await awaitable
            finally:
                await self.aclose()

        return asyncio.run(main())

    async def aclose(self) -> None:
        state = self._loop_state
        if state is not None and state.loop is asyncio.get_running_loop():
            await state.api.close()
            self._loop_state = None

    def openai_client(self) -> Any:
        """The openai.AsyncOpenAI of the running event loop (max_retries=0: retries are ours)."""
        return self._state().api

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._loop_state is None or self._loop_state.loop is not loop:
            import openai  # imported here: the offline template path never pays for it

            # One INFO line per HTTP request from the transport drowns a 10,000-document run's output.
            for name in ("httpx", "httpx2", "openai"):
                logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))
            api = openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
            self._loop_state = _LoopState(loop, api, asyncio.Semaphore(self.concurrency), {})
        return self._loop_state

    async def gather(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """Runs every job (a coroutine function) concurrently; results in job order.

        With the Batch API, jobs run in passes: requests that miss the cache are collected
        instead of sent, submitted together as a batch, and the jobs that needed them run again
        (everything they asked before is then a cache hit).
        """
        if not self.batch_api:
            return list(await asyncio.gather(*(job() for job in jobs)))
        from data_gen.llm.batch import run_batch

        results: list[Any] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        while pending:
            collector = _Collector()
            token = _COLLECTOR.set(collector)  # the tasks gather creates inherit this context
            try:
                outcomes = await asyncio.gather(*(jobs[i]() for i in pending), return_exceptions=True)
            finally:
                _COLLECTOR.reset(token)
            deferred = []
            for i, outcome in zip(pending, outcomes):
                if isinstance(outcome, _Deferred):
                    deferred.append(i)
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    results[i] = outcome
            if deferred and not collector.requests:
                raise RuntimeError("a batch pass deferred jobs without collecting a request")  # a bug, not a user error
            if collector.requests:
                await run_batch(self, collector.requests)
                self._batch_tried.update(collector.requests)
            pending = deferred
        return results

    # -----------------------------------------------------------------------------------------
    # One request

    async def complete(self, request: ChatRequest, *, parse: Callable[[str], T] | None = None) -> T | str:
        """The model's answer to `request` (from the cache when it is there), passed through `parse`.

        `parse` turns the text into what the caller needs and raises `OutputError` when the text is
        not in the requested format; such an answer counts as a failed attempt and is not cached.
        Identical requests in flight together are sent once (they must use the same `parse`).
        """
        key = self.key(request)
        state = self._state()
        running = state.inflight.get(key)
        if running is None:
            running = asyncio.ensure_future(self._complete(request, key, parse))
            state.inflight[key] = running
            running.add_done_callback(lambda done, key=key: state.inflight.pop(key) if state.inflight.get(key) is done else None)
        return await running

    async def _complete(self, request: ChatRequest, key: str, parse: Callable[[str], T] | None) -> T | str:
        entry = self.cache.get(key)
        if entry is not None:
            try:
                value = _parsed(entry["response"]["content"], parse)
            except (OutputError, KeyError, TypeError):
                pass  # e.g. a Batch API answer this stage cannot use: ask again
            else:
                self.usage.cache_hits += 1
                return value
        collector = _COLLECTOR.get()
        if collector is not None and key not in self._batch_tried:
            collector.requests[key] = request
            raise _Deferred(key)
        return await self.with_retries(lambda: self._attempt(request, key, parse), f"model '{self.model}'")

    async def _attempt(self, request: ChatRequest, key: str, parse: Callable[[str], T] | None) -> T | str:
        state = self._state()
        async with state.semaphore:
            self.usage.requests += 1
            try:
                response = await state.api.chat.completions.create(**request.body(self.model))
            except Exception as e:
                raise self.classify(e) from e
        content, finish_reason, tokens = read_completion(response)
        self.usage.completions += 1
        self.usage.prompt_tokens += tokens[0]
        self.usage.completion_tokens += tokens[1]
        try:
            value = _parsed(content, parse)
        except OutputError as e:
            raise _Retryable("unparseable output", f"unusable output: {e}", output=True) from None
        self.cache.put(key, cache_entry(request.canonical(self.model), content, finish_reason, tokens, source="api"))
        return value

    async def with_retries(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """`attempt()` until it succeeds, backing off between failed attempts; `what` names it in the error."""
        last: _Retryable | None = None
        for number in range(1, self.max_attempts + 1):
            if last is not None:
                self.usage.retries += 1
                self.usage.retry_reasons[last.kind] += 1
                delay = self._delay(number - 1, last.retry_after)
                log.debug("retrying %s in %.2f s after %s", what, delay, last.reason)
                await asyncio.sleep(delay)
            try:
                return await attempt()
            except _Retryable as failure:
                last = failure
        self.usage.failures += 1
        error = LLMOutputError if last.output else LLMError
        raise error(f"{self.base_url}: {what}: failed after {self.max_attempts} attempts; last failure: {last.reason}")

    def _delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), RETRY_AFTER_MAX_S)
        exponential = self.backoff_base * 2 ** (failures - 1)
        # Jitter spreads the retries of many concurrent requests that failed together.
        return min(self.backoff_max, exponential * self._jitter.uniform(0.5, 1.5))

    def classify(self, error: Exception) -> Exception:
        """An exception of the openai client → _Retryable (try again) or LLMError (give up now)."""
        import openai

        if isinstance(error, openai.APITimeoutError):
            return _Retryable("timeout", f"no response within {self.timeout:g} s")
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error.__context__
            return _Retryable("connection", f"connection error ({cause or error})")
        if isinstance(error, openai.APIStatusError):
            status, message = error.status_code, _error_message(error)
            if status in _RETRYABLE_STATUS or status >= 500:
                return _Retryable(f"HTTP {status}", f"HTTP {status}: {message}", retry_after=retry_after_seconds(error.response.headers))
            hint = {401: "; check the API key (--api_key or OPENAI_API_KEY)", 403: "; check the API key's permissions",
                    404: "; check --model and --base_url"}.get(status, "")
            return LLMError(f"{self.base_url} rejected the request for model '{self.model}': HTTP {status}: {message}{hint}")
        if isinstance(error, (openai.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError)):
            return _Retryable("malformed response", f"malformed response body ({error})")
        return error


def _parsed(content: str, parse: Callable[[str], T] | None) -> T | str:
    return content if parse is None else parse(content)


def _error_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return str(getattr(error, "message", error))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asked us to wait (retry-after-ms, or Retry-After in seconds or as a date)."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def read_completion(response: Any) -> tuple[str, str | None, tuple[int, int]]:
    """(content, finish_reason, (prompt_tokens, completion_tokens)) of a chat completion object or dict."""

    def get(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    choices = get(response, "choices")
    if not isinstance(choices, (list, tuple)) or not choices:
        raise _Retryable("malformed response", "malformed response: no choices")
    message = get(choices[0], "message")
    content = get(message, "content") if message is not None else None
    if not isinstance(content, str):
        raise _Retryable("malformed response", "malformed response: the first choice has no text content")
    usage = get(response, "usage")
    tokens = (int(get(usage, "prompt_tokens") or 0), int(get(usage, "completion_tokens") or 0)) if usage is not None else (0, 0)
    return content, get(choices[0], "finish_reason"), tokens


def cache_entry(canonical: Mapping[str, Any], content: str, finish_reason: str | None, tokens: tuple[int, int], *, source: str) -> dict[str, Any]:
    return {
        "request": dict(canonical),
        "response": {"content": content, "finish_reason": finish_reason,
                     "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]}},
        "source": source,  # api | batch
        "created": round(time.time(), 3),
    }
