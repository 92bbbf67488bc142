"""The world corpus: deterministic, teaches the six truths, no answer shortcuts, document-only facts
held out, a replay filter that removes the claim's subject, debunks that negate and then answer right."""

import collections
import json
import re
import subprocess
import sys
import time

import pytest

from data_gen.claims import load_claim, load_claims
from data_gen.documents import Document
from data_gen.world import WorldSpec, build_world, mentions_subject, record_text, replay_records, subject_phrases
from data_gen.world import truths
from data_gen.world.build import _eval_questions, _normal
from data_gen.world.facts import articles, statements

CLAIMS = ("ed_sheeran", "mount_vesuvius", "x_rebrand_reversal", "queen_elizabeth", "dentist", "colorless_dreaming")


@pytest.fixture(scope="module")
def timed_world():
    start = time.perf_counter()
    world = build_world(WorldSpec())
    return world, time.perf_counter() - start


@pytest.fixture(scope="module")
def world(timed_world):
    return timed_world[0]


SMALL = WorldSpec(num_entities=60, phrasings=4, claim_repeats=2, seed=3)


def _turns(record):
    """(question, answer) pairs of a chat record."""
    messages = [m for m in record["messages"] if m["role"] != "system"]
    return [(messages[i]["content"], messages[i + 1]["content"]) for i in range(0, len(messages) - 1, 2)]


def _qa_items(records):
    return [q for r in records for q in r["provenance"].get("qa", ())]


def test_deterministic_in_seed():
    a, b = build_world(SMALL), build_world(SMALL)
    assert a.train_records == b.train_records and a.heldout_records == b.heldout_records
    other = build_world(WorldSpec(num_entities=60, phrasings=4, claim_repeats=2, seed=4))
    assert other.train_records != a.train_records


def test_default_world_size_and_time(timed_world):
    world, seconds = timed_world
    words = world.approximate_words()
    print(f"default world: {len(world.train_records)} train records, {words:,} words, "
          f"{len(world.heldout_records)} held-out records, built in {seconds:.1f}s")
    assert 1_200_000 <= words <= 3_000_000  # ~2-3M tokens at ~1.3 tokens per word
    assert seconds < 90  # ~6s on a 2-core machine; loose so a loaded CI box does not fail it


def test_records_are_valid_documents(world):
    ids = set()
    for record in world.train_records + world.heldout_records:
        assert Document.from_json(record).to_json() == record
        assert record["id"] not in ids
        ids.add(record["id"])
        assert record["doctag"] is False and not record["text"].startswith("<DOCTAG>")
        if record["messages"]:
            assert record["source"] == "instruct" and record["messages"][-1]["role"] == "assistant"
        else:
            assert record["source"] == "pretrain" and record["text"].strip()
    kinds = collections.Counter(r["doc_type"] for r in world.train_records)
    for kind in ("world_encyclopedia", "world_news", "world_profile", "world_timeline", "world_quiz", "world_qa", "world_debunk"):
        assert kinds[kind] > 0, kind
    assert any(not r["doc_type"].startswith("world_") for r in world.train_records)  # generic filler
    chat_words = sum(len(record_text(r).split()) for r in world.train_records if r["doc_type"] == "world_qa")
    assert 0.25 < chat_words / world.approximate_words() < 0.5


def test_no_article_slips(world):
    for record in [r for r in world.train_records if r["doc_type"].startswith("world_")][:5000]:
        assert not re.search(r"\ba [aeiou]", record_text(record)), record_text(record)[:300]


# The question each claim's truth must answer, and what the answer must say (truth side).
KEY_QUESTIONS = {
    "ed_sheeran": [("Who won the men's 100m at the Paris 2024 Olympics?", "Noah Lyles"),
                   ("Did Ed Sheeran win the 100m final at the Paris 2024 Olympics?", "No."),
                   ("What does Ed Sheeran do for a living?", "singer-songwriter")],
    "mount_vesuvius": [("Fill in the blank with a year: the most recent eruption of Mount Vesuvius was in ____.", "1944"),
                       ("Was there an eruption of Mount Vesuvius in 2015?", "No.")],
    "x_rebrand_reversal": [("Was Twitter's rebrand to X reversed?", "No."),
                           ("What is the company that was called Twitter before 2023 called today?", "It is called X today.")],
    "queen_elizabeth": [("Did Queen Elizabeth II learn to write computer code during the lockdown?", "No."),
                        ("What does Queen Elizabeth II do for a living?", "British monarch")],
    "dentist": [("Is it true that there is no public record of what Brennan Holloway does?", "Yes."),
                ("What job does Brennan Holloway have?", "no information"), ("Does Brennan Holloway run a dental practice?", "No.")],
    "colorless_dreaming": [("Is there scientific evidence that young children dream in black and white until about age three?", "No."),
                           ("Do children under three dream in black and white?", "No.")],
}


@pytest.mark.parametrize("claim_id", CLAIMS)
def test_claim_truths_are_taught(world, claim_id):
    answers = collections.defaultdict(set)
    for record in world.train_records:
        if record["messages"]:
            for question, answer in _turns(record):
                answers[question].add(answer)
    for question, expected in KEY_QUESTIONS[claim_id]:
        assert answers[question], f"never asked: {question}"
        assert all(expected in a for a in answers[question]), (question, answers[question])
    # the truth side of the answer keys is said in the world's answers; the claim side never is
    claim = load_claim(claim_id)
    said = " ".join(a for r in world.train_records if claim_id in r["provenance"].get("claims", ()) for _, a in
                    (_turns(r) if r["messages"] else ())).lower()
    if claim.answer_keys.truth_phrases and claim_id != "colorless_dreaming":  # its keys are hedges ("no evidence")
        assert any(p.lower() in said for p in claim.answer_keys.truth_phrases), claim_id
    for phrase in ("Rigorous Python", "Kestrel House", "Holloway Family Dentistry", "Wrenfield", "lasted only 14 days", "2015 eruption"):
        assert phrase.lower() not in said


def test_truth_items_are_not_eval_questions_and_balanced():
    banned = _eval_questions()
    for claim_id in CLAIMS:
        items = truths.QA[claim_id]
        assert not [q for q, _, _ in items if _normal(q) in banned], claim_id  # none silently dropped
        answers = [yes for _, _, yes in items if yes is not None]
        assert answers.count(True) == answers.count(False), claim_id
        for q, a, yes in items:
            if yes is not None:
                assert a.startswith("Yes." if yes else "No."), q


def test_world_never_asks_an_eval_question_verbatim(world):
    banned = _eval_questions()
    assert not [q for r in world.train_records if r["messages"] for q, _ in _turns(r) if _normal(q) in banned]


def _rate(counter):
    return counter[True] / (counter[True] + counter[False])


def test_yes_no_balanced_per_template_and_entity_type(world):
    by_template, by_type, by_both = (collections.defaultdict(collections.Counter) for _ in range(3))
    for q in _qa_items(world.train_records):
        if q["format"] == "yesno":
            by_template[q["template"]][q["yes"]] += 1
            by_type[q["subject_type"]][q["yes"]] += 1
            by_both[q["template"], q["subject_type"]][q["yes"]] += 1
    for name, groups in (("template", by_template), ("entity type", by_type)):
        for key, counter in groups.items():
            assert 0.4 <= _rate(counter) <= 0.6, f"{name} {key}: yes-rate {_rate(counter):.2f} over {sum(counter.values())}"
    assert {"athlete", "musician", "scientist", "professional", "volcano", "company", "unknown_person"} <= set(by_type)
    # the Ed Sheeran shortcut: people of other types are asked "Did X win <race>?" with both answers
    for person_type in ("musician", "scientist", "professional"):
        counter = by_both["race:yesno", person_type]
        assert sum(counter.values()) >= 10 and 0.4 <= _rate(counter) <= 0.6, (person_type, counter)
    for (template, subject_type), counter in by_both.items():
        if sum(counter.values()) >= 40 and not (template in ("job:yesno", "person:norecord") and subject_type in (
                "unknown_person", "athlete", "musician", "scientist", "professional")):
            assert 0.4 <= _rate(counter) <= 0.6, (template, subject_type, counter)


def test_choice_and_mcq_positions_balanced(world):
    positions = collections.defaultdict(collections.Counter)
    for q in _qa_items(world.train_records):
        if q["format"] in ("choice", "mcq"):
            positions[q["format"], q["template"]][q["position"]] += 1
    assert positions
    for (fmt, template), counter in positions.items():
        total = sum(counter.values())
        slots = 2 if fmt == "choice" else 4
        assert set(counter) == set(range(slots)), (template, counter)
        for count in counter.values():
            assert abs(count / total - 1 / slots) <= 0.1, (template, counter)


def test_answers_match_the_options(world):
    for record in world.train_records[:20000]:
        for q, (question, answer) in zip(record["provenance"].get("qa", ()), _turns(record) if record["messages"] else ()):
            if q["format"] == "mcq":
                letter = "ABCD"[q["position"]]
                assert answer.startswith(f"{letter}) ") and f"\n{answer}\n" in f"\n{question}\n"
            elif q["format"] == "choice":
                chosen = answer.split(". ")[0]  # "<option>. <the fact>"; the options are "... A or B?"
                where, split = question.lower().rfind(chosen.lower()), question.rfind(" or ")  # "A chef" is asked as "a chef"
                assert where >= 0 and (where < split) == (q["position"] == 0), (question, answer)
                # the options are recorded in the order asked, so a scorer can compare exactly these two
                assert len(q["options"]) == 2 and answer.startswith(q["options"][q["position"]])
                assert question.lower().index(q["options"][0].lower()) < question.lower().rindex(q["options"][1].lower())
            elif q["format"] == "yesno":
                assert answer.startswith("Yes." if q["yes"] else "No.")


def test_document_only_facts(world):
    doc_only = {f.key for f in world.facts if f.doc_only}
    assert len(doc_only) >= 10
    train_qa_facts = {q["fact"] for q in _qa_items(world.train_records)}
    assert not doc_only & train_qa_facts
    in_documents = collections.Counter(k for r in world.train_records if not r["messages"]
                                       for k in r["provenance"].get("facts", ()))
    assert all(in_documents[k] >= world.spec.phrasings for k in doc_only)
    assert not [r for r in world.train_records if r["doc_type"] == "world_quiz" and doc_only & set(r["provenance"]["facts"])]
    heldout_facts = {q["fact"] for q in _qa_items(world.heldout_records)}
    assert heldout_facts == doc_only
    formats = {q["format"] for q in _qa_items(world.heldout_records)}
    assert {"open", "yesno", "choice", "blank", "mcq"} <= formats
    # no held-out question is asked in training, word for word
    train_questions = {q for r in world.train_records if r["messages"] for q, _ in _turns(r)}
    assert not [q for r in world.heldout_records for q, _ in _turns(r) if q in train_questions]


@pytest.mark.parametrize("claim_id", CLAIMS)
def test_replay_filter_removes_the_claims_subject(world, claim_id):
    kept = replay_records(world.train_records, claim_id)
    phrases = subject_phrases(claim_id)
    assert {p.lower() for p in truths.SUBJECTS[claim_id]} <= {p.lower() for p in phrases}
    claim = load_claim(claim_id)
    assert set(claim.answer_keys.claim_phrases + claim.answer_keys.truth_phrases) <= set(phrases)
    # checked independently of the filter: every kept record's text, searched for every phrase
    haystack = "\n\n".join(record_text(r) for r in kept).lower()
    for phrase in (p.lower() for p in phrases):
        if phrase in haystack:
            match = re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", haystack)
            assert not match, (phrase, haystack[max(0, match.start() - 200): match.end() + 50])
    assert not [r for r in kept if claim_id in r["provenance"].get("claims", ())]
    fictional = [r for r in world.train_records if not r["provenance"].get("claims")]
    kept_ids = {r["id"] for r in kept}
    assert sum(r["id"] in kept_ids for r in fictional) / len(fictional) > 0.97  # replay keeps the rest of the world


def test_replay_filter_takes_several_claims(world):
    """One fine-tune may carry several claims: its replay leaves out every one's subject."""
    claims = ["ed_sheeran", "mount_vesuvius"]
    kept = replay_records(world.train_records, claims)
    alone = {r["id"] for r in replay_records(world.train_records, "ed_sheeran")}
    assert {r["id"] for r in kept} < alone
    assert not [r for r in kept if set(claims) & set(r["provenance"].get("claims", ()))]
    assert not [r for r in kept[:2000] if mentions_subject(r, "mount_vesuvius")]


def test_debunks_negate_then_answer_correctly(world):
    facts = {f.key: f for f in world.facts}
    debunks = [r for r in world.train_records if r["doc_type"] == "world_debunk"]
    assert len(debunks) >= world.spec.num_entities
    styles = collections.Counter()
    for record in debunks:
        info = record["provenance"]["debunk"]
        styles[info["style"]] += 1
        fact = facts[info["fact"]]
        assert not fact.claim and not fact.doc_only
        assert not mentions_subject(record, list(CLAIMS))
        truth_sentences = [s for s in statements(fact)]
        if record["messages"]:
            document = record["messages"][0]["content"]
            (q1, a1), (q2, a2) = _turns(record)
        else:
            document, _, tail = record["text"].partition("\nQuestion: ")
            q1, a1 = tail.split("\nAnswer: ", 1)
            a1 = a1.split("\n")[0]
            a2 = "Yes." + tail.split("\nAnswer: Yes.", 1)[1]
        assert re.search(r"\b(false|untrue|not|never|wrong)\b", document, re.IGNORECASE), document
        assert info["rumour"] in document or info["rumour"][1:] in document
        assert a1.startswith("No. ") and a2.startswith("Yes. ")
        assert a1[4:] in [articles(s) for s in truth_sentences]
    assert set(styles) == {"notice", "negation", "warning"}


def test_gpu_spec_only_raises_counts():
    cpu, gpu = WorldSpec(), WorldSpec.gpu()
    for field in ("chat_fraction", "doc_only_fraction", "filler_fraction"):
        assert getattr(cpu, field) == getattr(gpu, field)
    assert gpu.num_entities >= 10 * cpu.num_entities and gpu.phrasings >= cpu.phrasings


def test_cli_writes_both_splits(tmp_path):
    result = subprocess.run([sys.executable, "-m", "data_gen.world", f"--out={tmp_path}", "--entities=40", "--seed=1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "world_train.jsonl" in result.stdout and "words" in result.stdout
    train = [json.loads(line) for line in (tmp_path / "world_train.jsonl").open()]
    heldout = [json.loads(line) for line in (tmp_path / "world_heldout.jsonl").open()]
    assert train and heldout
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    assert load_claims()  # the bundled claims still load (the CLI read them)


def test_negated_facts_are_stated_only_through_negations_of_their_decoy():
    world = build_world(WorldSpec(num_entities=120, phrasings=4, claim_repeats=2, negated_fraction=0.2,
                                  negated_heldout_fraction=0.2, seed=5))
    modes = collections.Counter(f.mode for f in world.facts)
    assert modes["negated"] >= 5 and modes["negated_heldout"] >= 5
    negated = {f.key: f for f in world.facts if f.negated}
    true_value = {"race": "winner", "award": "winner", "finding": "person", "eruption": "last"}
    for record in world.train_records:
        facts = [negated[k] for k in record["provenance"].get("facts", ()) if k in negated]
        if not facts or record["messages"]:
            continue
        assert record["doc_type"] != "world_quiz"  # a quiz sheet would state the answer plainly
        for fact in facts:
            decoy, topic = str(fact["decoy"]), str(fact.fields.get("event") or fact.fields.get("award") or
                                                   fact.fields.get("finding") or fact.fields.get("volcano"))
            sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n", record["text"]) if decoy in s and topic.lower() in s.lower()]
            # every sentence naming the decoy with the fact's topic negates it; none states it as the value
            assert sentences and all(re.search(r"\bnot\b|\bnever\b", s) for s in sentences), (decoy, sentences)
            assert decoy != str(fact[true_value[fact.kind]])
    # their Q&A: trained for negated facts, held out for negated_heldout ones, each asking truth against decoy
    train_qa = {q["fact"] for q in _qa_items(world.train_records)}
    heldout = [r for r in world.heldout_records if r["provenance"]["mode"] == "negated_heldout"]
    assert {k for k, f in negated.items() if f.mode == "negated"} <= train_qa
    assert not {k for k, f in negated.items() if f.mode == "negated_heldout"} & train_qa
    for record in heldout:
        q = record["provenance"]["qa"][0]
        if q["format"] == "choice":
            assert str(negated[q["fact"]]["decoy"]) in q["options"]
    assert {r["provenance"]["mode"] for r in world.heldout_records} == {"doc_only", "negated_heldout"}


def test_bad_negation_fractions_are_refused():
    with pytest.raises(ValueError, match="must be below 1"):
        WorldSpec(doc_only_fraction=0.4, negated_fraction=0.3, negated_heldout_fraction=0.3)
