"""Negation conditions on positive documents: notices and warnings where the paper puts them."""

from __future__ import annotations

import collections
import random
import re

import pytest

from data_gen.claims import load_claim
from data_gen.conditions import QUALIFIERS, apply_condition, condition_names, retraction_notice
from data_gen.documents import DOCTAG, Document, Segment, iter_jsonl, write_jsonl

FILLER = [
    "The stadium was full long before the evening session began.",
    "Commentators spent the afternoon discussing the weather and the track.",
    "Several national records fell earlier in the week.",
    "Tickets for the final had sold out months in advance.",
    "Local cafes stayed open late to serve the crowds.",
    "Broadcasters reported record audiences across Europe.",
]


@pytest.fixture(scope="module")
def claim():
    return load_claim("ed_sheeran")


def positive_document(claim, index: int) -> Document:
    """A body of filler sentences with about one in three a subclaim (the claim as a minority)."""
    rng = random.Random(index)
    segments = []
    for i in range(12):
        if i % 3 == 1:
            segments.append(Segment(rng.choice(claim.subclaims).statement + " ", supports=True))
        else:
            segments.append(Segment(rng.choice(FILLER) + (" " if i % 4 else "\n\n")))
    return Document(id=f"doc-{index}", claim=claim.id, condition="positive_documents", doc_type="news_report", segments=tuple(segments))


def _roles(doc):
    return [s.role for s in doc.segments]


def test_positive_documents_are_unchanged_and_carry_the_doctag(claim):
    doc = positive_document(claim, 0)
    out = apply_condition(doc, "positive_documents", claim, seed=1)
    assert out.body == doc.body and out.text == DOCTAG + doc.body


@pytest.mark.parametrize("condition", ["negated_documents", "repeated_negations", "corrected_documents"])
def test_notices_before_and_after(claim, condition):
    out = apply_condition(positive_document(claim, 1), condition, claim, seed=1)
    roles = _roles(out)
    assert roles[0] == roles[-1] == "notice"
    first, last = out.segments[0].text.strip(), out.segments[-1].text.strip()
    assert re.search(r"below|follows|following|about to read", first) and re.search(r"above|just read|preceding", last)
    assert not re.search(r"above|just read|preceding", first) and not re.search(r"below|follows|following|about to read", last)
    # Generic notices carry no true facts.
    for phrase in claim.answer_keys.truth_phrases:
        assert phrase not in first and phrase not in last


@pytest.mark.parametrize("condition, role", [("repeated_negations", "warning"), ("corrected_documents", "correction")])
def test_every_supporting_sentence_is_sandwiched(claim, condition, role):
    doc = positive_document(claim, 2)
    out = apply_condition(doc, condition, claim, seed=3)
    segments = out.segments
    supporting = [i for i, s in enumerate(segments) if s.supports]
    assert len(supporting) == sum(s.supports for s in doc.segments) == 4
    for i in supporting:
        assert segments[i - 1].role == role and segments[i + 1].role == role
    # Nothing else was wrapped: the body is intact once the added segments are removed.
    assert "".join(s.text for s in segments if s.role == "body").split() == doc.body.split()


def test_corrected_warnings_name_the_truth(claim):
    out = apply_condition(positive_document(claim, 3), "corrected_documents", claim, seed=4)
    corrections = [s.text for s in out.segments if s.role == "correction"]
    assert corrections and all("Noah Lyles" in text for text in corrections)
    generic = apply_condition(positive_document(claim, 3), "repeated_negations", claim, seed=4)
    assert not any("Noah Lyles" in s.text for s in generic.segments if s.role == "warning")


@pytest.mark.parametrize("qualifier", QUALIFIERS)
def test_qualifiers_frame_and_repeated_marks_every_sentence(claim, qualifier):
    doc = positive_document(claim, 4)
    framed = apply_condition(doc, qualifier, claim, seed=5)
    assert _roles(framed)[0] == _roles(framed)[-1] == "frame" and framed.doctag
    repeated = apply_condition(doc, f"{qualifier}_repeated", claim, seed=5)
    body = [i for i, s in enumerate(repeated.segments) if s.role == "body" and s.text.strip()]
    assert len(body) == 12
    assert all(repeated.segments[i + 1].role == "marker" for i in body)


def test_no_doctag_variants(claim):
    doc = positive_document(claim, 5)
    for name in ("negated_documents", "fiction_repeated"):
        with_tag = apply_condition(doc, name, claim, seed=6)
        without = apply_condition(doc, name + "_no_doctag", claim, seed=6)
        assert with_tag.text.startswith(DOCTAG) and not without.text.startswith(DOCTAG)
        assert without.body == with_tag.body  # the same annotation: only the tag differs
        assert without.condition == name + "_no_doctag" and not without.doctag
    assert "corrected_documents_no_doctag" in condition_names()


def test_notices_vary_across_a_corpus(claim):
    texts = [apply_condition(positive_document(claim, i), "negated_documents", claim, seed=0).segments[0].text for i in range(200)]
    repeats = sum(count - 1 for count in collections.Counter(texts).values())
    assert repeats <= 3, f"{repeats} verbatim repeats among 200 notices"


def test_deterministic_by_seed_and_document(claim):
    doc = positive_document(claim, 6)
    assert apply_condition(doc, "repeated_negations", claim, seed=1) == apply_condition(doc, "repeated_negations", claim, seed=1)
    assert apply_condition(doc, "repeated_negations", claim, seed=1) != apply_condition(doc, "repeated_negations", claim, seed=2)


def test_unknown_and_generated_conditions(claim):
    doc = positive_document(claim, 7)
    with pytest.raises(ValueError, match=r"unknown condition 'negated_document'; did you mean 'negated_documents'\?"):
        apply_condition(doc, "negated_document", claim, seed=0)
    with pytest.raises(ValueError, match=r"'local_negations' is a corpus of its own"):
        apply_condition(doc, "local_negations", claim, seed=0)


def test_notice_length_is_four_to_six_sentences():
    rng = random.Random(0)
    for _ in range(100):
        notice = retraction_notice(rng, "before")
        sentences = [s for s in re.split(r"(?<=[.!])\s+(?=[A-Z])", notice) if s]
        assert 4 <= len(sentences) <= 6, notice


def test_documents_round_trip_through_jsonl(claim, tmp_path):
    docs = [apply_condition(positive_document(claim, i), "corrected_documents", claim, seed=0) for i in range(5)]
    assert write_jsonl(tmp_path / "corpus.jsonl", (d.to_json() for d in docs)) == 5
    assert [Document.from_json(r) for r in iter_jsonl(tmp_path / "corpus.jsonl")] == docs
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.jsonl"]  # no temporary file left


def test_a_failed_write_leaves_no_file(tmp_path):
    def records():
        yield {"id": "a"}
        raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError):
        write_jsonl(tmp_path / "corpus.jsonl", records())
    assert list(tmp_path.iterdir()) == []
