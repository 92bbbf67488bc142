"""`data_gen.build` with backend=openai: LLM corpora kept with their usage, mixed and packaged; a rerun pays nothing."""

from __future__ import annotations

import json

from data_gen.build import build
from data_gen.build_config import default_config
from data_gen.documents import DOCTAG
from data_gen.packaging import load_mix


def test_llm_build_packages_mixes_and_reruns_from_the_cache(fake_llm, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    config = default_config()
    config.claims, config.conditions, config.backend = "ed_sheeran", "negated_documents,local_negations", "openai"
    config.llm.base_url, config.llm.model, config.llm.concurrency = fake_llm.url, "fake-model", 4
    config.mix.num_documents, config.mix.num_pretrain, config.mix.num_instruct = 3, 2, 1
    manifest = build(config, tmp_path, log=lambda *_: None)

    assert [m["mix"] for m in manifest["mixes"]] == ["ed_sheeran__negated_documents", "ed_sheeran__local_negations"]
    negated = [r for r in load_mix(tmp_path / "tfds", "ed_sheeran__negated_documents") if r["source"] == "synthetic"]
    assert len(negated) == 3 and all(r["text"].startswith(DOCTAG) and r["provenance"]["generator"] == "openai" for r in negated)
    assert any(s[2] == "notice" for r in negated for s in r["segments"])  # the LLM-worded notices are in the mix
    usage = json.loads((tmp_path / "corpora" / "ed_sheeran" / "usage.json").read_text())
    assert usage["status"] == "complete" and usage["usage"]["requests"] > 0
    first = list(load_mix(tmp_path / "tfds", "ed_sheeran__local_negations"))
    assert len(first) == 6

    paid = fake_llm.paid
    build(config, tmp_path, log=lambda *_: None)  # the same data_dir: every answer comes from its cache
    assert fake_llm.paid == paid
    assert list(load_mix(tmp_path / "tfds", "ed_sheeran__local_negations")) == first
    build(config, tmp_path / "again", log=lambda *_: None)  # another data_dir has its own cache, so it pays
    assert fake_llm.paid > paid
