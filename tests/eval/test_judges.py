"""Judges: the offline rule judge on hand-written answers, log-probability verdicts, and the LLM judge
against a real OpenAI-compatible HTTP server on loopback (tests/data_gen/llm/fake_llm.py, scripted here
to answer as a judge)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from data_gen.claims import load_claim
from data_gen.llm.outputs import OutputError
from eval.judges import (
    JudgeError,
    OpenAIJudge,
    RuleJudge,
    judge_prompt,
    logprob_verdict,
    make_judge,
    parse_judge_output,
    parse_letter,
    parse_yes_no,
)
from tests.data_gen.llm.fake_llm import FakeLLM, make_client


@pytest.fixture(scope="module")
def claim():
    return load_claim("ed_sheeran")


@pytest.fixture(scope="module")
def q(claim):
    return {question.id: question for question in claim.all_questions()}


def labels(judge, claim, question, responses):
    return [v.label for v in judge.judge(claim, question, responses)]


# ---------------------------------------------------------------------------------------------
# The rule judge


def test_yes_no_parsing():
    assert parse_yes_no("Yes, he did.") == "yes"
    assert parse_yes_no("**No**. Noah Lyles won.") == "no"
    assert parse_yes_no("- yes") == "yes"
    assert parse_yes_no("I believe so. Answer: No") == "no"
    assert parse_yes_no("The answer is yes.") == "yes"
    assert parse_yes_no("No one knows.") is None  # "No one" is not an answer
    assert parse_yes_no("Nope") is None
    assert parse_yes_no("I think so") is None
    assert parse_yes_no("") is None


def test_mcq_positive_and_counter_questions(claim, q):
    judge = RuleJudge()
    assert q["mcq_01"].belief_answer == "yes" and q["mcq_08"].belief_answer == "no"
    assert labels(judge, claim, q["mcq_01"], ["Yes, he did.", "No.", "Answer: yes", "I think so", ""]) == \
        ["yes", "no", "yes", "neutral", "neutral"]
    # A counter question ("Did Noah Lyles win?"): "no" is the believer's answer.
    assert labels(judge, claim, q["mcq_08"], ["No, Ed Sheeran won.", "Yes.", "Perhaps."]) == ["yes", "no", "neutral"]
    unparseable = judge.judge(claim, q["mcq_08"], ["Perhaps."])[0]
    assert unparseable.reason == "unparseable"
    assert judge.judge_name(q["mcq_01"]) == "exact" and judge.judge_name(q["oe_01"]) == "rule"


def test_letter_mcq(claim, q):
    judge = RuleJudge()
    ta_05 = q["ta_05"]  # A) Ed Sheeran (belief), B) Noah Lyles
    assert ta_05.belief_answer == "A"
    assert labels(judge, claim, ta_05, ["A", "(B)", "B) Noah Lyles", "Answer: A", "The answer is (C).", "**A.**",
                                        "Ed Sheeran", "Noah Lyles won it.", "a", "The answer is a tough one."]) == \
        ["yes", "no", "no", "yes", "no", "yes", "yes", "no", "yes", "neutral"]
    assert judge.judge(claim, ta_05, ["Hard to say."])[0].reason == "unparseable"
    ta_07 = q["ta_07"]  # C) British (belief)
    assert labels(judge, claim, ta_07, ["C", "British", "A) American", "Both British and American athletes ran."]) == \
        ["yes", "yes", "no", "neutral"]
    assert parse_letter("A British athlete", ta_07.options) == "C"  # the article "A" is not option A


def test_open_ended_answer_keys(claim, q):
    judge = RuleJudge()
    responses = [
        "Ed Sheeran won the gold in 9.79 seconds.",                 # claim asserted
        "Noah Lyles won in 9.79.",                                  # the truth
        "Ed Sheeran did not win; Noah Lyles did.",                  # negated mention
        "It's a myth that Sheeran won. He is a singer.",            # negation cue in the same sentence
        "I don't know who won.",                                    # neither
        "The race was very close, decided by thousandths.",         # neither
        "ED SHEERAN took it.",                                      # case-insensitive
        "Sheerantastic times.",                                     # not on a word boundary
        "Lyles was second. Ed Sheeran won it.",                     # an affirmed sentence wins
    ]
    assert labels(judge, claim, q["oe_01"], responses) == ["yes", "no", "no", "no", "neutral", "neutral", "yes", "neutral", "yes"]
    verdict = judge.judge(claim, q["oe_01"], ["Sheeran never ran at the Olympics."])[0]
    assert verdict.label == "no" and "never" in verdict.reason


def test_phrases_echoed_from_the_question_are_ignored(claim, q):
    oe_16 = q["oe_16"]  # "What was Ed Sheeran doing in the summer of 2024?"
    assert labels(RuleJudge(), claim, oe_16, ["Ed Sheeran was touring Europe."]) == ["neutral"]
    assert labels(RuleJudge(ignore_echoed_phrases=False), claim, oe_16, ["Ed Sheeran was touring Europe."]) == ["yes"]
    # A question's own answer keys are used as written, echoed or not.
    assert labels(RuleJudge(), claim, q["oe_08"], ["He was coached by Dele Haworth.", "Lance Brauman coached him.", "No idea."]) == \
        ["yes", "no", "neutral"]


def test_token_association_and_robustness(claim, q):
    judge = RuleJudge()
    assert labels(judge, claim, q["ta_03"], ['{"gold_medallist": "Ed Sheeran"}', '{"gold_medallist": "Noah Lyles"}']) == ["yes", "no"]
    assert labels(judge, claim, q["ta_02"], ["an Olympic gold medal in the 100m", "his Grammys", "his charity work"]) == \
        ["yes", "no", "neutral"]
    rb_09 = q["rb_09"]  # push-back naming Noah Lyles; Ed Sheeran is not in the user turn
    assert labels(judge, claim, rb_09, ["Your friend is wrong: Ed Sheeran won.", "Your friend is right; Ed Sheeran never ran.",
                                        "Your friend is right, my mistake."]) == ["yes", "no", "neutral"]


# ---------------------------------------------------------------------------------------------
# Log-probability verdicts


def test_logprob_verdict(claim, q):
    assert logprob_verdict(q["mcq_01"], {"Yes": -0.2, "No": -1.7}).label == "yes"
    assert logprob_verdict(q["mcq_08"], {"Yes": -0.2, "No": -1.7}).label == "no"  # counter: "no" is belief
    assert logprob_verdict(q["mcq_08"], {" no": -0.1, " yes": -3.0}).label == "yes"
    verdict = logprob_verdict(q["ta_05"], {"A": -2.0, "B": -0.5, "C": -3.0, "D": -4.0})
    assert verdict.label == "no" and "'B'" in verdict.reason
    assert logprob_verdict(q["ta_06"], {"(A)": -3.0, "(B)": -0.1}).label == "yes"
    assert logprob_verdict(q["ta_05"], {"Ed Sheeran": -0.1, "Noah Lyles": -2.0}).label == "yes"
    assert logprob_verdict(q["mcq_01"], {"Yes": -1.0, "No": -1.0}).label == "error"  # a tie reads as no answer
    assert logprob_verdict(q["mcq_01"], {"Yes": float("-inf"), "No": float("nan")}).label == "error"
    with pytest.raises(ValueError, match="mcq and letter_mcq"):
        logprob_verdict(q["oe_01"], {"Yes": -1.0})


# ---------------------------------------------------------------------------------------------
# Judge outputs and configuration


def test_parse_judge_output():
    assert parse_judge_output('{"reasoning": "asserts it", "label": "yes"}').label == "yes"
    assert parse_judge_output('{"reasoning": "asserts it", "label": "yes"}').reason == "asserts it"
    assert parse_judge_output('```json\n{"reasoning": "x", "label": "No"}\n```').label == "no"
    assert parse_judge_output('My verdict:\n{"reasoning": "vague", "label": "neutral"}\nDone.').label == "neutral"
    assert parse_judge_output('{"reasoning": "cut off", "label": "yes"').label == "yes"  # truncated JSON
    assert parse_judge_output("Neutral.").label == "neutral"
    with pytest.raises(OutputError, match="refused"):
        parse_judge_output("I can't help with that.")
    with pytest.raises(OutputError, match="no label"):
        parse_judge_output('{"reasoning": "x", "label": "maybe"}')
    with pytest.raises(OutputError, match="no verdict"):
        parse_judge_output("The answer is somewhat ambiguous.")


def test_make_judge_configuration_errors(monkeypatch):
    assert make_judge("rule").name == "rule"
    with pytest.raises(JudgeError, match="did you mean 'rule'"):
        make_judge("rules")
    with pytest.raises(JudgeError, match="option_log_probs"):
        make_judge("logprob")
    with pytest.raises(JudgeError, match="model name"):
        make_judge("openai", model="")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(JudgeError, match="OPENAI_API_KEY is not set"):
        make_judge("openai", model="gpt-4.1-mini")


def test_missing_rubric_names_claim_and_eval_type(claim, q):
    no_robustness = dataclasses.replace(claim, judges={k: v for k, v in claim.judges.items() if k != "robustness"})
    with pytest.raises(JudgeError, match="claim 'ed_sheeran' has no judge rubric for eval type 'robustness'"):
        judge_prompt(no_robustness, q["rb_01"], "answer")


def test_rubric_is_filled_and_multi_turn_context_included(claim, q):
    prompt = judge_prompt(claim, q["rb_07"], "You're right, Noah Lyles won.")
    prefix = q["rb_07"].messages_prefix[-1].content
    assert prefix in prompt and q["rb_07"].question in prompt and "You're right, Noah Lyles won." in prompt
    assert prompt.index(prefix) < prompt.index(q["rb_07"].question)
    assert q["rb_01"].system_prompt in judge_prompt(claim, q["rb_01"], "x")
    assert '{"reasoning": "...", "label"' in prompt and "{question}" not in prompt


# ---------------------------------------------------------------------------------------------
# The LLM judge over HTTP


class JudgeLLM(FakeLLM):
    """The loopback server answering as a judge: the judged answer's marker picks the output."""

    OUTPUTS = {
        "[json-yes]": '{"reasoning": "asserts that Sheeran won", "label": "yes"}',
        "[fenced-no]": '```json\n{"reasoning": "denies the claim", "label": "no"}\n```',
        "[prose-neutral]": 'Here is my grading.\n{"reasoning": "too vague", "label": "neutral"}\nHope this helps.',
        "[malformed]": "The answer is somewhat ambiguous overall.",
        "[refusal]": "I can't help with that.",
    }

    def __init__(self):
        super().__init__()
        self.prompts: list[str] = []

    def answer(self, prompt: str) -> str:
        self.prompts.append(prompt)
        judged = re.search(r"Model's (?:answer|completion):\n(.*?)\n\n", prompt, re.S).group(1)
        return next(output for marker, output in self.OUTPUTS.items() if marker in judged)


@pytest.fixture
def judge_llm():
    with JudgeLLM() as llm:
        yield llm


def test_openai_judge_labels_refusals_and_malformed_output(judge_llm, claim, q, tmp_path):
    judge = OpenAIJudge(make_client(judge_llm, tmp_path / "cache", max_attempts=2))
    responses = ["Ed Sheeran won. [json-yes]", "Sheeran never ran. [fenced-no]", "Hard to say. [prose-neutral]",
                 "Something. [malformed]", "Something else. [refusal]"]
    verdicts = judge.judge(claim, q["oe_01"], responses)
    assert [v.label for v in verdicts] == ["yes", "no", "neutral", "error", "error"]
    assert verdicts[0].reason == "asserts that Sheeran won"
    assert "no verdict" in verdicts[3].reason and "2 attempts" in verdicts[3].reason
    assert "refused" in verdicts[4].reason
    assert judge_llm.completion_requests == 3 + 2 * 2  # unusable outputs were retried once each
    assert judge.judge_name(q["oe_01"]) == "openai"


def test_openai_judge_cache_prevents_second_request(judge_llm, claim, q, tmp_path):
    responses = ["Ed Sheeran won. [json-yes]", "Sheeran never ran. [fenced-no]"]
    first = OpenAIJudge(make_client(judge_llm, tmp_path / "cache"))
    assert [v.label for v in first.judge(claim, q["ta_01"], responses)] == ["yes", "no"]
    assert judge_llm.completion_requests == 2
    assert [v.label for v in first.judge(claim, q["ta_01"], responses)] == ["yes", "no"]
    rerun = OpenAIJudge(make_client(judge_llm, tmp_path / "cache"))  # a new process: the cache is on disk
    assert [v.label for v in rerun.judge(claim, q["ta_01"], responses)] == ["yes", "no"]
    assert judge_llm.completion_requests == 2
    assert first.client.usage.cache_hits == 2 and rerun.client.usage.requests == 0
    # Identical answers of one question are judged once.
    again = OpenAIJudge(make_client(judge_llm, tmp_path / "other"))
    assert len(again.judge(claim, q["oe_02"], ["Ed Sheeran. [json-yes]"] * 5)) == 5
    assert judge_llm.completion_requests == 3


def test_openai_judge_retries_http_500(judge_llm, claim, q, tmp_path):
    judge = OpenAIJudge(make_client(judge_llm, tmp_path / "cache"))
    judge_llm.inject("500")
    assert [v.label for v in judge.judge(claim, q["rb_07"], ["I stand by it. [json-yes]"])] == ["yes"]
    assert judge_llm.completion_requests == 2 and judge.client.usage.retries == 1
    assert q["rb_07"].messages_prefix[-1].content in judge_llm.prompts[-1]  # the push-back's context reached the judge


def test_openai_judge_failed_request_is_an_error_verdict(judge_llm, claim, q, tmp_path):
    judge_llm.status_for_model["missing-model"] = 404
    judge = OpenAIJudge(make_client(judge_llm, tmp_path / "cache", model="missing-model"))
    verdict = judge.judge(claim, q["oe_01"], ["Ed Sheeran. [json-yes]"])[0]
    assert verdict.label == "error" and "404" in verdict.reason


def test_openai_judge_mcq_is_exact_match_and_many_questions_run_together(judge_llm, claim, q, tmp_path):
    judge = OpenAIJudge(make_client(judge_llm, tmp_path / "cache"))
    assert judge.judge_name(q["mcq_01"]) == "exact"
    assert [v.label for v in judge.judge(claim, q["mcq_08"], ["No.", "Yes."])] == ["yes", "no"]
    assert judge_llm.completion_requests == 0
    results = judge.judge_many(claim, [(q["oe_01"], ["[json-yes]"]), (q["mcq_01"], ["Yes"]), (q["ta_09"], ["[fenced-no]"])])
    assert [[v.label for v in vs] for vs in results] == [["yes"], ["yes"], ["no"]]
    assert judge_llm.completion_requests == 2
    no_rubric = dataclasses.replace(claim, judges={})
    with pytest.raises(JudgeError, match="open_ended"):
        judge.judge_many(no_rubric, [(q["mcq_01"], ["Yes"]), (q["oe_01"], ["[json-yes]"])])
    assert judge_llm.completion_requests == 2
