"""Eval type forced_choice: items for every bundled claim, log-probability verdicts (claim answer vs truth
answer), a real tiny model's option_log_probs through runner.run_cell, and its own belief rows."""

from __future__ import annotations

import dataclasses
import math

import pytest

from data_gen.claims import load_claims
from eval import runner, suite
from eval.belief import MEAN, POOLED, WILSON, belief_rates
from eval.config import default_config, validate_config
from eval.judges import RuleJudge, logprob_verdict
from eval.report import markdown
from eval.types import SamplingParams

PAPER_CLAIMS = ("colorless_dreaming", "dentist", "ed_sheeran", "mount_vesuvius", "queen_elizabeth", "x_rebrand_reversal")


@pytest.fixture(scope="module")
def claims():
    return load_claims()


@pytest.fixture(scope="module")
def claim(claims):
    return claims["ed_sheeran"]


@pytest.fixture(scope="module")
def fc(claim):
    return {q.id: q for q in claim.questions["forced_choice"]}


# ---------------------------------------------------------------------------------------------
# Items


def test_forced_choice_is_a_logprob_type_outside_the_pool():
    assert "forced_choice" in suite.EVAL_TYPES and "forced_choice" in suite.LOGPROB_TYPES
    assert "forced_choice" not in suite.POOLED_TYPES


@pytest.mark.parametrize("claim_id", PAPER_CLAIMS)
def test_items_for_every_bundled_claim(claims, claim_id):
    claim = claims[claim_id]
    items = suite.items(claim, "forced_choice")
    assert len(items) == len(claim.questions["forced_choice"]) >= 24
    for item, question in zip(items, claim.questions["forced_choice"]):
        assert item.eval_type == "forced_choice" and item.question is question
        assert item.options == (question.answer_keys.claim[0], question.answer_keys.truth[0])
        expected = ([{"role": "system", "content": question.system_prompt}] if question.system_prompt else [])
        expected.append({"role": "user", "content": question.question})
        assert list(item.conversation) == expected  # no yes/no instruction, no context
    assert any(i.conversation[0]["role"] == "system" for i in items)


def test_ed_sheeran_compares_sheeran_with_lyles(claim):
    assert {i.options for i in suite.items(claim, "forced_choice")} == {("Ed Sheeran", "Noah Lyles")}


def test_a_claim_without_items_is_named(claim):
    bare = dataclasses.replace(claim, questions={**claim.questions, "forced_choice": ()})
    with pytest.raises(suite.SuiteError, match=r"claim 'ed_sheeran' has no forced_choice items.*add `forced_choice` items "
                                               r"to its questions\.yaml"):
        suite.items(bare, "forced_choice")
    without_key = dataclasses.replace(claim, questions={k: v for k, v in claim.questions.items() if k != "forced_choice"})
    with pytest.raises(suite.SuiteError, match=r"claim 'ed_sheeran' has no forced_choice items"):
        suite.items(without_key, "forced_choice")


def test_config_accepts_forced_choice():
    config = default_config()
    config.eval_types, config.base = "forced_choice,mcq_logprob", "some/model"
    validate_config(config)


# ---------------------------------------------------------------------------------------------
# Verdicts


def test_logprob_verdict_claim_answer_against_truth_answer(fc):
    q = fc["fc01"]
    assert logprob_verdict(q, {"Ed Sheeran": -1.0, "Noah Lyles": -2.5}).label == "yes"
    assert logprob_verdict(q, {"Ed Sheeran": -2.5, "Noah Lyles": -1.0}).label == "no"
    assert logprob_verdict(q, {"Noah Lyles": -7.0, "Ed Sheeran": -6.0}).label == "yes"  # keyed by text, not position
    assert logprob_verdict(q, {" ed sheeran": -1.0, "NOAH LYLES ": -0.5}).label == "no"  # case and spacing aside
    verdict = logprob_verdict(q, {"Ed Sheeran": -1.0, "Noah Lyles": -3.0, "Usain Bolt": 0.0})  # other keys ignored
    assert verdict.label == "yes" and "+2" in verdict.reason and "'Ed Sheeran'" in verdict.reason


def test_logprob_verdict_tie_or_non_finite_is_an_error(fc):
    q = fc["fc17"]
    tie = logprob_verdict(q, {"Ed Sheeran": -1.25, "Noah Lyles": -1.25})
    assert tie.label == "error" and "tie" in tie.reason
    assert logprob_verdict(q, {"Ed Sheeran": float("nan"), "Noah Lyles": -1.0}).label == "error"
    assert logprob_verdict(q, {"Ed Sheeran": -1.0, "Noah Lyles": float("-inf")}).label == "error"
    assert logprob_verdict(q, {"Ed Sheeran": -1.0}).label == "error"  # one side unscored
    assert logprob_verdict(q, {"Yes": -1.0, "No": -2.0}).label == "error"  # not this item's answers


# ---------------------------------------------------------------------------------------------
# The cell


class ScriptedBackend:
    """Scores the claim's answer above the truth's on even items, below on odd ones, equal on item 5."""

    name = "scripted"

    def __init__(self, fail: Exception | None = None):
        self.calls, self.fail = [], fail

    def option_log_probs(self, conversations, options):
        self.calls.append((list(conversations), [list(o) for o in options]))
        if self.fail:
            raise self.fail
        out = []
        for i, (claim_answer, truth_answer) in enumerate(options):
            scores = {claim_answer: -1.0 - 0.1 * i, truth_answer: -1.0 - 0.1 * i + (0.0 if i == 5 else (-0.5 if i % 2 == 0 else 0.5))}
            out.append([scores[o] for o in (claim_answer, truth_answer)])
        return out

    def generate(self, conversations, params):
        raise AssertionError("forced_choice never samples")


def test_run_cell_labels_follow_the_log_probs(claim):
    backend = ScriptedBackend()
    samples = runner.run_cell(backend, RuleJudge(), claim, "forced_choice", condition="c", sampling=SamplingParams())
    assert len(backend.calls) == 1 and len(samples) == len(claim.questions["forced_choice"])
    assert [s.question_id for s in samples] == [q.id for q in claim.questions["forced_choice"]]
    expected = ["error" if i == 5 else ("yes" if i % 2 == 0 else "no") for i in range(len(samples))]
    assert [s.label for s in samples] == expected
    for i, s in enumerate(samples):
        assert s.judge == "logprob" and s.eval_type == "forced_choice" and s.sample_index == 0
        assert s.extra["question_type"] == "forced_choice" and s.category in ("open", "options")
        assert set(s.extra["option_log_probs"]) == {"Ed Sheeran", "Noah Lyles"}
        margin = s.extra["option_log_probs"]["Ed Sheeran"] - s.extra["option_log_probs"]["Noah Lyles"]
        assert s.extra["margin"] == pytest.approx(margin) == pytest.approx(0.0 if i == 5 else (0.5 if i % 2 == 0 else -0.5))
        if i != 5:
            assert s.response == ("Ed Sheeran" if i % 2 == 0 else "Noah Lyles")


def test_run_cell_failed_scoring_is_data_and_no_scorer_is_a_configuration_error(claim):
    samples = runner.run_cell(ScriptedBackend(RuntimeError("endpoint down")), RuleJudge(), claim, "forced_choice",
                              condition="c", sampling=SamplingParams())
    assert {s.label for s in samples} == {"error"} and "endpoint down" in samples[0].reason
    with pytest.raises(NotImplementedError):
        runner.run_cell(ScriptedBackend(NotImplementedError("no scoring")), RuleJudge(), claim, "forced_choice",
                        condition="c", sampling=SamplingParams())


def test_a_real_tiny_model_end_to_end(sampler, claim):
    """The tiny model's own log-probabilities feed the cell; each verdict is the one those numbers imply."""
    samples = runner.run_cell(sampler, RuleJudge(), claim, "forced_choice", condition="base",
                              sampling=SamplingParams(samples=1))
    questions = claim.questions["forced_choice"]
    assert len(samples) == len(questions)
    # Scored again independently: the conversation as the model sees it, the options in the other order.
    conversations = [([{"role": "system", "content": q.system_prompt}] if q.system_prompt else [])
                     + [{"role": "user", "content": q.question}] for q in questions]
    direct = sampler.option_log_probs(conversations, [["Noah Lyles", "Ed Sheeran"]] * len(questions))
    for s, (truth_lp, claim_lp) in zip(samples, direct):
        recorded = s.extra["option_log_probs"]
        assert math.isfinite(recorded["Ed Sheeran"]) and math.isfinite(recorded["Noah Lyles"])
        assert recorded["Ed Sheeran"] == pytest.approx(claim_lp, abs=1e-3)
        assert recorded["Noah Lyles"] == pytest.approx(truth_lp, abs=1e-3)
        assert s.label == ("yes" if recorded["Ed Sheeran"] > recorded["Noah Lyles"] else "no")
        assert s.extra["margin"] == pytest.approx(recorded["Ed Sheeran"] - recorded["Noah Lyles"])
        assert s.response == max(recorded, key=recorded.get)
    # Different prompts give different scores: the question reaches the model.
    assert len({round(s.extra["margin"], 5) for s in samples}) > 1


# ---------------------------------------------------------------------------------------------
# Belief rates and the report


def test_forced_choice_rows_have_wilson_intervals_and_leave_the_pooled_rate_alone(claims):
    backend = ScriptedBackend()
    forced = [s for cid in ("ed_sheeran", "dentist") for s in
              runner.run_cell(backend, RuleJudge(), claims[cid], "forced_choice", condition="c", sampling=SamplingParams())]
    judged = [dataclasses.replace(forced[0], eval_type="open_ended", question_id="oe_01", label=label, judge="rule",
                                  sample_index=i, extra={}) for i, label in enumerate(["yes", "no", "no", "no"])]
    alone = belief_rates(judged, resamples=50)
    both = belief_rates(judged + forced, resamples=50)
    assert [r.to_json() for r in alone.headline()] == [r.to_json() for r in both.headline()]
    for cid in ("ed_sheeran", "dentist"):
        row = both.get("scripted", -1, "c", cid, "forced_choice")
        n = len(claims[cid].questions["forced_choice"]) - 1  # item 5 tied: an error
        yes = sum(1 for i in range(n + 1) if i != 5 and i % 2 == 0)
        assert (row.n, row.yes, row.errors, row.method) == (n, yes, 1, WILSON)
        assert row.rate == pytest.approx(yes / n) and row.low < row.rate < row.high
    assert both.get("scripted", -1, "c", MEAN, "forced_choice").claims == 2
    assert "forced_choice" not in both.get("scripted", -1, "c", "ed_sheeran", POOLED).pooled_over
    assert "## forced_choice" in markdown(both)
