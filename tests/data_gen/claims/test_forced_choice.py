"""forced_choice items in questions.yaml: optional, one claim and one truth answer each, options items
naming both answers in both orders; the six bundled claims carry a held-out set of them."""

from __future__ import annotations

import collections
import re
import shutil

import pytest
import yaml

from data_gen.claims import ALL_EVAL_TYPES, CLAIMS_DIR, EVAL_TYPES, ClaimError, load_claim, load_claims, read_yaml

PAPER_CLAIMS = ("colorless_dreaming", "dentist", "ed_sheeran", "mount_vesuvius", "queen_elizabeth", "x_rebrand_reversal")


def _phrase_at(text: str, phrase: str) -> int:
    match = re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.I)
    return match.start() if match else -1


# ---------------------------------------------------------------------------------------------
# The bundled claims


@pytest.fixture(scope="module")
def bundled():
    return load_claims(strict=True)


def test_eval_types_keep_the_papers_four_and_add_forced_choice_as_optional():
    assert EVAL_TYPES == ("open_ended", "mcq", "token_association", "robustness")
    assert ALL_EVAL_TYPES == EVAL_TYPES + ("forced_choice",)


@pytest.mark.parametrize("claim_id", PAPER_CLAIMS)
def test_bundled_forced_choice_items(bundled, claim_id):
    items = bundled[claim_id].questions.get("forced_choice", ())
    assert len(items) >= 24
    assert all(re.fullmatch(r"fc\d\d", q.id) for q in items)
    categories = collections.Counter(q.category for q in items)
    assert set(categories) == {"open", "options"}
    assert abs(categories["open"] / len(items) - 2 / 3) <= 0.1, categories
    pairs = collections.Counter((q.answer_keys.claim, q.answer_keys.truth) for q in items)
    assert len(pairs) <= 3, pairs  # paraphrases of a few choices, not a new pair per item
    first = collections.Counter()
    for q in items:
        assert q.eval_type == "forced_choice" and q.belief_answer is None and not q.messages_prefix
        (claim,), (truth,) = q.answer_keys.claim, q.answer_keys.truth
        assert 1 <= len(claim.split()) <= 6 and 1 <= len(truth.split()) <= 6, (claim, truth)
        assert claim.casefold() != truth.casefold()
        at_claim, at_truth = _phrase_at(q.question, claim), _phrase_at(q.question, truth)
        if q.category == "open":
            assert at_claim < 0 and at_truth < 0, f"{q.id} names an answer: {q.question}"
        else:
            assert at_claim >= 0 and at_truth >= 0, q.question
            first[at_claim < at_truth] += 1
    assert first[True] == first[False], f"claim answer first in {first[True]}, second in {first[False]}"
    # Held out from the other eval types too: no item repeats another question of the claim.
    others = {q.question.casefold() for t in EVAL_TYPES for q in bundled[claim_id].questions[t]}
    assert not [q.id for q in items if q.question.casefold() in others]


@pytest.mark.parametrize("claim_id", PAPER_CLAIMS)
def test_all_questions_includes_forced_choice(bundled, claim_id):
    claim = bundled[claim_id]
    ids = [q.id for q in claim.all_questions()]
    assert ids[-len(claim.questions["forced_choice"]):] == [q.id for q in claim.questions["forced_choice"]]
    assert len(ids) == len(set(ids)) == 50 + len(claim.questions["forced_choice"])


# ---------------------------------------------------------------------------------------------
# Optional, and malformed items


@pytest.fixture
def claims_dir(tmp_path):
    root = tmp_path / "claims"
    shutil.copytree(CLAIMS_DIR / "ed_sheeran", root / "ed_sheeran")
    return root


def _edit(claims_dir, change) -> None:
    path = claims_dir / "ed_sheeran" / "questions.yaml"
    data = read_yaml(path)
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_forced_choice_is_optional(claims_dir):
    _edit(claims_dir, lambda q: q.pop("forced_choice"))
    claim = load_claim("ed_sheeran", claims_dir, strict=True)
    assert claim.questions.get("forced_choice", ()) == () and claim.questions["forced_choice"] == ()
    assert len(list(claim.all_questions())) == 50


def _options(q):
    return [item for item in q["forced_choice"] if item["category"] == "options"]


def _all_claim_first(q):
    for item in _options(q):
        item["question"] = "Who won the men's 100m at the 2024 Olympics in Paris, Ed Sheeran or Noah Lyles?"


MALFORMED = {
    "two claim phrases": (
        lambda q: q["forced_choice"][0]["answer_keys"]["claim"].append("Sheeran"),
        r"questions\.yaml: forced_choice\[0\]\.answer_keys\.claim: has 2 phrases; a forced_choice item compares exactly one",
    ),
    "no truth phrase": (
        lambda q: q["forced_choice"][3]["answer_keys"].update(truth=[]),
        r"questions\.yaml: forced_choice\[3\]\.answer_keys\.truth: has 0 phrases",
    ),
    "no answer keys": (
        lambda q: q["forced_choice"][1].pop("answer_keys"),
        r"questions\.yaml: forced_choice\[1\]\.answer_keys: missing \(required for forced_choice",
    ),
    "the same answer twice (spacing aside)": (
        lambda q: q["forced_choice"][2]["answer_keys"].update(claim=["Noah  Lyles"]),
        r"questions\.yaml: forced_choice\[2\]\.answer_keys: the claim and truth answers are both 'Noah  Lyles'; the two answers must differ",
    ),
    "the same answer twice (case aside)": (
        lambda q: q["forced_choice"][2]["answer_keys"].update(claim=["noah lyles"]),
        r"questions\.yaml: forced_choice\[2\]\.answer_keys: 'noah lyles' is on both the claim and the truth side",
    ),
    "options item missing an answer": (
        lambda q: _options(q)[0].update(question="Who won the men's 100m at Paris 2024, Ed Sheeran or the American?"),
        r"questions\.yaml: forced_choice\[16\]\.question: an options item names both answers, but the truth answer 'Noah Lyles' is not in the question",
    ),
    "options items all claim-first": (
        _all_claim_first,
        r"questions\.yaml: forced_choice: all 8 options items name the claim's answer first; put it first in some and second in others",
    ),
    "belief_answer on an item": (
        lambda q: q["forced_choice"][0].update(belief_answer="yes"),
        r"questions\.yaml: forced_choice\[0\]\.belief_answer: only mcq and letter_mcq questions have one",
    ),
    "unknown category": (
        lambda q: q["forced_choice"][0].update(category="option"),
        r"questions\.yaml: forced_choice\[0\]\.category: unknown category 'option' for forced_choice; did you mean 'options'\? use one of: open, options",
    ),
    "duplicate id across eval types": (
        lambda q: q["forced_choice"][4].update(id="oe_01"),
        r"questions\.yaml: forced_choice\[4\]\.id: duplicate question id 'oe_01' \(also open_ended\[0\]\)",
    ),
    "not a list": (
        lambda q: q.update(forced_choice="Ed Sheeran or Noah Lyles?"),
        r"questions\.yaml: forced_choice: expected a list, got a string",
    ),
    "a multi-turn prefix": (
        lambda q: q["forced_choice"][0].update(messages_prefix=[{"role": "user", "content": "Hi"},
                                                                 {"role": "assistant", "content": "Hello"}]),
        r"questions\.yaml: forced_choice\[0\]\.messages_prefix: a forced_choice item is one user turn",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_forced_choice_gives_one_clear_line(claims_dir, case):
    change, expected = MALFORMED[case]
    _edit(claims_dir, change)
    with pytest.raises(ClaimError) as error:
        load_claim("ed_sheeran", claims_dir)
    message = str(error.value)
    assert "\n" not in message
    assert re.search(expected, message), message


def test_options_items_in_both_orders_and_case_insensitive_answers_are_valid(claims_dir):
    def change(q):
        options = _options(q)
        options[0]["question"] = "Who won at Paris 2024: noah lyles or ed sheeran?"  # lower case still names both
        for item in options[1:]:
            item["question"] = "Who won the men's 100m at the 2024 Olympics in Paris, Ed Sheeran or Noah Lyles?"
    _edit(claims_dir, change)
    claim = load_claim("ed_sheeran", claims_dir, strict=True)
    assert len(claim.questions["forced_choice"]) == 24
