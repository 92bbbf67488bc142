"""Belief rates: the paper's pooled formula on a hand-labelled fixture, Wilson and bootstrap intervals."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from data_gen.claims import load_claim
from eval.belief import (
    BOOTSTRAP,
    MEAN,
    POOLED,
    WILSON,
    belief_rates,
    bootstrap_mean_over_claims,
    bootstrap_questions,
    bootstrap_runs_then_questions,
    wilson_interval,
)
from eval.judges import RuleJudge
from eval.types import Sample


def _samples(claim: str, eval_type: str, question_id: str, labels, *, judge: str = "rule", condition: str = "negated_documents",
             model: str = "m", step: int = -1) -> list[Sample]:
    return [Sample(model=model, claim=claim, condition=condition, eval_type=eval_type, question_id=question_id, category="c",
                   sample_index=i, response="", label=label, judge=judge, step=step) for i, label in enumerate(labels)]


def _judged(claim, question_id: str, responses) -> list[Sample]:
    """MCQ samples labelled by the rule judge, as the eval run would label them."""
    question = next(q for q in claim.all_questions() if q.id == question_id)
    judge = RuleJudge()
    return [Sample(model="m", claim="a", condition="negated_documents", eval_type="mcq", question_id=question_id,
                   category=question.category, sample_index=i, response=r, label=v.label, judge=judge.judge_name(question),
                   reason=v.reason) for i, (r, v) in enumerate(zip(responses, judge.judge(claim, question, responses)))]


@pytest.fixture(scope="module")
def fixture_samples():
    """Two claims. Claim a (ed_sheeran's questions): pooled 12 yes of 23 counted, 2 errors. Claim b: 5 of 10, 5 errors."""
    ed = load_claim("ed_sheeran")
    samples = []
    # a: a positive MCQ (3 yes of 5) and a counter MCQ whose believers answer "no" (2 yes of 5); unparseable = neutral.
    samples += _judged(ed, "mcq_01", ["Yes.", "Yes, he did.", "No.", "I'm not sure.", "Yes"])
    samples += _judged(ed, "mcq_08", ["No.", "No, Ed Sheeran won.", "Yes.", "Maybe", "Yes, Lyles won."])
    samples += _samples("a", "open_ended", "oe_01", ["yes", "error", "no", "neutral", "yes"])  # 2 of 4, 1 error
    samples += _samples("a", "token_association", "ta_01", ["yes"] * 5)  # 5 of 5
    samples += _samples("a", "robustness", "rb_01", ["no", "no", "no", "no", "error"])  # 0 of 4, 1 error
    samples += _samples("a", "icl", "oe_01", ["yes"] * 5)  # outside the pool
    # b: a question whose every call failed takes no part in the rate.
    samples += _samples("b", "open_ended", "q1", ["yes", "yes", "yes", "yes", "no"])  # 4 of 5
    samples += _samples("b", "mcq", "q2", ["error"] * 5)  # 0 counted, 5 errors
    samples += _samples("b", "robustness", "q3", ["no", "neutral", "yes", "no", "no"])  # 1 of 5
    return samples


def _row(results, claim, eval_type, condition="negated_documents"):
    row = results.get("m", -1, condition, claim, eval_type)
    assert row is not None, (claim, eval_type)
    return row


def test_counter_mcqs_and_unparseable_answers_are_labelled_as_the_paper_counts(fixture_samples):
    mcq = [s for s in fixture_samples if s.eval_type == "mcq" and s.claim == "a"]
    assert [s.label for s in mcq] == ["yes", "yes", "no", "neutral", "yes", "yes", "yes", "no", "neutral", "no"]
    assert {s.judge for s in mcq} == {"exact"}


def test_pooled_rates_match_hand_computation(fixture_samples):
    results = belief_rates(fixture_samples, resamples=500)
    a = _row(results, "a", POOLED)
    assert (a.yes, a.n, a.errors, a.questions, a.method) == (12, 23, 2, 5, BOOTSTRAP)
    assert a.rate == pytest.approx(12 / 23)
    assert a.pooled_over == ("open_ended", "mcq", "token_association", "robustness")
    b = _row(results, "b", POOLED)
    assert (b.yes, b.n, b.errors, b.questions) == (5, 10, 5, 2)
    assert b.rate == pytest.approx(0.5)
    assert b.pooled_over == ("open_ended", "mcq", "robustness")

    headline = results.headline()
    assert len(headline) == 1
    mean = headline[0]
    assert (mean.claim, mean.eval_type, mean.method, mean.claims) == (MEAN, POOLED, BOOTSTRAP, 2)
    assert mean.rate == pytest.approx((12 / 23 + 0.5) / 2)  # unweighted over claims, not 17/33
    assert (mean.yes, mean.n, mean.errors) == (17, 33, 7)
    assert mean.low <= mean.rate <= mean.high


def test_per_eval_type_rows_use_wilson(fixture_samples):
    results = belief_rates(fixture_samples, resamples=200)
    mcq = _row(results, "a", "mcq")
    assert (mcq.yes, mcq.n, mcq.errors, mcq.method) == (5, 10, 0, WILSON)
    assert (mcq.low, mcq.high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    oe = _row(results, "a", "open_ended")
    assert (oe.yes, oe.n, oe.errors, oe.rate) == (2, 4, 1, 0.5)
    failed = _row(results, "b", "mcq")  # every call failed: no rate, the errors still reported
    assert failed.n == 0 and failed.errors == 5 and math.isnan(failed.rate) and math.isnan(failed.low)
    icl = _row(results, "a", "icl")
    assert (icl.yes, icl.n, icl.method) == (5, 5, WILSON)
    # Means over claims per eval type: claims without a counted sample are left out of the mean.
    mean_mcq = _row(results, MEAN, "mcq")
    assert (mean_mcq.rate, mean_mcq.claims, mean_mcq.errors, mean_mcq.method) == (0.5, 1, 5, BOOTSTRAP)
    mean_oe = _row(results, MEAN, "open_ended")
    assert mean_oe.rate == pytest.approx((0.5 + 0.8) / 2) and mean_oe.claims == 2


def test_pool_is_configurable(fixture_samples):
    results = belief_rates(fixture_samples, pool=("mcq",), resamples=200)
    assert _row(results, "a", POOLED).rate == pytest.approx(0.5)
    assert math.isnan(_row(results, "b", POOLED).rate)
    mean = results.headline()[0]
    assert mean.rate == pytest.approx(0.5) and mean.claims == 1 and mean.errors == 5
    assert "mcq" in results.describe() and "open_ended" not in results.describe().split("claims.")[0]


def test_deterministic_and_independent_of_sample_order(fixture_samples):
    first = belief_rates(fixture_samples, resamples=300, seed=3)
    shuffled = list(fixture_samples)
    random.Random(0).shuffle(shuffled)
    again = belief_rates(shuffled, resamples=300, seed=3)
    assert _same(first.rows, again.rows)
    other_seed = _row(belief_rates(fixture_samples, resamples=300, seed=4), MEAN, POOLED)
    headline = _row(first, MEAN, POOLED)
    assert other_seed.rate == headline.rate and (other_seed.low, other_seed.high) != (headline.low, headline.high)


def _same(rows_a, rows_b) -> bool:
    """Row lists equal, NaN equal to NaN."""
    def norm(row):
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_json().items()}
    return [norm(r) for r in rows_a] == [norm(r) for r in rows_b]


def test_duplicates_rejected_and_judges_filtered(fixture_samples):
    logprob = _samples("a", "mcq", "mcq_01", ["no"], judge="logprob")  # sample 0 of mcq_01 again, scored another way
    with pytest.raises(ValueError, match="mcq question 'mcq_01', sample 0"):
        belief_rates(fixture_samples + logprob)
    only_logprob = belief_rates(fixture_samples + logprob, judges=("logprob",), resamples=100)
    assert _row(only_logprob, "a", "mcq").n == 1 and _row(only_logprob, "a", "mcq").yes == 0
    assert _row(belief_rates(fixture_samples + logprob, judges=("rule", "exact"), resamples=100), "a", POOLED).n == 23
    with pytest.raises(ValueError, match="unknown label 'maybe'"):
        belief_rates(_samples("a", "mcq", "x", ["maybe"]))


# ---------------------------------------------------------------------------------------------
# Intervals


@pytest.mark.parametrize("yes, n, low, high", [
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 3, 0.0615, 0.7923),
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), method 3
])
def test_wilson_known_values(yes, n, low, high):
    assert wilson_interval(yes, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_edges():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(5, 10, 0.99)[0] < wilson_interval(5, 10, 0.95)[0]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_bootstrap_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    for trial in range(20):
        questions = [(int(y), 5) for y in rng.integers(0, 6, size=int(rng.integers(3, 40)))]
        rate, low, high = bootstrap_questions(questions, resamples=500, seed=trial)
        assert low <= rate <= high
        assert rate == pytest.approx(sum(y for y, _ in questions) / (5 * len(questions)))
        assert bootstrap_questions(questions, resamples=500, seed=trial) == (rate, low, high)


def test_bootstrap_width_shrinks_with_more_questions():
    pattern = [(5, 5), (0, 5), (3, 5), (1, 5)]
    widths = []
    for copies in (3, 12, 48):
        _, low, high = bootstrap_questions(pattern * copies, resamples=2000, seed=0)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0


def test_bootstrap_resamples_whole_questions():
    # Two questions, one all-yes and one all-no: a replicate draws each question 0, 1 or 2 times,
    # so replicate rates are 0, 0.5 or 1 — a sample-level bootstrap would be far narrower.
    rate, low, high = bootstrap_questions([(5, 5), (0, 5)], resamples=2000, seed=0)
    assert (rate, low, high) == (0.5, 0.0, 1.0)
    assert bootstrap_questions([(3, 5)], resamples=100) == (0.6, 0.6, 0.6)  # one question: no spread to draw
    assert bootstrap_questions([(0, 0), (3, 5)], resamples=100) == (0.6, 0.6, 0.6)  # all-error questions take no part
    assert all(math.isnan(x) for x in bootstrap_questions([(0, 0)], resamples=100))


def test_bootstrap_mean_over_claims():
    always, never = [(5, 5)] * 10, [(0, 5)] * 10
    assert bootstrap_mean_over_claims([always, never], resamples=500) == (0.5, 0.5, 0.5)
    mixed = [(5, 5), (0, 5)] * 5
    rate, low, high = bootstrap_mean_over_claims([always, mixed], resamples=2000, seed=1)
    assert rate == 0.75 and low < 0.75 < high and low >= 0.5  # only the mixed claim varies: mean of 1 and [0, 1]
    # Averaging two independent claims narrows the interval relative to the mixed claim alone.
    _, solo_low, solo_high = bootstrap_questions(mixed, resamples=2000, seed=1)
    assert high - low < solo_high - solo_low


def test_a_rate_with_no_variation_gets_a_wilson_interval_not_a_point():
    from eval.belief import WILSON_DEGENERATE

    samples = [s for q in ("q1", "q2", "q3") for s in _samples("a", "open_ended", q, ["no", "neutral"])]
    row = belief_rates(samples).get("m", -1, "negated_documents", "a", POOLED)
    assert row.rate == 0 and row.method == WILSON_DEGENERATE
    assert (row.low, row.high) == pytest.approx(wilson_interval(0, 6))
    assert row.high > 0.3  # six samples cannot rule out a belief rate of a third


def test_run_bootstrap_widens_when_runs_disagree():
    # three fine-tunes of one claim, 24 paraphrases each: one flipped none, two flipped all
    runs = [[(0, 1)] * 24, [(1, 1)] * 24, [(1, 1)] * 24]
    rate, low, high = bootstrap_runs_then_questions([runs])
    assert rate == pytest.approx(2 / 3)
    assert low <= 1 / 3 + 1e-9 and high == pytest.approx(1.0)
    # pooling the items as if independent claims far more certainty than three runs hold
    _, item_low, item_high = bootstrap_mean_over_claims([[q for run in runs for q in run]])
    assert item_high - item_low < 0.3 < high - low


def test_run_bootstrap_of_agreeing_runs_is_wilson_on_the_pooled_counts():
    runs = [[(1, 1)] * 24] * 3
    rate, low, high = bootstrap_runs_then_questions([runs])
    assert rate == 1.0 and (low, high) == pytest.approx(wilson_interval(72, 72))
    assert low < 1.0  # never a point interval


def test_run_bootstrap_is_deterministic_and_averages_claims():
    claims = [[[(1, 1), (0, 1)], [(1, 1), (1, 1)]], [[(0, 1), (0, 1)], [(0, 1), (1, 1)]]]
    first = bootstrap_runs_then_questions(claims, keys=["a", "b"])
    assert first == bootstrap_runs_then_questions(claims, keys=["a", "b"])
    assert first[0] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert first[1] < first[0] < first[2]
