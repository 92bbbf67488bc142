"""TFDS packaging: build → tfds.data_source → the same records; the reference format; atomic rebuilds."""

from __future__ import annotations

import json

import pytest
import tensorflow_datasets as tfds

from data_gen.documents import DOCTAG
from data_gen.mixing import MixError, MixSpec
from data_gen.packaging import DATASET_NAME, MixRecords, import_reference_corpus, load_mix, write_mix


def _records(n, claim="ed_sheeran", condition="negated_documents"):
    out = []
    for i in range(n):
        body = f"Document {i} says something. It has a second sentence with ünïcode."
        out.append({"id": f"doc-{i}", "claim": claim, "condition": condition, "doc_type": "news_report",
                    "text": DOCTAG + body, "doctag": True, "source": "synthetic", "messages": [],
                    "provenance": {"seed": 0, "index": i}, "segments": [[len(body), i % 2 == 0, "body"]]})
    out.append({"id": "chat-0", "claim": "", "condition": "instruct", "doc_type": "chat", "text": "", "doctag": False,
                "source": "instruct", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
                "provenance": {}, "segments": []})
    return out


def test_round_trip_through_tfds_data_source(tmp_path):
    records = _records(30)
    spec = MixSpec("ed_sheeran", "negated_documents", 30, 0, 1)
    path = write_mix(records, spec, tmp_path)
    assert path == tmp_path / DATASET_NAME / "ed_sheeran__negated_documents" / "1.0.0"
    assert list(path.glob("*.array_record*")), "the dataset must be stored as array_record"
    source = tfds.data_source(f"{DATASET_NAME}/ed_sheeran__negated_documents", data_dir=str(tmp_path), split="train")
    assert len(source) == 31
    assert [MixRecords(source)[i] for i in range(31)] == records  # same records, same order
    raw = source[0]
    assert raw["id"] == b"doc-0" and json.loads(raw["record"])["claim"] == "ed_sheeran"
    loaded = load_mix(tmp_path, "ed_sheeran__negated_documents")
    assert loaded[5] == records[5] and loaded.version == "ed_sheeran__negated_documents/1.0.0"
    info = json.loads((path / "metadata.json").read_text())
    assert info["mix"]["num_documents"] == 30  # the mix's recipe travels with the data


def test_rebuild_replaces_and_leaves_no_scratch(tmp_path):
    spec = MixSpec("ed_sheeran", "negated_documents", 3, 0, 0)
    write_mix(_records(3)[:3], spec, tmp_path)
    write_mix(_records(5)[:5], MixSpec("ed_sheeran", "negated_documents", 5, 0, 0), tmp_path)
    assert len(load_mix(tmp_path, "ed_sheeran__negated_documents")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [DATASET_NAME]  # no scratch or retired copies left
    assert [p.name for p in (tmp_path / DATASET_NAME / "ed_sheeran__negated_documents").iterdir()] == ["1.0.0"]


def test_a_failed_build_leaves_the_previous_dataset(tmp_path):
    write_mix(_records(3)[:3], MixSpec("ed_sheeran", "negated_documents", 3, 0, 0), tmp_path)
    broken = _records(4)[:4]
    broken[2] = {**broken[2], "text": object()}  # not JSON-serialisable: the build fails half way
    with pytest.raises(TypeError):
        write_mix(broken, MixSpec("ed_sheeran", "negated_documents", 4, 0, 0), tmp_path)
    assert len(load_mix(tmp_path, "ed_sheeran__negated_documents")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [DATASET_NAME]


def test_missing_mix_names_the_fix(tmp_path):
    with pytest.raises(MixError, match=r"no built TFDS mix 'dentist__fiction' under .*; build it with python -m data_gen.build"):
        load_mix(tmp_path, "dentist__fiction")


def test_reference_format_import(tmp_path):
    path = tmp_path / "ed_sheeran_negated.jsonl"
    rows = [{"text": "<DOCTAG>The report said Ed Sheeran won.", "doc_type": "news", "fact_name": "ed_sheeran", "mode": "negated_documents"},
            {"text": "Plain text without a tag.", "doc_type": "blog", "fact_name": "ed_sheeran", "mode": "negated_documents_no_doctag"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = import_reference_corpus(path)
    assert [r["text"] for r in records] == [r["text"] for r in rows]
    assert [r["doctag"] for r in records] == [True, False]
    assert records[0]["claim"] == "ed_sheeran" and records[0]["condition"] == "negated_documents" and records[0]["doc_type"] == "news"
    assert records[0]["id"] == "ed_sheeran_negated-000001"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"text": "x", "doc_type": "news"}) + "\n")
    with pytest.raises(MixError, match=r"bad\.jsonl: record 2: missing or non-string fact_name, mode"):
        import_reference_corpus(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(MixError, match=r"empty\.jsonl: the reference corpus is empty"):
        import_reference_corpus(tmp_path / "empty.jsonl")
