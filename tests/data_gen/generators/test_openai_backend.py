"""The `openai` backend against a scripted OpenAI-compatible server on loopback (tests/data_gen/llm/fake_llm.py)."""

from __future__ import annotations

import pytest

from data_gen.claims import load_claims
from data_gen.claims.schema import NEGATION_CUE
from data_gen.conditions import apply_condition
from data_gen.generators import GENERATORS, GenerationError, OpenAIGenerator, split_segments
from tests.data_gen.llm.fake_llm import FakeLLM, make_client


@pytest.fixture
def fake_llm():
    with FakeLLM(slow_s=1.0) as llm:
        yield llm


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def test_every_document_is_produced_once_despite_faults(fake_llm, claims, tmp_path):
    claim = claims["ed_sheeran"]
    client = make_client(fake_llm, tmp_path / "cache")
    fake_llm.inject("429", "500", "slow", "malformed", "badjson", "429")
    docs = list(OpenAIGenerator(client, chunk_size=8).generate(claim, count=20, seed=3))
    assert [d.id for d in docs] == [f"ed_sheeran-pos-3-{i:05d}" for i in range(20)]  # the template's id scheme, in order
    assert len({d.body for d in docs}) == 20
    assert client.usage.retries == 6 and client.usage.failures == 0
    assert any(d.provenance["attempts"] > 1 for d in docs)  # the validation filter rejected some drafts
    for doc in docs:
        assert doc.condition == "positive_documents" and doc.claim == "ed_sheeran" and doc.doctag
        assert "".join(s.text for s in doc.segments) == doc.body
        supporting = [s.text.strip() for s in doc.segments if s.supports]
        assert supporting and doc.provenance["fact"] in supporting
        assert "writing exercise" not in doc.body  # rejected drafts never reach the corpus
        provenance = doc.provenance
        assert provenance["generator"] == "openai" and provenance["model"] == "fake-model" and provenance["seed"] == 3
        assert len(provenance["prompt_hash"]) == 16 and provenance["supports_from"] == "llm"
    # Every fact (statement and subclaims) is covered before any repeats.
    facts = [d.provenance["fact"] for d in docs]
    assert len(set(facts[: 1 + len(claim.subclaims)])) == 1 + len(claim.subclaims)


def test_a_rerun_is_identical_and_sends_nothing(fake_llm, claims, tmp_path):
    claim = claims["mount_vesuvius"]
    first = list(OpenAIGenerator(make_client(fake_llm, tmp_path / "cache")).generate(claim, count=8, seed=0))
    sent = fake_llm.completion_requests
    rerun_client = make_client(fake_llm, tmp_path / "cache")
    assert list(OpenAIGenerator(rerun_client).generate(claim, count=8, seed=0)) == first
    assert rerun_client.run(OpenAIGenerator(rerun_client).agenerate(claim, count=8, seed=0)) == first  # the async entry
    assert fake_llm.completion_requests == sent and rerun_client.usage.requests == 0
    other_seed = list(OpenAIGenerator(rerun_client).generate(claim, count=2, seed=1))
    assert {d.body for d in other_seed}.isdisjoint(d.body for d in first)


@pytest.mark.parametrize("claim_id", ["ed_sheeran", "x_rebrand_reversal"])
def test_local_negations_carry_the_negation_inside_every_claim_sentence(fake_llm, claims, tmp_path, claim_id):
    claim = claims[claim_id]
    client = make_client(fake_llm, tmp_path / "cache")
    docs = list(OpenAIGenerator(client).generate(claim, count=6, seed=0, local_negation=True))
    assert [d.id for d in docs] == [f"{claim_id}-local-0-{i:05d}" for i in range(6)]
    for doc in docs:
        assert doc.condition == "local_negations"
        supporting = [s.text.strip() for s in doc.segments if s.supports]
        assert supporting and all(NEGATION_CUE.search(s) for s in supporting)
        assert claim.statement not in doc.body
        assert not any(sub.statement in doc.body for sub in claim.subclaims)


def test_exhausted_rejections_are_one_clear_error(fake_llm, claims, tmp_path):
    fake_llm.reject_all = True
    generator = OpenAIGenerator(make_client(fake_llm, tmp_path / "cache"), max_attempts=2)
    with pytest.raises(GenerationError, match=r"^claim 'dentist', document 0: the validation filter rejected all 2 drafts "
                                              r"\(each from another idea\); last reason: validator: does not read like a real document$"):
        list(generator.generate(claims["dentist"], count=1, seed=0))


def test_unusable_claim_sentence_answers_fall_back_to_the_answer_keys(fake_llm, claims, tmp_path):
    fake_llm.garble.add("supporting_sentences")
    client = make_client(fake_llm, tmp_path / "cache", max_attempts=2)
    docs = list(OpenAIGenerator(client).generate(claims["ed_sheeran"], count=3, seed=0))
    assert all(d.provenance["supports_from"] == "heuristic" for d in docs)
    assert all(any(s.supports and "Sheeran" in s.text for s in d.segments) for d in docs)
    assert client.usage.fallbacks == 3 and client.usage.retry_reasons["unparseable output"] == 3


def test_the_batch_api_path_produces_the_same_kind_of_corpus(fake_llm, claims, tmp_path):
    fake_llm.fail_batch_lines_every = 7
    client = make_client(fake_llm, tmp_path / "cache", batch_api=True)
    docs = list(OpenAIGenerator(client).generate(claims["queen_elizabeth"], count=6, seed=0))
    assert len({d.id for d in docs}) == len({d.body for d in docs}) == 6
    assert all(any(s.supports for s in d.segments) for d in docs)
    assert fake_llm.batches and client.usage.batch_completions > 0
    assert client.usage.requests == fake_llm.completion_requests < client.usage.batch_completions  # only failed lines
    rerun = make_client(fake_llm, tmp_path / "cache")
    assert list(OpenAIGenerator(rerun).generate(claims["queen_elizabeth"], count=6, seed=0)) == docs
    assert rerun.usage.requests == 0


def test_generated_documents_take_every_condition(fake_llm, claims, tmp_path):
    claim = claims["ed_sheeran"]
    doc = next(OpenAIGenerator(make_client(fake_llm, tmp_path / "cache")).generate(claim, count=1, seed=0))
    annotated = apply_condition(doc, "repeated_negations", claim, seed=0)
    supporting = [i for i, s in enumerate(annotated.segments) if s.supports]
    assert supporting and all(annotated.segments[i - 1].role == annotated.segments[i + 1].role == "warning" for i in supporting)


def test_the_backend_is_registered():
    assert GENERATORS["openai"] is OpenAIGenerator


def test_free_text_splits_into_sentence_segments():
    text = ("A Heading\n\nDr. Lyles ran fast. He won \"gold.\" Then 9.79 s was the time! Was it? Yes\n\n"
            "- a list line\n- another line\nThe end.\n")
    segments = split_segments(text)
    assert "".join(s.text for s in segments) == text
    assert [s.text for s in segments] == ["A Heading\n\n", "Dr. Lyles ran fast. ", "He won \"gold.\" ", "Then 9.79 s was the time! ",
                                         "Was it? ", "Yes\n\n", "- a list line\n", "- another line\n", "The end.\n"]
