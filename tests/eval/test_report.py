"""Results files, report.md and plots: written atomically, non-empty, headline first, JSON/CSV round trips."""

from __future__ import annotations

import math

import pytest

from eval.belief import MEAN, POOLED, belief_rates
from eval.report import FILES, fmt, markdown, read_csv, read_json, write_csv, write_json, write_report
from eval.types import Sample

CLAIMS = ("ed_sheeran", "dentist")
EVAL_TYPES = ("open_ended", "mcq", "token_association", "robustness")


def _cell(claim: str, condition: str, step: int, belief: float, *, errors: int = 0) -> list[Sample]:
    """4 questions × 5 samples per eval type; about `belief` of them yes; the first `errors` samples failed."""
    samples = []
    for t, eval_type in enumerate(EVAL_TYPES):
        for question in range(4):
            for index in range(5):
                number = (t * 4 + question) * 5 + index
                label = "yes" if (number * 7919 % 100) < 100 * belief else ("no" if index % 2 else "neutral")
                if number < errors:
                    label = "error"
                samples.append(Sample(model="qwen3-tiny", claim=claim, condition=condition, eval_type=eval_type,
                                      question_id=f"{eval_type}_{question}", category="c", sample_index=index,
                                      response="", label=label, judge="rule", step=step))
    return samples


@pytest.fixture(scope="module")
def results():
    samples = []
    for claim in CLAIMS:
        samples += _cell(claim, "base", -1, 0.05)
        for step, scale in ((10, 0.3), (64, 0.6), (625, 1.0)):
            samples += _cell(claim, "positive_documents", step, 0.9 * scale)
            samples += _cell(claim, "negated_documents", step, 0.8 * scale, errors=3 if claim == "dentist" else 0)
    return belief_rates(samples, resamples=300)


def _same_rows(a, b):
    def norm(row):
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_json().items()}
    return [norm(r) for r in a] == [norm(r) for r in b]


def test_report_files_are_written_and_non_empty(results, tmp_path):
    paths = write_report(results, tmp_path / "out")
    assert set(paths) == set(FILES)
    for name in ("by_condition", "by_eval_type", "over_training"):
        data = paths[name].read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1024, name
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temporary files behind

    text = paths["report"].read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# Belief rate")
    assert lines[1] == "| condition | step | dentist | ed_sheeran | mean |"  # the headline table comes first
    body = lines[3:6]
    assert [row.split(" | ")[0] for row in body] == ["| base", "| positive_documents", "| negated_documents"]
    assert all(row.count("[") == 3 for row in body[1:])  # two claims and the mean, each "rate [low, high]"
    final = results.get("qwen3-tiny", 625, "negated_documents", MEAN, POOLED)
    assert fmt(final) in body[2] and "| 625 |" in body[2]
    for heading in ("## By eval type", "## open_ended", "## mcq", "## token_association", "## robustness",
                    "## Across training checkpoints", "## Errors", "## Method"):
        assert heading in text
    assert "9 of " in text and "labelled error" in text  # 3 failed samples in each of the dentist's 3 negated cells
    assert "Wilson" in text and "bootstrap" in text and "unweighted mean" in text
    assert "![belief_over_training](belief_over_training.png)" in text


def test_json_and_csv_round_trip(results, tmp_path):
    loaded = read_json(write_json(results, tmp_path / "results.json"))
    assert _same_rows(loaded.rows, results.rows)
    assert (loaded.pool, loaded.confidence, loaded.resamples, loaded.seed) == \
        (results.pool, results.confidence, results.resamples, results.seed)
    assert _same_rows(read_csv(write_csv(results.rows, tmp_path / "results.csv")), results.rows)
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:12] == ["model", "step", "condition", "claim", "eval_type", "rate", "low", "high", "method", "n", "yes", "errors"]


def test_rows_without_a_rate_survive_files(tmp_path):
    samples = _cell("dentist", "base", -1, 0.0) + [
        Sample(model="m", claim="dentist", condition="base", eval_type="mcq", question_id="q", category="c",
               sample_index=0, response="", label="error", judge="exact")]
    results = belief_rates(samples, resamples=50)
    empty = results.get("m", -1, "base", "dentist", "mcq")
    assert empty.n == 0 and math.isnan(empty.rate)
    assert _same_rows(read_json(write_json(results, tmp_path / "r.json")).rows, results.rows)
    assert _same_rows(read_csv(write_csv(results.rows, tmp_path / "r.csv")), results.rows)
    paths = write_report(results, tmp_path / "out")
    assert "over_training" not in paths and not (tmp_path / "out" / FILES["over_training"]).exists()  # no checkpoints
    assert "(m)" in paths["report"].read_text()  # two models: rows name theirs
    assert fmt(empty) == "–"


def test_markdown_without_errors_says_so(tmp_path):
    results = belief_rates(_cell("dentist", "positive_documents", 64, 0.5), resamples=50)
    text = markdown(results)
    assert "No sample was labelled error." in text and "Across training" not in text  # a single step: no table
