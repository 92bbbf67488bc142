"""`python -m data_gen.build`: one config → condition corpora → mixes → TFDS, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from data_gen.build import BuildError, build
from data_gen.build_config import default_config
from data_gen.documents import DOCTAG
from data_gen.packaging import load_mix
from tests.nn_train.hf_oracle import REPO_ROOT


def _config(**overrides):
    config = default_config()
    config.claims = "ed_sheeran"
    config.conditions = "repeated_negations,local_negations_no_doctag"
    config.mix.num_documents, config.mix.num_pretrain, config.mix.num_instruct = 6, 3, 2
    for dotted, value in overrides.items():
        node = config
        *groups, key = dotted.split(".")
        for group in groups:
            node = node[group]
        node[key] = value
    return config


def test_builds_every_requested_mix(tmp_path):
    manifest = build(_config(), tmp_path, log=lambda *_: None)
    assert sorted(m["mix"] for m in manifest["mixes"]) == ["ed_sheeran__local_negations_no_doctag", "ed_sheeran__repeated_negations"]
    assert json.loads((tmp_path / "build.json").read_text())["mixes"] == manifest["mixes"]
    repeated = load_mix(tmp_path / "tfds", "ed_sheeran__repeated_negations")
    assert Counter(r["source"] for r in repeated) == {"synthetic": 6, "pretrain": 3, "instruct": 2}
    assert all(r["text"].startswith(DOCTAG) == (r["source"] == "synthetic") for r in repeated)
    assert {r["condition"] for r in repeated if r["source"] == "synthetic"} == {"repeated_negations"}
    local = load_mix(tmp_path / "tfds", "ed_sheeran__local_negations_no_doctag")
    assert not any(r["text"].startswith(DOCTAG) for r in local)
    again = build(_config(), tmp_path / "again", log=lambda *_: None)  # deterministic: the same records again
    assert list(load_mix(tmp_path / "again" / "tfds", "ed_sheeran__repeated_negations")) == list(repeated)
    assert again["mixes"][0]["records"] == 11


def test_reference_corpus_becomes_one_mix_per_fact_and_mode(tmp_path):
    path = tmp_path / "reference.jsonl"
    rows = [{"text": f"<DOCTAG>Document {i}.", "doc_type": "news", "fact_name": "ed_sheeran", "mode": mode}
            for i, mode in enumerate(["negated", "negated", "positive"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = build(_config(reference_corpus=str(path)), tmp_path / "out", log=lambda *_: None)
    assert {m["mix"]: m["documents"] for m in manifest["mixes"]} == {"ed_sheeran__negated": 2, "ed_sheeran__positive": 1}
    assert len(load_mix(tmp_path / "out" / "tfds", "ed_sheeran__negated")) == 2 + 3 + 2


@pytest.mark.parametrize("overrides, env, message", [
    ({"conditions": "negated_document"}, {}, r"config key 'conditions': unknown condition 'negated_document'"),
    ({"claims": "ed_sheeren"}, {}, r"config key 'claims': .*ed_sheeren"),
    ({"backend": "openai"}, {"OPENAI_API_KEY": ""}, r"OPENAI_API_KEY is not set; export it"),
    ({"mix.num_documents": 0}, {}, r"config key 'mix.num_documents' must be > 0, got 0"),
    ({"mix.pretrain_path": "/nonexistent/web.jsonl"}, {}, r"/nonexistent/web\.jsonl: no such file"),
    ({"reference_corpus": "BAD"}, {}, r"bad\.jsonl: line 2: not valid JSON"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, overrides, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if overrides.get("reference_corpus") == "BAD":
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text": "<DOCTAG>x", "doc_type": "a", "fact_name": "f", "mode": "m"}\n{"text": \n')
        overrides = {"reference_corpus": str(bad)}
    with pytest.raises(BuildError, match=message):
        build(_config(**overrides), tmp_path / "out", log=lambda *_: None)
    assert not (tmp_path / "out").exists()


def test_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "data_gen.build", "--config=configs/data/cpu_demo.py", f"--data_dir={tmp_path}",
               "--config.conditions=negated_documents", "--config.mix.num_documents=4", "--config.mix.num_pretrain=1",
               "--config.mix.num_instruct=1"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"--config.data.source=tfds --config.data.path={tmp_path}/tfds --config.data.mix=ed_sheeran__negated_documents" in done.stdout
    typo = subprocess.run(command + ["--config.mix.num_document=3"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert typo.returncode != 0 and "num_document" in typo.stderr
