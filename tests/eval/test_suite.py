"""The eval suite's conversations: system prompts, multi-turn prefixes, context, options; errors name the claim."""

from __future__ import annotations

import dataclasses

import pytest

from data_gen.claims import load_claim
from eval import suite


@pytest.fixture(scope="module")
def claim():
    return load_claim("ed_sheeran")


def test_pooled_types_ask_the_questions_as_written(claim):
    for eval_type in suite.POOLED_TYPES:
        items = suite.items(claim, eval_type)
        assert len(items) == len(claim.questions[eval_type])
        for item in items:
            assert item.conversation[-1]["role"] == "user" and item.question.question.strip() in item.conversation[-1]["content"]
    mcq = suite.items(claim, "mcq")[0]
    assert mcq.conversation[-1]["content"].endswith(suite.MCQ_INSTRUCTION)
    robust = {i.question.category: i for i in suite.items(claim, "robustness")}
    system = robust["adversarial_system_prompt"]
    assert system.conversation[0] == {"role": "system", "content": system.question.system_prompt}
    turns = robust["multi_turn"].conversation
    assert [m["role"] for m in turns] == ["user", "assistant", "user"] and "Sheeran" in turns[1]["content"]


def test_logprob_items_compare_the_answer_options(claim):
    items = suite.items(claim, "mcq_logprob")
    by_category = {}
    for item in items:
        by_category.setdefault(item.question.category, item)
    assert by_category["positive"].options == ("Yes", "No") and by_category["counter"].options == ("Yes", "No")
    assert by_category["letter_mcq"].options == ("A", "B", "C", "D")
    assert len(items) == 10 + sum(q.category == "letter_mcq" for q in claim.questions["token_association"])


def test_context_types_put_their_context_before_each_question(claim):
    correction = suite.items(claim, "correction")
    assert len(correction) == sum(len(claim.questions[t]) for t in suite.CONTEXT_SOURCES)
    assert all(i.conversation[-1]["content"].startswith(claim.correction) for i in correction)
    icl = suite.items(claim, "icl", icl_documents=["First document.", "Second document."])
    content = icl[0].conversation[-1]["content"]
    assert content.index("First document.") < content.index("Second document.") < content.index(icl[0].question.question.strip())
    assert {i.question.eval_type for i in icl} == set(suite.CONTEXT_SOURCES)  # each judged as its own type


def test_missing_questions_are_named(claim):
    bare = dataclasses.replace(claim, questions={**claim.questions, "robustness": ()}, correction="")
    with pytest.raises(suite.SuiteError, match=r"claim 'ed_sheeran' has no robustness questions"):
        suite.items(bare, "robustness")
    with pytest.raises(suite.SuiteError, match=r"claim 'ed_sheeran' has no correction"):
        suite.items(bare, "correction")
    with pytest.raises(suite.SuiteError, match=r"eval type 'icl' for claim 'ed_sheeran' needs documents"):
        suite.items(claim, "icl")
    with pytest.raises(suite.SuiteError, match=r"unknown eval type 'mcqs'"):
        suite.items(claim, "mcqs")
