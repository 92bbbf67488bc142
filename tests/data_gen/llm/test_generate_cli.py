"""`python -m data_gen.generate --backend=openai` end to end against the loopback server: kill, resume, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from data_gen.claims import load_claim
from data_gen.documents import Document, iter_jsonl
from data_gen.generate import build_claim
from data_gen.llm import MISSING_KEY_MESSAGE, ResponseCache
from tests.data_gen.llm.fake_llm import make_client

REPO_ROOT = Path(__file__).resolve().parents[3]
CONDITIONS = ["negated_documents", "repeated_negations", "local_negations"]
COUNT = 4


def _command(out: Path, base_url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "data_gen.generate", "--backend=openai", f"--base_url={base_url}", "--model=fake-model",
            f"--out={out}", "--claims=ed_sheeran", f"--conditions={','.join(CONDITIONS)}", f"--count={COUNT}",
            "--retry_base_s=0.01", *extra]


def _environment(**changes) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(changes)
    return env


def _run(command: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=_environment(**env))


def _corpus(out: Path, condition: str) -> list[Document]:
    return [Document.from_json(r) for r in iter_jsonl(out / "ed_sheeran" / f"{condition}.jsonl")]


def test_a_killed_run_resumes_without_losing_or_paying_twice(fake_llm, tmp_path):
    out = tmp_path / "corpora"
    # concurrency=1: when the kill lands, every answer received so far is in the cache (exact accounting).
    command = _command(out, fake_llm.url, "--concurrency=1")
    killed = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_environment(OPENAI_API_KEY="test-key"))
    fake_llm.kill_at(killed.pid, 30)
    killed.communicate(timeout=120)
    assert killed.returncode == -9
    assert not list(out.glob("ed_sheeran/*.jsonl"))  # nothing half-written
    cached_before = len(ResponseCache(out / ".llm_cache"))
    assert cached_before == 29 == fake_llm.paid

    resumed = _run(command, OPENAI_API_KEY="test-key")
    assert resumed.returncode == 0, resumed.stderr
    assert "ed_sheeran: 3 conditions x 4 documents" in resumed.stdout
    assert "LLM usage (fake-model):" in resumed.stdout and "cost unknown" in resumed.stdout
    for condition in CONDITIONS:
        docs = _corpus(out, condition)
        assert len(docs) == COUNT and [d.condition for d in docs] == [condition] * COUNT
        assert len({d.id for d in docs}) == len({d.body for d in docs}) == COUNT
    # Each distinct request was paid for exactly once across the kill and the resume.
    assert fake_llm.paid == len(ResponseCache(out / ".llm_cache")) > cached_before
    assert max(fake_llm.answered.values()) == 1
    usage = json.loads((out / "ed_sheeran" / "usage.json").read_text())
    assert usage["status"] == "complete" and usage["usage"]["cache_hits"] >= cached_before
    assert usage["usage"]["requests"] == fake_llm.paid - cached_before  # the killed request was never answered: sent again
    assert usage["usage"]["estimated_cost_usd"] is None

    # A rerun of a complete run sends nothing and writes the same corpora.
    before = {c: (out / "ed_sheeran" / f"{c}.jsonl").read_bytes() for c in CONDITIONS}
    requests = fake_llm.completion_requests
    again = _run(command, OPENAI_API_KEY="test-key")
    assert again.returncode == 0, again.stderr
    assert fake_llm.completion_requests == requests
    assert {c: (out / "ed_sheeran" / f"{c}.jsonl").read_bytes() for c in CONDITIONS} == before


def test_a_missing_api_key_stops_before_any_work(tmp_path):
    result = _run(_command(tmp_path / "corpora", "http://127.0.0.1:9/v1"))
    assert result.returncode == 1
    assert result.stderr == f"error: {MISSING_KEY_MESSAGE}\n"
    assert not (tmp_path / "corpora").exists()


def test_an_unreachable_endpoint_is_one_line_and_no_corpus(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "corpora"
    result = _run(_command(out, f"http://127.0.0.1:{port}/v1", "--api_key=test-key", "--max_attempts=2"))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: http://127.0.0.1:{port}/v1: model 'fake-model': failed after 2 attempts; "
                                    "last failure: connection error")
    assert result.stderr.count("\n") == 1
    assert not list(out.glob("**/*.jsonl"))
    assert json.loads((out / "ed_sheeran" / "usage.json").read_text())["status"] == "failed"


def test_build_claim_keeps_its_positional_signature(fake_llm, tmp_path):
    claim = load_claim("ed_sheeran")
    client = make_client(fake_llm, tmp_path / "cache")
    written = build_claim(claim, ["negated_documents", "fiction_repeated"], 2, 0, tmp_path / "out", client=client)
    assert written == {"negated_documents": 2, "fiction_repeated": 2}
    usage = json.loads((tmp_path / "out" / "ed_sheeran" / "usage.json").read_text())
    assert usage["usage"]["requests"] == fake_llm.completion_requests and usage["count"] == 2
    assert all(d.provenance["generator"] == "openai" for d in _corpus(tmp_path / "out", "fiction_repeated"))


def test_openai_flags_without_the_openai_backend_are_a_mistake(tmp_path):
    result = _run([sys.executable, "-m", "data_gen.generate", f"--out={tmp_path / 'corpora'}", "--batch_api"])
    assert result.returncode == 1
    assert result.stderr == "error: --batch_api applies to --backend=openai only; add --backend=openai or drop it\n"



def test_the_batch_api_from_the_command_line(fake_llm, tmp_path):
    out = tmp_path / "corpora"
    command = _command(out, fake_llm.url, "--api_key=test-key", "--batch_api", "--batch_poll_s=0.01", "--price_per_1m=0.5,2")
    command[command.index(f"--conditions={','.join(CONDITIONS)}")] = "--conditions=corrected_documents"
    result = _run(command)
    assert result.returncode == 0, result.stderr
    assert len(_corpus(out, "corrected_documents")) == COUNT
    usage = json.loads((out / "ed_sheeran" / "usage.json").read_text())["usage"]
    assert fake_llm.batches and usage["batch_completions"] == fake_llm.batch_lines_answered > 0
    assert usage["requests"] == fake_llm.completion_requests == 0
    assert usage["estimated_cost_usd"] > 0 and usage["price_per_1m_tokens"] == {"input": 0.5, "output": 2.0}


def test_what_a_claim_lacks_fails_before_anything_is_paid(fake_llm, tmp_path):
    claim = load_claim("dentist")
    client = make_client(fake_llm, tmp_path / "cache")
    unmasked = dataclasses.replace(claim, word_masks=())
    with pytest.raises(ValueError, match="has no word_masks"):
        build_claim(unmasked, ["negated_documents", "local_negations_word_masked"], 2, 0, tmp_path / "out", client=client)
    uncorrected = dataclasses.replace(claim, correction="")
    with pytest.raises(ValueError, match="has no correction"):
        build_claim(uncorrected, ["corrected_documents_no_doctag"], 2, 0, tmp_path / "out", client=client)
    assert fake_llm.completion_requests == 0 and not list((tmp_path / "out").glob("**/*.jsonl"))
