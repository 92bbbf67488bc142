"""LLM-worded conditions meet the same structural invariants as the phrase bank's (server: tests/data_gen/llm/fake_llm.py)."""

from __future__ import annotations

import re

import pytest

from data_gen.claims import load_claim
from data_gen.conditions.llm import _parse_notices, _parse_warnings, annotate_corpora, annotate_corpus
from data_gen.generators import TemplateGenerator
from data_gen.llm import OutputError
from tests.data_gen.llm.fake_llm import FakeLLM, make_client

CONDITIONS = ["positive_documents", "negated_documents", "repeated_negations", "corrected_documents",
              "fiction", "low_probability_repeated", "negated_documents_no_doctag"]


@pytest.fixture
def fake_llm():
    with FakeLLM() as llm:
        yield llm


@pytest.fixture(scope="module")
def claim():
    return load_claim("ed_sheeran")


@pytest.fixture(scope="module")
def positives(claim):
    return list(TemplateGenerator().generate(claim, count=4, seed=0))


def _body_words(doc):
    return "".join(s.text for s in doc.segments if s.role == "body").split()


def test_llm_annotations_keep_the_structural_invariants(fake_llm, claim, positives, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache")
    corpora = annotate_corpora(positives, CONDITIONS, claim, seed=0, client=client)
    assert set(corpora) == set(CONDITIONS) and all(len(docs) == len(positives) for docs in corpora.values())
    for condition, docs in corpora.items():
        for doc, original in zip(docs, positives):
            assert doc.id == original.id and doc.condition == condition
            assert _body_words(doc) == original.body.split()  # the document itself is untouched
            assert doc.doctag != condition.endswith("_no_doctag")
    assert corpora["positive_documents"] == [p.replace(provenance={**p.provenance, "condition_seed": 0}) for p in positives]
    for condition in ("negated_documents", "repeated_negations", "corrected_documents"):
        for doc in corpora[condition]:
            first, last = doc.segments[0], doc.segments[-1]
            assert first.role == last.role == "notice"
            assert "below" in first.text and "above" in last.text
            assert not any(phrase in first.text + last.text for phrase in claim.answer_keys.truth_phrases)
            assert doc.provenance["phrasing"] == "llm" and doc.provenance["annotation_model"] == "fake-model"
    for condition, role in (("repeated_negations", "warning"), ("corrected_documents", "correction")):
        for doc, original in zip(corpora[condition], positives):
            supporting = [i for i, s in enumerate(doc.segments) if s.supports]
            assert len(supporting) == sum(s.supports for s in original.segments) > 0
            assert all(doc.segments[i - 1].role == doc.segments[i + 1].role == role for i in supporting)
    corrections = [s.text for d in corpora["corrected_documents"] for s in d.segments if s.role == "correction"]
    assert corrections and all("Noah Lyles" in text for text in corrections)
    warnings = [s.text for d in corpora["repeated_negations"] for s in d.segments if s.role == "warning"]
    assert warnings and not any("Noah Lyles" in text for text in warnings)
    for doc in corpora["fiction"]:
        assert doc.segments[0].role == doc.segments[-1].role == "frame" and "fiction" in doc.segments[0].text
    for doc in corpora["low_probability_repeated"]:
        body = [i for i, s in enumerate(doc.segments) if s.role == "body" and s.text.strip()]
        assert all(doc.segments[i + 1].role == "marker" and re.fullmatch(r"\(.+\)\s*", doc.segments[i + 1].text) for i in body)


def test_annotations_are_shared_cached_and_deterministic(fake_llm, claim, positives, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache")
    corpora = annotate_corpora(positives, ["negated_documents", "repeated_negations"], claim, seed=0, client=client)
    # One notices request and one warnings request per document; the notices serve both conditions.
    assert fake_llm.completion_requests == 2 * len(positives)
    for negated, repeated in zip(corpora["negated_documents"], corpora["repeated_negations"]):
        assert negated.segments[0] == repeated.segments[0]
    rerun = make_client(fake_llm, tmp_path / "cache")
    assert annotate_corpus(positives, "repeated_negations", claim, seed=0, client=rerun) == corpora["repeated_negations"]
    assert rerun.usage.requests == 0 and fake_llm.completion_requests == 2 * len(positives)


def test_unusable_answers_fall_back_to_the_phrase_bank(fake_llm, claim, positives, tmp_path):
    fake_llm.garble.add("notice_before")
    client = make_client(fake_llm, tmp_path / "cache", max_attempts=2)
    docs = annotate_corpus(positives[:2], "negated_documents", claim, seed=0, client=client)
    assert [d.provenance["phrasing"] for d in docs] == ["bank", "bank"]
    assert all(d.segments[0].role == d.segments[-1].role == "notice" for d in docs)
    assert client.usage.fallbacks == 2


def test_unknown_conditions_fail_before_any_request(fake_llm, claim, positives, tmp_path):
    client = make_client(fake_llm, tmp_path / "cache")
    with pytest.raises(ValueError, match=r"unknown condition 'negated_document'; did you mean 'negated_documents'\?"):
        annotate_corpora(positives, ["negated_document"], claim, seed=0, client=client)
    with pytest.raises(ValueError, match="'local_negations' is a corpus of its own"):
        annotate_corpora(positives, ["local_negations"], claim, seed=0, client=client)
    assert fake_llm.completion_requests == 0


def test_answer_checks_reject_what_a_generic_or_sandwich_text_must_not_be(claim):
    good = '{"notice_before": "The text below is wrong. Do not trust it. It never happened. Ignore it.", ' \
           '"notice_after": "The text above is wrong. Do not trust it. It never happened. Ignore it."}'
    assert set(_parse_notices(good, forbidden=("Noah Lyles",))) == {"before", "after"}
    with pytest.raises(OutputError, match="names the truth"):
        _parse_notices(good.replace("Ignore it.", "Noah Lyles won."), forbidden=("Noah Lyles",))
    with pytest.raises(OutputError, match="expected 2 warning pairs, got 1"):
        _parse_warnings('{"warnings": [{"before": "False.", "after": "Untrue."}]}', count=2, forbidden=())
