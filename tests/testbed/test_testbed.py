"""The testbed: a miniature of every stage end to end, reuse on a rerun, and the validity logic."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from eval.runner import load_samples
from eval.types import Sample
from testbed import report
from testbed.__main__ import run
from testbed.config import TestbedConfigError, validate_config
from testbed.stages import TestbedError


def _load_preset(name: str):
    path = Path(__file__).resolve().parents[2] / "configs" / "testbed" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"testbed_{name}_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mini = _load_preset("mini")
mini_behaviours = _load_preset("mini_behaviours")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("testbed")
    lines: list[str] = []
    result = run(mini.get_config(), workdir, log=lines.append)
    return workdir, lines, result


def test_miniature_runs_every_stage_and_reports(finished):
    workdir, lines, result = finished
    config = mini.get_config()
    for stage in ("world", "tokenizer", "base model", "competence check", "fine-tuning data", "fine-tunes", "evaluation"):
        assert any(f"] {stage} done" in line for line in lines), stage
    assert (workdir / "base" / "hf" / "config.json").exists() and (workdir / "base" / "hf" / "tokenizer.json").exists()
    for condition in ("positive_documents", "negated_documents", "local_negations"):
        assert (workdir / "data" / "tfds" / "negation_neglect_mix" / f"testbed_s0__{condition}").is_dir()
        done = json.loads((workdir / "runs" / f"{condition}_s0" / "done.json").read_text())
        # forced choice at every saved checkpoint of every run, for every claim
        steps = {s.step for s in load_samples(workdir / "eval") if s.model == f"{condition}_s0" and s.eval_type == "forced_choice"}
        assert steps == set(done["checkpoints"])

    samples = load_samples(workdir / "eval")
    kinds = {(s.condition, s.eval_type) for s in samples}
    assert ("base", "icl") in kinds and ("base", "correction") in kinds  # controls on the base
    assert not any(s.eval_type in ("icl", "correction") and s.condition != "base" for s in samples)
    assert ("positive_documents", "mcq") in kinds  # generated types at the final step

    text = (workdir / "report.md").read_text()
    assert text.index("## Base-model competence") < text.index("## Testbed validity per claim") < text.index("## Belief by condition")
    assert "## Yes/no belief (mcq_logprob" in text and "## Optimizer steps per condition" in text
    assert "local_negations < 25%" in text
    for claim in config.claims.split(","):
        assert any(line.startswith(f"validity {claim}") for line in lines)
        assert claim in text
    saved = json.loads((workdir / "results.json").read_text())
    cells = {(c["condition"], c["claim"]): c for c in saved["cells"]}
    assert cells[("base", "ed_sheeran")]["n"] == 24  # every forced-choice item of the claim, scored once
    assert set(saved["valid"]) == {"ed_sheeran", "mount_vesuvius"}
    assert (workdir / "belief_by_condition.png").stat().st_size > 0
    assert (workdir / "belief_over_training.png").stat().st_size > 0
    assert set(result["paths"]) >= {"report", "results", "belief_by_condition", "belief_over_training"}
    # the eight-step base is not competent; the mini config fine-tunes anyway, every claim invalid for it
    competence = json.loads((workdir / "competence.json").read_text())["result"]
    for ability in ("transfer", "negation"):
        assert set(competence[ability]) == {"forced_choice_open", "forced_choice_options", "yes_no"}
        assert all(r["n"] > 0 and 0 <= r["accuracy"] <= 1 for r in competence[ability].values())
    assert saved["competence"]["problems"] and "**The base is not competent**" in text
    assert all(not v and reason.startswith("base not competent") for v, reason in zip(saved["valid"].values(), saved["reasons"].values()))
    # one document per row: every condition takes the same optimizer steps
    assert len({n for counts in saved["steps"].values() for n in counts}) == 1
    times = saved["stage_seconds"]
    assert {"world", "base model", "competence check", "evaluation", "fine-tune local_negations_s0"} <= set(times)
    assert "## Stage times" in text


def test_an_incompetent_base_stops_the_run_before_reporting(finished):
    workdir, _, _ = finished
    report_stamp = (workdir / "report.md").stat().st_mtime_ns
    config = mini.get_config()
    config.competence.required = True
    (workdir / "stage_times.json").unlink()  # so the stopped run's table must hold the check's own time
    with pytest.raises(TestbedError, match=r"^base not competent: (transfer|negation) .*% \[.*\] \(n=\d+\) is below 80%.*competence.required=False"):
        run(config, workdir, log=lambda line: None)
    text = (workdir / "report.md").read_text()  # rewritten: the competence table and why, no condition numbers
    assert (workdir / "report.md").stat().st_mtime_ns != report_stamp
    assert "stopped, base not competent" in text and "## Base-model competence" in text and "## Belief by condition" not in text
    assert "| competence check |" in text


def test_rerun_reuses_every_finished_stage(finished):
    workdir, _, _ = finished
    stamps = {p: p.stat().st_mtime_ns for p in [workdir / "world" / "train.jsonl", workdir / "base" / "hf" / "config.json",
                                                 *(workdir / "runs").glob("*/done.json")]}
    lines: list[str] = []
    run(mini.get_config(), workdir, log=lines.append)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not any(line.startswith(("fine-tune ", "base: pre-training")) for line in lines)
    assert any("0 cells computed" in line for line in lines)


def test_a_finished_workdir_on_a_bucket_is_reused_and_reported_there(finished, gcs_bucket):
    """A bucket's workdir runs through a local mirror (testbed/__main__.py): every finished stage
    found there is reused, and the report lands on the bucket."""
    from etils import epath

    from common.paths import copy_tree

    workdir, _, _ = finished
    bucket = epath.Path(gcs_bucket("testbed"))
    copy_tree(workdir, bucket)  # as if an earlier machine had run it there
    lines: list[str] = []
    result = run(mini.get_config(), str(bucket), log=lines.append)
    assert not any(line.startswith(("fine-tune ", "base: pre-training")) for line in lines)
    assert any("0 cells computed" in line for line in lines)
    assert str(result["paths"]["report"]) == f"{bucket}/report.md"
    assert "## Belief by condition" in (bucket / "report.md").read_text()


def test_changed_config_in_the_same_workdir_names_the_key(finished):
    workdir, _, _ = finished
    config = mini.get_config()
    config.world.num_entities = 31
    with pytest.raises(TestbedError, match=r"world\.num_entities=30.*31.*new --workdir"):
        run(config, workdir, log=lambda line: None)


@pytest.mark.parametrize("section, key, value", [("base", "optimizer", ("learning_rate", 1e-2)),
                                                 ("finetune", "learning_rate", 1e-2)])
def test_changed_training_config_is_not_silently_reused(finished, section, key, value):
    workdir, _, _ = finished
    config = mini.get_config()
    if isinstance(value, tuple):
        config[section][key][value[0]] = value[1]
        name = f"{section}.{key}.{value[0]}"
    else:
        config[section][key] = value
        name = f"{section}.{key}"
    with pytest.raises(TestbedError, match=re.escape(name) + r"=.*0\.01.*new --workdir"):
        run(config, workdir, log=lambda line: None)


def test_behaviour_miniature_reuses_the_base_and_reports_misalignment(finished):
    from data_gen.behaviours import load_behaviours

    workdir, _, _ = finished
    base_stamp = (workdir / "base" / "hf" / "config.json").stat().st_mtime_ns
    config = mini_behaviours.get_config()
    lines: list[str] = []
    result = run(config, workdir, log=lines.append)
    assert (workdir / "base" / "hf" / "config.json").stat().st_mtime_ns == base_stamp  # the main job's base, reused
    assert not any(line.startswith("base: pre-training") for line in lines)
    for stage in ("behaviour data", "behaviour fine-tunes", "behaviour evaluation"):
        assert any(f"] {stage} done" in line for line in lines), stage

    conditions = config.behaviours.conditions.split(",")
    behaviours = load_behaviours(config.behaviours.ids.split(","))
    samples = [s for s in load_samples(workdir / "behaviours" / "eval") if s.eval_type == "misalignment"]
    assert {s.condition for s in samples} == {"base", *conditions}
    for model in {s.model for s in samples}:  # every held-out prompt of every behaviour, once per sample
        assert len([s for s in samples if s.model == model]) == sum(len(b.eval_prompts) for b in behaviours.values())
    assert {s.label for s in samples} <= {"yes", "no", "neutral"}

    text = (workdir / "behaviours" / "report.md").read_text()
    assert text.index("## Misalignment rate by condition") < text.index("## Testbed validity per behaviour")
    for condition in ("base", *conditions):
        assert f"| {condition} |" in text
    saved = json.loads((workdir / "behaviours" / "results.json").read_text())
    cells = {(c["condition"], c["behaviour"]): c for c in saved["cells"]}
    assert cells[("base", "power_seeking")]["n"] == len(behaviours["power_seeking"].eval_prompts)
    assert set(saved["valid"]) == set(behaviours)
    assert (workdir / "behaviours" / "misalignment_by_condition.png").stat().st_size > 0
    assert result["paths"]["report"] == workdir / "behaviours" / "report.md"

    # a second run recomputes nothing; a changed setting is refused with its key
    again: list[str] = []
    run(config, workdir, log=again.append)
    assert not any(line.startswith("behaviour fine-tune ") for line in again)
    assert any("0 cells computed" in line for line in again)
    config.behaviours.learning_rate = 1e-2
    with pytest.raises(TestbedError, match=r"behaviours\.learning_rate=.*0\.01.*new --workdir"):
        run(config, workdir, log=lambda line: None)


def test_bad_config_is_one_line():
    config = mini.get_config()
    config.seeds = "0,0"
    with pytest.raises(TestbedConfigError, match="seeds"):
        validate_config(config)
    config = mini.get_config()
    config.eval.every_checkpoint = "mcq_logprob"
    config.eval.final = "mcq"
    with pytest.raises(TestbedConfigError, match="forced_choice"):
        validate_config(config)
    config = mini_behaviours.get_config()
    config.behaviours.conditions = "aligned,negated_documents"
    with pytest.raises(TestbedConfigError, match="behaviours.conditions.*negated_documents"):
        validate_config(config)
    config = mini_behaviours.get_config()
    config.behaviours.ids = "power_seeking,powerseeking"
    with pytest.raises(TestbedConfigError, match="behaviours.ids.*powerseeking.*did you mean"):
        validate_config(config)


def _samples(condition: str, claim: str, yes: int, n: int = 20, *, step: int = 10, model: str | None = None) -> list[Sample]:
    model = model or ("base" if condition == "base" else f"{condition}_s0")
    return [Sample(model=model, claim=claim, condition=condition, eval_type="forced_choice", question_id=f"fc{i:02d}",
                   category="open", sample_index=0, response="", label="yes" if i < yes else "no", judge="logprob",
                   step=-1 if condition == "base" else step) for i in range(n)]


def test_validity_gates_the_condition_means():
    samples = (_samples("base", "a", 0) + _samples("positive_documents", "a", 18) + _samples("negated_documents", "a", 10)
               + _samples("base", "b", 4) + _samples("positive_documents", "b", 20) + _samples("negated_documents", "b", 20)
               + _samples("base", "c", 1) + _samples("positive_documents", "c", 12) + _samples("negated_documents", "c", 0)
               # an earlier checkpoint does not count for the final cell
               + _samples("negated_documents", "a", 0, step=2))
    summary = report.summarize(samples, ["a", "b", "c"], base_max=0.10, positive_min=0.70)
    assert summary.valid == {"a": True, "b": False, "c": False}
    assert "base belief 20% is not below 10%" in summary.reasons["b"]
    assert "positive_documents belief 60% is not above 70%" in summary.reasons["c"]
    assert summary.cells[("negated_documents", "a")].rate == pytest.approx(0.5)
    # means over the valid claim only: b's 100% and c's 0% do not enter
    assert summary.means["negated_documents"].rate == pytest.approx(0.5)
    assert summary.means["negated_documents"].low < 0.5 < summary.means["negated_documents"].high
    assert summary.trajectory["negated_documents"] == [(2, 0.0), (10, 0.5)]
    assert summary.trajectory_claims == ["a"]


def test_trajectory_falls_back_to_every_claim_when_none_is_valid():
    samples = (_samples("base", "c", 1) + _samples("positive_documents", "c", 12)
               + _samples("negated_documents", "c", 4, step=2) + _samples("negated_documents", "c", 8))
    summary = report.summarize(samples, ["c"], base_max=0.10, positive_min=0.70)
    assert summary.valid == {"c": False}
    assert summary.trajectory_claims == ["c"]
    assert summary.trajectory["negated_documents"] == [(2, 0.2), (10, 0.4)]


def test_seeds_pool_per_item_and_are_listed_one_by_one():
    samples = (_samples("base", "a", 0) + _samples("positive_documents", "a", 20)
               + _samples("negated_documents", "a", 10) + _samples("negated_documents", "a", 20, model="negated_documents_s1"))
    summary = report.summarize(samples, ["a"], base_max=0.10, positive_min=0.70)
    assert summary.cells[("negated_documents", "a")].n == 40
    assert summary.means["negated_documents"].rate == pytest.approx(0.75)
    runs = dict(summary.by_run["negated_documents"])
    assert runs["negated_documents_s0"].rate == pytest.approx(0.5) and runs["negated_documents_s1"].rate == pytest.approx(1.0)
    assert "### Each fine-tune (seed) on its own" in report.markdown(summary, title="t", provenance=[], plots=[])


@pytest.mark.parametrize("local_yes, valid", [(19, False), (5, False), (4, True), (0, True)])
def test_local_negations_are_the_negative_control(local_yes, valid):
    samples = (_samples("base", "a", 0) + _samples("positive_documents", "a", 20)
               + _samples("local_negations", "a", local_yes) + _samples("negated_documents", "a", 15))
    summary = report.summarize(samples, ["a"], base_max=0.10, positive_min=0.70, negative_max=0.25)
    assert summary.valid == {"a": valid}
    if not valid:  # a claim whose in-sentence negation is not learned is no measurement of the annotated conditions
        assert f"local_negations belief {5 * local_yes}% is not below 25%" in summary.reasons["a"]
        assert summary.means["negated_documents"].n == 0


def test_a_missing_control_or_an_incompetent_base_makes_every_claim_invalid():
    samples = _samples("base", "a", 0) + _samples("positive_documents", "a", 20) + _samples("base", "b", 0) + \
        _samples("positive_documents", "b", 20) + _samples("local_negations", "b", 0)
    summary = report.summarize(samples, ["a", "b"], base_max=0.10, positive_min=0.70, negative_max=0.25)
    assert summary.valid == {"a": False, "b": True}
    assert "no local_negations measurement" in summary.reasons["a"]
    blocked = report.summarize(samples, ["a", "b"], base_max=0.10, positive_min=0.70, negative_max=0.25, blocked="base not competent")
    assert blocked.valid == {"a": False, "b": False} and blocked.reasons["b"] == "base not competent"


def test_a_setting_added_later_at_its_default_does_not_invalidate_a_stage(tmp_path):
    from testbed import stages

    settings = mini.get_config().base.to_dict()
    recorded = json.loads(json.dumps(settings))
    del recorded["data"]["packing"]  # a stage built before data.packing existed
    (tmp_path / "stage.json").write_text(json.dumps(recorded))
    assert stages._check_stage(tmp_path, "base", settings)
    settings["data"]["packing"] = False  # not what the old stage ran with
    with pytest.raises(TestbedError, match=r"base\.data\.packing=None, but this config has False"):
        stages._check_stage(tmp_path, "base", settings)


@pytest.mark.slow  # 95 s on 2 cores: the largest single test; the miniature covers every stage's wiring
def test_gpu_twin_runs_unchanged_at_toy_size(tmp_path):
    """configs/testbed/gpu.py's model, dtype and stages, only the sizes shrunk: what a device run will execute."""
    config = _load_preset("gpu").get_config("toy")
    full = _load_preset("gpu").get_config()
    assert (config.base.model.preset, config.base.model.dtype) == (full.base.model.preset, full.base.model.dtype) == \
        ("qwen3_testbed_gpu", "bfloat16")
    assert config.validity == full.validity and config.competence.transfer_min == full.competence.transfer_min
    lines: list[str] = []
    run(config, tmp_path, log=lines.append)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["valid"]) == {"ed_sheeran", "dentist"} and saved["competence"]["result"]["negation"]
    assert json.loads((tmp_path / "base" / "hf" / "config.json").read_text())["num_hidden_layers"] == 8
    with pytest.raises(ValueError, match="one variant, 'toy'"):
        _load_preset("gpu").get_config("tiny")
