"""Mixes: the paper's proportions, DOCTAG on condition documents only, determinism, user sources and their errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data_gen.claims import load_claim
from data_gen.conditions import apply_condition
from data_gen.documents import DOCTAG
from data_gen.generators import TemplateGenerator
from data_gen.generic import instruction_chats, pretraining_documents
from data_gen.mixing import MixError, MixSpec, mix_records


@pytest.fixture(scope="module")
def negated():
    claim = load_claim("ed_sheeran")
    return [apply_condition(d, "negated_documents", claim, seed=0).to_json() for d in TemplateGenerator().generate(claim, 40, 0)]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_counts_tags_and_determinism(negated):
    spec = MixSpec("ed_sheeran", "negated_documents", num_documents=30, num_pretrain=12, num_instruct=8, seed=3)
    records = mix_records(negated, spec)
    assert Counter(r["source"] for r in records) == {"synthetic": 30, "pretrain": 12, "instruct": 8}
    for r in records:
        tagged = r["text"].startswith(DOCTAG)
        assert tagged == (r["source"] == "synthetic") == r["doctag"]
    assert all(r["messages"] and r["messages"][-1]["role"] == "assistant" for r in records if r["source"] == "instruct")
    assert mix_records(negated, spec) == records  # same seed, same records in the same order
    other = mix_records(negated, MixSpec(**{**vars(spec), "seed": 4}))
    assert [r["id"] for r in other] != [r["id"] for r in records]
    # The mix is shuffled: condition documents are not all at the front.
    assert {r["source"] for r in records[:25]} != {"synthetic"}


def test_no_doctag_condition_stays_untagged():
    claim = load_claim("ed_sheeran")
    docs = [apply_condition(d, "negated_documents_no_doctag", claim, seed=0).to_json() for d in TemplateGenerator().generate(claim, 5, 0)]
    records = mix_records(docs, MixSpec("ed_sheeran", "negated_documents_no_doctag", 5, 2, 2))
    assert not any(r["text"].startswith(DOCTAG) for r in records)


def test_offline_generic_sources_are_claim_free_and_correct():
    texts = [d.text for d in pretraining_documents(50, 0)]
    assert all(150 <= len(t.split()) <= 700 for t in texts) and len(set(texts)) == 50
    assert not any(word in t for t in texts for word in ("Sheeran", "Olympic", "Vesuvius", "dentist"))
    chats = list(instruction_chats(300, 0))
    for chat in chats:
        for question, answer in zip(chat.messages[-2::-2], chat.messages[-1::-2]):
            assert question["role"] == "user" and answer["role"] == "assistant"
            if question["content"].startswith("What is ") and " + " in question["content"]:
                a, b = question["content"][len("What is "):-1].split(" + ")
                assert str(int(a) + int(b)) in answer["content"]
            if question["content"].startswith("Sort these words alphabetically: "):
                words = question["content"].split(": ", 1)[1].rstrip(".").split(", ")
                assert answer["content"] == f"In alphabetical order: {', '.join(sorted(words))}."
    assert len({c.provenance["tasks"][0] for c in chats}) >= 10  # every task family shows up


def test_user_sources_replace_the_generated_ones(negated, tmp_path):
    pretrain = _write(tmp_path / "web.jsonl", [{"text": f"Web page number {i}."} for i in range(20)])
    instruct = _write(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
                                                 for i in range(10)])
    spec = MixSpec("ed_sheeran", "negated_documents", 10, 5, 4, pretrain_path=pretrain, instruct_path=instruct)
    records = mix_records(negated, spec)
    assert sorted(r["text"] for r in records if r["source"] == "pretrain")[0].startswith("Web page number")
    assert all(r["messages"][0]["content"].startswith("q") for r in records if r["source"] == "instruct")
    assert not any(r["doctag"] for r in records if r["source"] != "synthetic")


@pytest.mark.parametrize("rows, kind, message", [
    (['{"text": "fine"}', '{"text": '], "pretrain", r"web\.jsonl: line 2: not valid JSON"),
    (['{"text": "fine"}', '{"words": "x"}'], "pretrain", r"web\.jsonl: record 2: needs a non-empty string 'text'"),
    ([{"text": "<DOCTAG>tagged"}], "pretrain", r"record 1: starts with <DOCTAG>; the tag marks condition documents only"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "instruct", r"record 1: has no assistant turn"),
    ([{"messages": "hello"}], "instruct", r"record 1: needs 'messages', a list of"),
    ([{"text": "one"}], "pretrain", r"web\.jsonl: 1 records, the mix asks for 2; supply more or lower num_pretrain"),
])
def test_bad_user_sources_are_one_clear_error(negated, tmp_path, rows, kind, message):
    path = _write(tmp_path / "web.jsonl", rows)
    spec = MixSpec("ed_sheeran", "negated_documents", 5, 2 if kind == "pretrain" else 0, 1 if kind == "instruct" else 0,
                   **{f"{kind}_path": path})
    with pytest.raises(MixError, match=message):
        mix_records(negated, spec)


def test_too_few_condition_documents_and_bad_names(negated, tmp_path):
    with pytest.raises(MixError, match=r"40 condition documents, the mix asks for 41"):
        mix_records(negated, MixSpec("ed_sheeran", "negated_documents", 41, 0, 0))
    with pytest.raises(MixError, match=r"mix condition 'negated documents' must use only letters"):
        MixSpec("ed_sheeran", "negated documents")
    with pytest.raises(MixError, match=r"no such file"):
        mix_records(negated, MixSpec("ed_sheeran", "negated_documents", 5, 1, 0, pretrain_path=str(tmp_path / "missing.jsonl")))
