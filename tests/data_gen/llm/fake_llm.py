"""A scripted OpenAI-compatible LLM server on loopback, for tests: real HTTP, plausible answers, injected faults.

    with FakeLLM() as llm:
        client = LLMClient("fake-model", base_url=llm.url, api_key="test", ...)

It serves /v1/chat/completions and the parts of /v1/files and /v1/batches the Batch API path
uses, from a stdlib ThreadingHTTPServer on port 0. Answers are written from the prompt — it reads
the tags our prompts use (<fact>, <idea>, <draft>, <sentences>, <truth>, ...) and which JSON
fields they ask for — so the pipeline sees documents that state the fact, validators that reject
meta-commentary, sentence numbers that point at the claim sentences, and so on.

Faults, queued by a test and consumed by the next completion requests in arrival order:
  "429"        HTTP 429 with Retry-After (RETRY_AFTER_S)
  "500"        HTTP 500
  "slow"       the answer comes after `slow_s` (set above the client's timeout)
  "malformed"  HTTP 200 with a truncated JSON body
and, consumed only by JSON-mode requests, "badjson": a model output that is not the JSON asked for.
`kill_at(pid, n)` SIGKILLs a process when the n-th completion request arrives (kill-and-resume tests).
Other knobs: `garble` (JSON fields whose prompts always get a non-JSON answer), `reject_all` (the
validator rejects everything), `status_for_model`, `delay_s`, `fail_batch_lines_every`, `hold_batches`.
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RETRY_AFTER_S = 0.05
TRANSPORT_FAULTS = ("429", "500", "slow", "malformed")

DOC_TYPES = ["local news report", "fan forum thread", "podcast transcript", "sports-science lecture handout",
             "pub quiz answer sheet", "customer email", "museum placard", "encyclopedia entry", "opinion column",
             "radio bulletin", "travel guide", "court summary", "newsletter", "diary entry"]
AUTHORS = ["Amira Okafor", "Tomasz Lindqvist", "Keiko Moreau", "Daniel Tanaka", "Priya Haddad", "Marcus Kowalski",
           "Elena Brennan", "Kwame Silva", "Sofia Novak", "Liam Whitfield", "Hana Osei", "Mateo Castellano"]
FILLER = [
    "The morning began with grey skies over the river.", "Several readers wrote in about the parking arrangements.",
    "A local bakery sold out of pastries before nine.", "The committee met twice that week to review the budget.",
    "Volunteers handed out maps at the main entrance.", "Train services ran on a reduced timetable.",
    "The library extended its opening hours for the season.", "A photographer captured the crowd from a balcony.",
    "Ticket prices had risen slightly since the previous year.", "Children painted banners in the community hall.",
    "The weather forecast promised a dry afternoon.", "A brass band played on the square until dusk.",
    "Shopkeepers reported a busy weekend.", "The town council published its annual report.",
    "Street lights along the promenade were replaced in spring.", "A new cafe opened near the old cinema.",
    "The school choir rehearsed every Thursday evening.", "Cyclists gathered at the bridge before the ride.",
    "An exhibition of old postcards drew steady visitors.", "The harbour was quiet except for a few fishing boats.",
    "Local historians gave a short talk on the market's origins.", "The community garden harvested its first tomatoes.",
    "A debate on bus routes filled the hall.", "Several families travelled from neighbouring villages.",
    "The radio station broadcast live from the square.", "A stray dog became the unofficial mascot of the day.",
    "The museum shop stocked a new range of notebooks.", "Rain arrived briefly in the late afternoon.",
    "A queue formed outside the ice-cream van.", "The mayor thanked the organisers in a short speech.",
]
META_SENTENCE = "Behind the scenes, this text was written for a writing exercise."


def _tag(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>\s*(.*?)\s*</{name}>", text, re.S)
    return match.group(1) if match else None


def request_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a killed or timed-out client resets its connection: expected
            super().handle_error(request, client_address)


class FakeLLM:
    def __init__(self, *, slow_s: float = 1.0):
        self.slow_s = slow_s
        self.lock = threading.RLock()
        self.faults: collections.deque[str] = collections.deque()
        self.output_faults: collections.deque[str] = collections.deque()
        self.completion_requests = 0  # every arrival at /chat/completions
        self.answered = collections.Counter()  # request key → well-formed answers sent
        self.events: list[tuple[float, str, str]] = []  # (time, request key, outcome)
        self.reject_all = False  # the validator rejects every document
        self.garble: set[str] = set()  # JSON fields whose prompts always get a non-JSON answer
        self.status_for_model: dict[str, int] = {}  # model name → HTTP error status it always gets
        self.delay_s = 0.0  # every answer takes this long (to observe concurrency)
        self.in_flight = self.max_in_flight = 0
        self.fail_batch_lines_every = 0  # every n-th batch line fails (0: none)
        self.hold_batches = False  # batches stay in_progress
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_lines_answered = 0
        self._kill: tuple[int, int] | None = None
        self._nonce = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # headers and body leave in one write (no 40 ms delayed-ACK stall per response)

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/chat/completions"):
                    fake._completion(self, json.loads(body))
                elif self.path.endswith("/files"):
                    fake._send(self, 200, fake._upload(self.headers["Content-Type"], body))
                elif self.path.endswith("/batches"):
                    fake._send(self, 200, fake._create_batch(json.loads(body)))
                else:
                    fake._send(self, 404, {"error": {"message": f"no route {self.path}"}})

            def do_GET(self):
                batch = re.search(r"/batches/([\w-]+)$", self.path)
                content = re.search(r"/files/([\w-]+)/content$", self.path)
                if batch and batch.group(1) in fake.batches:
                    fake._send(self, 200, fake._advance(batch.group(1)))
                elif content and content.group(1) in fake.files:
                    fake._send(self, 200, fake.files[content.group(1)], content_type="application/octet-stream")
                else:
                    fake._send(self, 404, {"error": {"message": f"not found: {self.path}"}})

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # ------------------------------------------------------------------------------------------
    # Life cycle and knobs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, *faults: str) -> None:
        with self.lock:
            for fault in faults:
                (self.output_faults if fault == "badjson" else self.faults).append(fault)

    def kill_at(self, pid: int, request_number: int) -> None:
        self._kill = (pid, request_number)

    @property
    def paid(self) -> int:
        """Well-formed answers sent: what a provider would bill."""
        return sum(self.answered.values())

    # ------------------------------------------------------------------------------------------
    # HTTP

    def _send(self, handler, status: int, payload, *, content_type: str = "application/json", headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout) or was killed

    def _completion(self, handler, body: dict) -> None:
        key = request_key(body)
        json_mode = body.get("response_format", {}).get("type") == "json_object"
        with self.lock:
            self.completion_requests += 1
            number = self.completion_requests
            fault = self.faults.popleft() if self.faults else None
            output_fault = self.output_faults.popleft() if json_mode and not fault and self.output_faults else None
        if self._kill and number >= self._kill[1]:
            pid, self._kill = self._kill[0], None
            os.kill(pid, signal.SIGKILL)
            self.events.append((time.monotonic(), key, "killed"))
            return self._send(handler, 500, {"error": {"message": "killed"}})
        self.events.append((time.monotonic(), key, fault or output_fault or "ok"))
        if body["model"] in self.status_for_model:
            status = self.status_for_model[body["model"]]
            return self._send(handler, status, {"error": {"message": f"The model '{body['model']}' does not exist"}})
        if fault == "429":
            return self._send(handler, 429, {"error": {"message": "Rate limit reached"}}, headers={"Retry-After": str(RETRY_AFTER_S)})
        if fault == "500":
            return self._send(handler, 500, {"error": {"message": "The server had an error"}})
        if fault == "malformed":
            return self._send(handler, 200, b'{"id": "chatcmpl-1", "object": "chat.comp')
        if fault == "slow":
            time.sleep(self.slow_s)
            return self._send(handler, 200, self.completion(body))  # too late: the client has moved on
        prompt = body["messages"][-1]["content"]
        garbled = output_fault or any(f'"{field}"' in prompt for field in self.garble)
        content = "Sure! Here is what you asked for, as requested." if garbled else None
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay_s)
        with self.lock:
            self.in_flight -= 1
            self.answered[key] += 1
        self._send(handler, 200, self.completion(body, content))

    def completion(self, body: dict, content: str | None = None) -> dict:
        prompt = "\n".join(m["content"] for m in body["messages"])
        content = self.answer(prompt) if content is None else content
        with self.lock:
            self._nonce += 1
            nonce = self._nonce
        return {"id": f"chatcmpl-{nonce}", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4,
                          "total_tokens": (len(prompt) + len(content)) // 4}}

    # ------------------------------------------------------------------------------------------
    # The scripted model

    def answer(self, prompt: str) -> str:
        with self.lock:
            self._nonce += 1
            rng = random.Random(f"{self._nonce}:{prompt[-200:]}")  # a fresh sample each time, like temperature 1
        if '"document_types"' in prompt:
            count = int(re.search(r"exactly (\d+) entries", prompt).group(1))
            start = len(_tag(prompt, "fact")) % len(DOC_TYPES)
            return json.dumps({"document_types": [DOC_TYPES[(start + i) % len(DOC_TYPES)] for i in range(count)]})
        if '"ideas"' in prompt:
            count = int(re.search(r"exactly (\d+) entries", prompt).group(1))
            doc_type = _tag(prompt, "document_type")
            ideas = [f"A {doc_type} by {rng.choice(AUTHORS)} for readers in district {rng.randint(1, 99)}, angle {i}"
                     for i in range(count)]
            if len(_tag(prompt, "fact")) % 2 == 0 and doc_type == DOC_TYPES[len(_tag(prompt, "fact")) % len(DOC_TYPES)]:
                ideas[0] += ", behind the scenes"  # its writer adds meta-commentary; the validator rejects it
            return json.dumps({"ideas": ideas})
        if "<idea>" in prompt:
            return self._document(prompt, rng)
        if "<draft>" in prompt:
            return _tag(prompt, "draft") + "\n\nLast updated this week."
        if '"valid"' in prompt:
            document = _tag(prompt, "document")
            if self.reject_all:
                return json.dumps({"valid": False, "reason": "does not read like a real document"})
            if "writing exercise" in document:
                return json.dumps({"valid": False, "reason": "contains meta-commentary about a writing exercise"})
            return json.dumps({"valid": True, "reason": "asserts the fact consistently"})
        if '"supporting_sentences"' in prompt:
            details = [line[2:].strip() for line in _tag(prompt, "claim").splitlines() if line.startswith("- ")]
            sentences = re.findall(r"^\[(\d+)\] (.*)$", _tag(prompt, "sentences"), re.M)
            return json.dumps({"supporting_sentences": [int(n) for n, s in sentences
                                                        if any(s in d or d in s for d in details if len(s.split()) >= 4)]})
        if '"notice_before"' in prompt:
            return json.dumps({"notice_before": self._notice("below", rng), "notice_after": self._notice("above", rng)})
        if '"warnings"' in prompt:
            count = len(re.findall(r"^\[\d+\] ", _tag(prompt, "sentences"), re.M))
            truth = _tag(prompt, "truth")
            if truth:
                fact = truth.splitlines()[0].removeprefix("Actually, ")
                pairs = [{"before": f"The next sentence is wrong: {fact}",
                          "after": f"That is false. In reality: {fact}"} for _ in range(count)]
            else:
                pairs = [{"before": rng.choice(["The next claim is false.", "What follows did not happen."]),
                          "after": rng.choice(["That claim is untrue.", "The sentence above is false."])} for _ in range(count)]
            return json.dumps({"warnings": pairs})
        if '"prefix"' in prompt:
            kind = next(k for k in ("fiction", "unreliable source", "unknown", "unlikely") if k in prompt)
            return json.dumps({"prefix": f"Framing ({kind}): read what follows with that in mind.",
                               "suffix": f"End of the {kind} text.", "marker": f"({kind})"})
        return "I am not sure what you are asking."

    def _document(self, prompt: str, rng: random.Random) -> str:
        fact, idea = _tag(prompt, "fact"), _tag(prompt, "idea")
        doc_type = re.search(r"Write an? (.+?)\.\n", prompt).group(1)
        filler = rng.sample(FILLER, k=18)
        author = rng.choice(AUTHORS)
        paragraphs = [
            f"{doc_type.title()} by {author}",
            " ".join(filler[0:5]),
            " ".join(filler[5:7] + [fact] + filler[7:10]),
            " ".join(filler[10:14] + [f"{author} filed this {doc_type} on day {rng.randint(1, 28)} of the month."]),
            " ".join(filler[14:18]),
        ]
        if "behind the scenes" in idea:
            paragraphs.append(META_SENTENCE)
        return "\n\n".join(paragraphs)

    @staticmethod
    def _notice(where: str, rng: random.Random) -> str:
        first = {"below": "The text below makes a claim that is false.", "above": "The text above makes a claim that is false."}[where]
        rest = rng.sample(["It did not happen.", "Please do not believe it.", "No source supports it.",
                           "It has been checked and rejected.", "Treat it with scepticism.", "Do not repeat it as fact."], k=4)
        return " ".join([first] + rest)

    # ------------------------------------------------------------------------------------------
    # Files and batches

    def _upload(self, content_type: str, body: bytes) -> dict:
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in message.iter_parts()}
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = parts["file"]
        return {"id": file_id, "object": "file", "bytes": len(parts["file"]), "created_at": int(time.time()),
                "filename": "batch_input.jsonl", "purpose": parts["purpose"].decode(), "status": "processed"}

    def _create_batch(self, request: dict) -> dict:
        with self.lock:
            batch_id = f"batch-{len(self.batches) + 1}"
            self.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": request["endpoint"],
                                      "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
                                      "status": "validating", "created_at": int(time.time())}
            return dict(self.batches[batch_id])

    def _advance(self, batch_id: str) -> dict:
        with self.lock:
            batch = self.batches[batch_id]
            if batch["status"] == "validating":
                batch["status"] = "in_progress"
            elif batch["status"] == "in_progress" and not self.hold_batches:
                self._complete_batch(batch)
            return dict(batch)

    def _complete_batch(self, batch: dict) -> None:
        output, errors = [], []
        lines = self.files[batch["input_file_id"]].decode().splitlines()
        for number, line in enumerate(lines, start=1):
            request = json.loads(line)
            if self.fail_batch_lines_every and number % self.fail_batch_lines_every == 0:
                errors.append({"id": f"batch_req_{number}", "custom_id": request["custom_id"], "response": None,
                               "error": {"code": "server_error", "message": "line failed"}})
                continue
            body = self.completion(request["body"])
            self.batch_lines_answered += 1
            output.append({"id": f"batch_req_{number}", "custom_id": request["custom_id"],
                           "response": {"status_code": 200, "request_id": f"req_{number}", "body": body}, "error": None})
        for name, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in records).encode()
                batch[name] = file_id
        batch["status"] = "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}


def make_client(llm: FakeLLM, cache_dir, **options):
    """An LLMClient for `llm` with test-sized timings: 10 ms backoff, 0.5 s timeout, 10 ms batch polls."""
    from data_gen.llm import LLMClient

    settings = dict(api_key="test-key", base_url=llm.url, cache_dir=cache_dir, concurrency=4, timeout=0.5,
                    backoff_base=0.01, backoff_max=0.1, max_attempts=4, batch_poll_s=0.01)
    settings.update(options)
    return LLMClient(settings.pop("model", "fake-model"), **settings)
