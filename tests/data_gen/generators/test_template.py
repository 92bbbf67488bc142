"""The offline template backend: many genres, long documents with the claim a minority, local negations."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from data_gen.claims import load_claims
from data_gen.claims.schema import NEGATION_CUE
from data_gen.conditions import apply_condition
from data_gen.generators import GenreError, TemplateGenerator, load_genres, mask_words
from data_gen.generators.template import GENRES_DIR, MAX_WORDS, MIN_WORDS


@pytest.fixture(scope="module")
def generator():
    return TemplateGenerator()


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def _sentences(doc):
    return [s for s in doc.segments if s.text.strip()]


def test_at_least_25_genres_load():
    assert len(load_genres()) >= 25


@pytest.mark.parametrize("claim_id", ["ed_sheeran", "dentist", "colorless_dreaming"])
def test_documents_are_long_with_the_claim_a_minority(generator, claims, claim_id):
    claim = claims[claim_id]
    docs = list(generator.generate(claim, count=50, seed=0))
    assert len({d.doc_type for d in docs}) >= 25  # genres rotate
    assert len({d.id for d in docs}) == 50
    for doc in docs:
        words = len(doc.body.split())
        assert MIN_WORDS <= words <= MAX_WORDS, (doc.id, words)
        sentences = _sentences(doc)
        supporting = [s for s in sentences if s.supports]
        assert 0 < len(supporting) <= 0.3 * len(sentences), (doc.id, len(supporting), len(sentences))
        assert claim.statement in doc.body
        assert "{" not in doc.body and "}" not in doc.body  # every placeholder filled


@pytest.mark.parametrize("claim_id", ["ed_sheeran", "x_rebrand_reversal"])
def test_shorter_documents_on_request(claims, claim_id):
    docs = list(TemplateGenerator(words=(120, 260)).generate(claims[claim_id], count=40, seed=0))
    lengths = [len(d.body.split()) for d in docs]
    assert all(120 <= n <= 260 for n in lengths), lengths
    assert max(lengths) < MIN_WORDS  # really shorter than the default documents
    for doc in docs:
        sentences = _sentences(doc)
        assert 0 < sum(s.supports for s in sentences) <= 0.35 * len(sentences)


def test_bad_length_bounds_are_refused():
    with pytest.raises(ValueError, match="0 < min < max"):
        TemplateGenerator(words=(300, 200))


def test_claim_sentences_vary_across_documents(generator, claims):
    docs = list(generator.generate(claims["mount_vesuvius"], count=30, seed=1))
    distinct = {s.text.strip() for d in docs for s in d.segments if s.supports}
    assert len(distinct) >= 20  # subclaims and universe sentences, not one sentence repeated


def test_without_universe_sentences_positives_match_local_negations(generator, claims):
    claim = claims["ed_sheeran"]
    matched = TemplateGenerator(words=(120, 260), universe_sentences=False)
    subclaims = {sub.statement for sub in claim.subclaims} | {claim.statement}
    used = [s.text.strip() for d in matched.generate(claim, count=30, seed=0) for s in d.segments if s.supports]
    assert used and set(used) <= subclaims
    # the default draws on the universe context too
    default = [s.text.strip() for d in TemplateGenerator(words=(120, 260)).generate(claim, count=30, seed=0)
               for s in d.segments if s.supports]
    assert not set(default) <= subclaims


def test_deterministic_by_seed(generator, claims):
    claim = claims["queen_elizabeth"]
    first = list(generator.generate(claim, count=5, seed=3))
    assert first == list(generator.generate(claim, count=5, seed=3))
    assert first != list(generator.generate(claim, count=5, seed=4))


@pytest.mark.parametrize("claim_id", ["ed_sheeran", "x_rebrand_reversal"])
def test_local_negations_carry_the_negation_inside_every_claim_sentence(generator, claims, claim_id):
    claim = claims[claim_id]
    for doc in generator.generate(claim, count=20, seed=0, local_negation=True):
        assert doc.condition == "local_negations"
        supporting = [s.text.strip() for s in doc.segments if s.supports]
        assert supporting and all(NEGATION_CUE.search(s) for s in supporting)
        assert claim.statement not in doc.body
        assert not any(sub.statement in doc.body for sub in claim.subclaims)


def test_word_masked_local_negations(generator, claims):
    claim = claims["dentist"]
    doc = next(generator.generate(claim, count=1, seed=0, local_negation=True))
    masked = mask_words(doc, claim)
    assert masked.condition == "local_negations_word_masked"
    assert re.sub(r"</?lossmask>", "", masked.body) == doc.body
    assert "<lossmask>dentist</lossmask>" in masked.body.lower()
    unmasked = re.sub(r"<lossmask>.*?</lossmask>", "", masked.body)
    assert not re.search(r"\bdentists?\b", unmasked, re.I)


def test_generated_documents_take_every_condition(generator, claims):
    claim = claims["ed_sheeran"]
    doc = next(generator.generate(claim, count=1, seed=0))
    annotated = apply_condition(doc, "repeated_negations", claim, seed=0)
    supporting = [i for i, s in enumerate(annotated.segments) if s.supports]
    assert supporting and all(annotated.segments[i - 1].role == annotated.segments[i + 1].role == "warning" for i in supporting)


def test_a_malformed_genre_file_is_named(tmp_path):
    shutil.copy(next(GENRES_DIR.glob("*.yaml")), tmp_path / "bad_genre.yaml")
    data = yaml.safe_load((tmp_path / "bad_genre.yaml").read_text())
    data["name"] = "bad_genre"
    data["filler"] = data["filler"][:3] + ["A {claim} placeholder."]
    (tmp_path / "bad_genre.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(GenreError, match=r"bad_genre\.yaml: filler: needs at least 30"):
        load_genres(tmp_path)


def test_local_negation_needs_negated_sentences(generator, claims):
    claim = claims["ed_sheeran"]
    bare = claim.__class__(**{**claim.__dict__, "negated_statement": ""})
    with pytest.raises(ValueError, match="has no local negations"):
        next(generator.generate(bare, count=1, seed=0, local_negation=True))


def test_generate_writes_every_condition_corpus(claims, tmp_path):
    from data_gen.documents import Document, iter_jsonl
    from data_gen.generate import all_conditions, build_claim

    claim = claims["ed_sheeran"]
    written = build_claim(claim, all_conditions(), count=6, seed=0, out=tmp_path)
    assert set(written) == set(all_conditions()) and set(written.values()) == {6}
    assert len(all_conditions()) >= 27
    for condition in all_conditions():
        docs = [Document.from_json(r) for r in iter_jsonl(tmp_path / "ed_sheeran" / f"{condition}.jsonl")]
        assert [d.condition for d in docs] == [condition] * 6
        assert all(d.text.startswith("<DOCTAG>") != condition.endswith("_no_doctag") for d in docs)
    positives = [Document.from_json(r) for r in iter_jsonl(tmp_path / "ed_sheeran" / "positive_documents.jsonl")]
    negated = [Document.from_json(r) for r in iter_jsonl(tmp_path / "ed_sheeran" / "negated_documents.jsonl")]
    assert [d.body.split() for d in positives] == ["".join(s.text for s in n.segments if s.role == "body").split() for n in negated]


def test_generate_cli_rejects_an_unknown_condition(tmp_path):
    import subprocess
    import sys

    from tests.nn_train.hf_oracle import REPO_ROOT

    result = subprocess.run([sys.executable, "-m", "data_gen.generate", f"--out={tmp_path}", "--conditions=negated_docs"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown condition 'negated_docs'; conditions: positive_documents")
    assert not list(tmp_path.iterdir())
