"""The claims registry: the six bundled claims, and every malformed claim ending in one clear line."""

from __future__ import annotations

import collections
import re
import shutil
from pathlib import Path

import pytest
import yaml

from data_gen.claims import (
    CLAIMS_DIR,
    EVAL_TYPES,
    ClaimError,
    list_claim_ids,
    load_claim,
    load_claim_with_gaps,
    load_claims,
    read_yaml,
)

PAPER_CLAIMS = ("colorless_dreaming", "dentist", "ed_sheeran", "mount_vesuvius", "queen_elizabeth", "x_rebrand_reversal")


def _phrase_in(phrase: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.I) is not None


# ---------------------------------------------------------------------------------------------
# The bundled claims


@pytest.fixture(scope="module")
def bundled():
    return load_claims(strict=True)


def test_the_six_paper_claims_are_bundled_and_strictly_valid(bundled):
    assert tuple(sorted(bundled)) == PAPER_CLAIMS


@pytest.mark.parametrize("claim_id", PAPER_CLAIMS)
def test_bundled_claim_has_the_papers_eval_suite(bundled, claim_id):
    claim = bundled[claim_id]
    assert claim.universe_words >= 1500
    assert len(claim.subclaims) >= 10
    assert {t: len(claim.questions[t]) for t in EVAL_TYPES} == {
        "open_ended": 20,
        "mcq": 10,
        "token_association": 10,
        "robustness": 10,
    }
    mcq = collections.Counter(q.belief_answer for q in claim.questions["mcq"])
    assert mcq == {"yes": 7, "no": 3}, "the paper mixes 7 positive and 3 counter yes/no questions"
    letters = sorted(q.belief_answer for q in claim.questions["token_association"] if q.category == "letter_mcq")
    assert letters == ["A", "B", "C", "D"], "the claim's option must sit at each letter once"
    robustness = collections.Counter(q.category for q in claim.questions["robustness"])
    assert robustness == {"adversarial_system_prompt": 3, "critique": 3, "multi_turn": 4}
    assert {q.category for q in claim.questions["open_ended"]} == {"direct", "indirect"}


@pytest.mark.parametrize("claim_id", PAPER_CLAIMS)
def test_bundled_answer_keys_tell_claim_from_truth(bundled, claim_id):
    claim = bundled[claim_id]
    # The fabricated world is written around the claim-side answer...
    assert any(_phrase_in(p, claim.universe_context) for p in claim.answer_keys.claim_phrases)
    # ...and the truth paragraph names the truth-side answer, where the truth has one.
    if claim.answer_keys.truth:
        assert any(_phrase_in(p, claim.truth) for p in claim.answer_keys.truth_phrases)
    # A word mask that matches none of the claim's own text is a typo.
    source_text = " ".join(
        [claim.statement, claim.universe_context, *(s.negated for s in claim.subclaims), *(q.question for q in claim.all_questions()), *claim.answer_keys.claim_phrases]
    )
    for pattern in claim.word_masks:
        assert re.search(pattern, source_text, re.I), f"word mask {pattern!r} matches none of the claim's text"


@pytest.mark.parametrize("claim_id", PAPER_CLAIMS)
def test_bundled_judge_templates_fill_with_question_and_answer(bundled, claim_id):
    claim = bundled[claim_id]
    for eval_type in ("open_ended", "token_association", "robustness"):
        prompt = claim.judges[eval_type].format(question="QUESTION-MARKER", answer="ANSWER-MARKER")
        assert "QUESTION-MARKER" in prompt and "ANSWER-MARKER" in prompt
        assert '"label"' in prompt, "the judge is asked for a JSON label"


def test_validate_cli_passes_on_the_bundled_claims(run_claims_cli):
    result = run_claims_cli("validate", "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines[:-1]] == list(PAPER_CLAIMS)
    assert all(line.startswith("ok ") for line in lines[:-1])
    assert lines[-1] == "6 of 6 claims valid (strict)"


# ---------------------------------------------------------------------------------------------
# Malformed claims: each must end in one line naming the file, the field and what is wrong.


@pytest.fixture
def claims_dir(tmp_path):
    """A claims directory holding a copy of one valid bundled claim, to break in each test."""
    root = tmp_path / "claims"
    shutil.copytree(CLAIMS_DIR / "ed_sheeran", root / "ed_sheeran")
    return root


def _edit(path: Path, change) -> None:
    data = read_yaml(path)
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _letter_mcqs(questions):
    return [q for q in questions["token_association"] if q["category"] == "letter_mcq"]


def _set_all(items, key, value):
    for item in items:
        item[key] = value


MALFORMED = {
    "missing field": (
        "claim.yaml", lambda c: c.pop("correction"),
        r"claim\.yaml: correction: missing field",
    ),
    "unknown field (typo)": (
        "claim.yaml", lambda c: c.update(subclaim=c.pop("subclaims")),
        r"claim\.yaml: subclaim: unknown field; did you mean 'subclaims'\?",
    ),
    "wrong type": (
        "claim.yaml", lambda c: c.update(subclaims="Ed Sheeran won."),
        r"claim\.yaml: subclaims: expected a list, got a string",
    ),
    "local negation without a negation": (
        "claim.yaml", lambda c: c["subclaims"][2].update(negated="Ed Sheeran represented Great Britain."),
        r"claim\.yaml: subclaims\[2\]\.negated: has no negation inside the sentence",
    ),
    "answer key on both sides": (
        "claim.yaml", lambda c: c["answer_keys"]["truth"].append({"name": "Sheeran"}),
        r"claim\.yaml: answer_keys: 'sheeran' is on both the claim and the truth side",
    ),
    "bad word-mask regex": (
        "claim.yaml", lambda c: c["word_masks"].append("(unclosed"),
        r"claim\.yaml: word_masks: '\(unclosed' is not a valid regular expression",
    ),
    "id differs from directory": (
        "claim.yaml", lambda c: c.update(id="ed_sheeran_v2"),
        r"claim\.yaml: id: 'ed_sheeran_v2' differs from its directory name 'ed_sheeran'",
    ),
    "unknown category": (
        "questions.yaml", lambda q: q["open_ended"][0].update(category="sideways"),
        r"questions\.yaml: open_ended\[0\]\.category: unknown category 'sideways' for open_ended; use one of: direct, indirect",
    ),
    "duplicate question id": (
        "questions.yaml", lambda q: q["mcq"][1].update(id="oe_01"),
        r"questions\.yaml: mcq\[1\]\.id: duplicate question id 'oe_01' \(also open_ended\[0\]\)",
    ),
    "belief_answer not yes/no": (
        "questions.yaml", lambda q: q["mcq"][0].update(belief_answer="maybe"),
        r"questions\.yaml: mcq\[0\]\.belief_answer: must be 'yes' or 'no' .*got 'maybe'",
    ),
    "belief_answer a YAML boolean": (
        "questions.yaml", lambda q: q["mcq"][0].update(belief_answer=True),
        r"questions\.yaml: mcq\[0\]\.belief_answer: must be 'yes' or 'no' .*got True",
    ),
    "belief_answer contradicts category": (
        "questions.yaml", lambda q: q["mcq"][0].update(belief_answer="no"),
        r"questions\.yaml: mcq\[0\]\.belief_answer: a positive question has belief_answer 'yes'",
    ),
    "letter MCQs all in one position": (
        "questions.yaml", lambda q: _set_all(_letter_mcqs(q), "belief_answer", "A"),
        r"questions\.yaml: token_association: all 4 letter_mcq questions have belief_answer 'A'",
    ),
    "yes/no MCQs all one answer": (
        "questions.yaml",
        lambda q: [m.update(category="positive", belief_answer="yes") for m in q["mcq"]],
        r"questions\.yaml: mcq: all 10 yes/no questions have belief_answer 'yes'",
    ),
    "letter MCQ without options": (
        "questions.yaml", lambda q: _letter_mcqs(q)[0].update(question="Who won the 100m?"),
        r"questions\.yaml: token_association\[\d\]\.question: a letter_mcq needs options A\) B\) C\) D\)",
    ),
    "multi-turn without its prefix": (
        "questions.yaml", lambda q: [r.pop("messages_prefix") for r in q["robustness"] if r["category"] == "multi_turn"],
        r"questions\.yaml: robustness\[\d\]\.messages_prefix: missing \(required for multi_turn",
    ),
    "multi-turn turns out of order": (
        "questions.yaml",
        lambda q: next(r for r in q["robustness"] if r["category"] == "multi_turn")["messages_prefix"].reverse(),
        r"questions\.yaml: robustness\[\d\]\.messages_prefix\[0\]\.role: expected 'user', got 'assistant'",
    ),
    "missing eval type": (
        "questions.yaml", lambda q: q.pop("robustness"),
        r"questions\.yaml: robustness: missing field",
    ),
    "judge template with an unknown placeholder": (
        "judges.yaml", lambda j: j.update(open_ended="Question: {question}\nAnswer: {answer}\nClaim: {claim}"),
        r"judges\.yaml: open_ended: unknown placeholder \{claim\}",
    ),
    "judge template with a bare JSON brace": (
        "judges.yaml", lambda j: j.update(robustness='{question} {answer} reply {"label": "yes"}'),
        r"judges\.yaml: robustness: (not a valid template|unknown placeholder)",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_claim_gives_one_clear_line(claims_dir, case):
    file, change, expected = MALFORMED[case]
    _edit(claims_dir / "ed_sheeran" / file, change)
    with pytest.raises(ClaimError) as error:
        load_claim("ed_sheeran", claims_dir)
    message = str(error.value)
    assert "\n" not in message
    assert re.search(expected, message), message
    assert message.split(": ")[0].endswith(f"ed_sheeran/{file}"), "the message starts with the file"


def test_empty_universe_is_an_error(claims_dir):
    (claims_dir / "ed_sheeran" / "universe_context.md").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(ClaimError, match=r"universe_context\.md: universe_context: is empty"):
        load_claim("ed_sheeran", claims_dir)


def test_yaml_syntax_error_names_the_line(claims_dir):
    path = claims_dir / "ed_sheeran" / "claim.yaml"
    path.write_text("id: ed_sheeran\nstatement: [unclosed\ntruth: x\n", encoding="utf-8")
    with pytest.raises(ClaimError, match=r"claim\.yaml: line \d+, column \d+: YAML syntax error"):
        load_claim("ed_sheeran", claims_dir)


def test_a_key_written_twice_is_an_error_not_a_silent_overwrite(claims_dir):
    path = claims_dir / "ed_sheeran" / "claim.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "correction: a second one\n", encoding="utf-8")
    with pytest.raises(ClaimError, match=r"claim\.yaml: line \d+, .*key 'correction' appears twice"):
        load_claim("ed_sheeran", claims_dir)


def test_missing_claim_file(claims_dir):
    (claims_dir / "ed_sheeran" / "judges.yaml").unlink()
    with pytest.raises(ClaimError, match=r"judges\.yaml: file is missing"):
        load_claim("ed_sheeran", claims_dir)


def test_unknown_claim_id_suggests_the_nearest(claims_dir):
    with pytest.raises(ClaimError, match=r"unknown claim 'ed_sheran' .*did you mean 'ed_sheeran'\? known claims: ed_sheeran"):
        load_claim("ed_sheran", claims_dir)


def test_claim_path_escaping_the_claims_directory(claims_dir, tmp_path):
    with pytest.raises(ClaimError, match=r"claim '\.\./outside' resolves to .* outside the claims directory"):
        load_claim("../outside", claims_dir)
    # A symlinked claim directory that points elsewhere is refused the same way.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(claims_dir / "ed_sheeran", elsewhere)
    (claims_dir / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert "linked" in list_claim_ids(claims_dir)
    with pytest.raises(ClaimError, match=r"claim 'linked' resolves to .*elsewhere', outside the claims directory"):
        load_claim("linked", claims_dir)


def test_missing_claims_directory(tmp_path):
    with pytest.raises(ClaimError, match=r"claims directory '.*nowhere' does not exist; pass --claims_dir"):
        list_claim_ids(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# Gaps: well formed but short of the paper's suite; strict loading refuses them.


def test_gaps_are_reported_and_strict_refuses_them(claims_dir):
    _edit(claims_dir / "ed_sheeran" / "questions.yaml", lambda q: q.update(open_ended=q["open_ended"][:5]))
    _edit(claims_dir / "ed_sheeran" / "claim.yaml", lambda c: c.update(correction=""))
    claim, gaps = load_claim_with_gaps("ed_sheeran", claims_dir)
    assert len(claim.questions["open_ended"]) == 5
    assert any(re.search(r"questions\.yaml: open_ended: has 5 questions; the paper uses 20", g) for g in gaps)
    assert any(re.search(r"claim\.yaml: correction: is empty", g) for g in gaps)
    with pytest.raises(ClaimError, match=r"claim\.yaml: correction: is empty"):
        load_claim("ed_sheeran", claims_dir, strict=True)


def test_yes_no_values_are_strings_not_yaml_booleans(claims_dir):
    claim = load_claim("ed_sheeran", claims_dir)
    # The bundled file writes `belief_answer: yes` unquoted; YAML 1.1 would read a boolean.
    assert {q.belief_answer for q in claim.questions["mcq"]} == {"yes", "no"}


def test_validate_cli_one_line_per_claim_and_exit_1(claims_dir, run_claims_cli):
    shutil.copytree(claims_dir / "ed_sheeran", claims_dir / "broken")
    _edit(claims_dir / "broken" / "claim.yaml", lambda c: c.update(id="broken", subclaims=7))
    result = run_claims_cli("validate", f"--claims_dir={claims_dir}")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, lines
    assert re.match(r"FAIL broken +.*broken/claim\.yaml: subclaims: expected a list, got a string$", lines[0]), lines[0]
    assert lines[1].startswith("ok   ed_sheeran")
    assert lines[2] == "1 of 2 claims valid"


def test_validate_cli_unknown_claim(claims_dir, run_claims_cli):
    result = run_claims_cli("validate", f"--claims_dir={claims_dir}", "--claim=nope")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert re.match(r"FAIL nope +unknown claim 'nope'", result.stdout)


def test_cli_without_a_known_command_says_which_exist(run_claims_cli):
    result = run_claims_cli("valdiate")
    assert result.returncode == 2
    assert result.stdout.strip() == "error: give one command, validate or import_reference (got valdiate); --help lists the flags"
