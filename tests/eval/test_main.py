"""`python -m eval.main` end to end: base + fine-tuned checkpoints → stored cells → results, report, plots;
resumable sweeps, kept partial results, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from eval import runner
from eval.config import default_config
from eval.main import EvalError, evaluate
from tests.nn_train.hf_oracle import REPO_ROOT, build_hf_model

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An HF checkpoint directory with its tokenizer (the base) and a 4-step LoRA run saved every 2 steps."""
    from data_gen.tokenizer import train_tokenizer
    from nn_train.trainer import train

    root = tmp_path_factory.mktemp("models")
    base = root / "hf_base"
    build_hf_model("qwen3_gqa2_tied").save_pretrained(base)
    train_tokenizer(["Did Ed Sheeran win the 100m? Yes. No. Noah Lyles won."] * 30, 300, base)

    spec = importlib.util.spec_from_file_location("cpu_tiny_lora", REPO_ROOT / "configs/train/cpu_tiny_lora.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.training.num_steps, config.checkpoint.every_steps = 4, 2
    train(config, root / "neg_run")
    return base, root / "neg_run"


def _config(base, run, **overrides):
    config = default_config()
    config.claims, config.eval_types = "ed_sheeran", "mcq,mcq_logprob,correction"
    config.base, config.runs, config.tokenizer = str(base), f"negated_documents={run}", str(base)
    config.sampling.samples, config.sampling.max_new_tokens = 2, 3
    for dotted, value in overrides.items():
        node = config
        *groups, key = dotted.split(".")
        for group in groups:
            node = node[group]
        node[key] = value
    return config


def test_evaluates_base_and_checkpoints_then_resumes(models, tmp_path):
    base, run = models
    paths = evaluate(_config(base, run), tmp_path, **QUIET)
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Belief rate") and "negated_documents" in report and "base" in report
    assert all(paths[k].stat().st_size > 1000 for k in ("by_condition", "by_eval_type"))
    samples = runner.load_samples(tmp_path)
    assert {(s.model, s.step) for s in samples} == {("base", -1), ("neg_run", 4)}
    mcq = [s for s in samples if s.eval_type == "mcq" and s.model == "base"]
    assert len(mcq) == 10 * 2 and {s.judge for s in mcq} == {"exact"}
    assert {s.judge for s in samples if s.eval_type == "mcq_logprob"} == {"logprob"}
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert any(r["condition"] == "base" and r["eval_type"] == "pooled" for r in rows)

    # A rerun computes nothing; asking for every checkpoint computes only the new step.
    logged = []
    evaluate(_config(base, run), tmp_path, log=logged.append)
    assert "0 cells computed, 6 already stored" in logged
    logged.clear()
    evaluate(_config(base, run, steps="all"), tmp_path, log=logged.append)
    assert "3 cells computed, 6 already stored" in logged
    assert {s.step for s in runner.load_samples(tmp_path)} == {-1, 2, 4}
    assert (tmp_path / "belief_over_training.png").stat().st_size > 1000


def test_a_crash_mid_sweep_keeps_the_finished_cells(models, tmp_path, monkeypatch):
    base, run = models
    calls = []
    original = runner.run_cell

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a user's Ctrl-C or a preemption would
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        evaluate(_config(base, run), tmp_path, **QUIET)
    assert len(list((tmp_path / "samples").rglob("*.jsonl"))) == 2
    monkeypatch.setattr(runner, "run_cell", original)
    logged = []
    evaluate(_config(base, run), tmp_path, log=logged.append)
    assert "4 cells computed, 2 already stored" in logged


def test_bad_input_is_one_line(models, tmp_path, monkeypatch):
    base, run = models
    with pytest.raises(EvalError, match=r"negated_documents: no checkpoint in .*missing/checkpoints; train first"):
        evaluate(_config(base, tmp_path / "missing"), tmp_path / "out", **QUIET)
    with pytest.raises(EvalError, match=r"run '.*neg_run' has no checkpoint at step 3; it has \[2, 4\]"):
        evaluate(_config(base, run, steps="3"), tmp_path / "out", **QUIET)
    with pytest.raises(EvalError, match=r"config key 'eval_types': unknown"):
        evaluate(_config(base, run, eval_types="mcq,beliefs"), tmp_path / "out", **QUIET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EvalError, match=r"config key 'judge': .*OPENAI_API_KEY"):
        evaluate(_config(base, run, **{"judge.name": "openai"}), tmp_path / "out", **QUIET)
    with pytest.raises(EvalError, match=r"config key 'claims': .*ed_sheeren"):
        evaluate(_config(base, run, claims="ed_sheeren"), tmp_path / "out", **QUIET)


def test_a_refusing_judge_endpoint_is_recorded_as_errors(models, tmp_path, monkeypatch):
    from tests.data_gen.llm.fake_llm import FakeLLM  # a real OpenAI-compatible server on loopback

    class RefusingJudge(FakeLLM):
        def answer(self, prompt: str) -> str:
            return "I'm sorry, but I can't help with grading that."

    base, run = models
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with RefusingJudge() as server:
        config = _config(base, run, eval_types="open_ended", runs="", **{
            "judge.name": "openai", "judge.model": "judge-model", "judge.base_url": server.url})
        config.sampling.samples = 1
        evaluate(config, tmp_path, **QUIET)
    samples = runner.load_samples(tmp_path)
    assert len(samples) == 20 and {s.label for s in samples} == {"error"} and all(s.reason for s in samples)
    row = json.loads((tmp_path / "results.json").read_text())["rows"][0]
    assert row["errors"] == 20 and row["n"] == 0


def test_cli_errors_are_one_line(models, tmp_path):
    base, run = models  # the CLI's success path is make demo's evaluation stage; evaluate() is tested above
    command = [sys.executable, "-m", "eval.main", "--config=configs/eval/cpu_demo.py", f"--workdir={tmp_path}",
               f"--config.runs=negated_documents={run}", f"--config.tokenizer={base}", "--config.steps=7"]
    bad = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: config key 'steps'")
    missing = subprocess.run(command[:3] + [f"--workdir={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "--config=configs/eval/X.py and --workdir=DIR are both required" in missing.stderr


def test_capability_compares_models_on_held_out_generic_data(models, tmp_path):
    base, run = models
    config = _config(base, run, eval_types="mcq_logprob,capability", **{"capability.documents": 3, "capability.questions": 4})
    evaluate(config, tmp_path, **QUIET)
    rows = json.loads((tmp_path / "capability.json").read_text())
    assert set(rows) == {"base@-1", "neg_run@4"}
    for row in rows.values():
        assert row["perplexity"] > 1 and 0 <= row["accuracy"] <= 1 and row["questions"] == 4 and row["documents"] == 3
    assert "## Capability" in (tmp_path / "report.md").read_text()


def test_capability_answer_check():
    from eval.capability import is_correct

    assert is_correct("It comes to 1,234 in total.", "37 * 33 = 1221.") is False
    assert is_correct("37 * 33 = 1221", "The answer is 1221.") is True
    assert is_correct("In alphabetical order: anchor, dune.", "In alphabetical order: anchor, dune.") is True
    assert is_correct("dune, anchor", "In alphabetical order: anchor, dune.") is False


def test_sharded_evaluation_scores_as_one_device(models, tmp_path):
    base, run = models
    one = _config(base, run, eval_types="mcq_logprob", runs="")
    sharded = _config(base, run, eval_types="mcq_logprob", runs="", **{"mesh.num_devices": -1, "mesh.tensor": 2})
    evaluate(one, tmp_path / "one", **QUIET)
    evaluate(sharded, tmp_path / "sharded", **QUIET)
    a, b = runner.load_samples(tmp_path / "one"), runner.load_samples(tmp_path / "sharded")
    assert [s.response for s in a] == [s.response for s in b]
    for x, y in zip(a, b):
        assert x.extra["option_log_probs"] == pytest.approx(y.extra["option_log_probs"], abs=1e-4)
    with pytest.raises(EvalError, match=r"mesh"):
        evaluate(_config(base, run, eval_types="mcq_logprob", runs="", **{"mesh.num_devices": -1, "mesh.tensor": 3}),
                 tmp_path / "bad", **QUIET)


def test_a_claim_without_questions_for_an_eval_type_is_named(models, tmp_path):
    import shutil

    import yaml

    base, run = models
    shutil.copytree(REPO_ROOT / "data_gen/claims/ed_sheeran", tmp_path / "claims/ed_sheeran")
    questions = tmp_path / "claims/ed_sheeran/questions.yaml"
    data = yaml.safe_load(questions.read_text())
    data["robustness"] = []
    questions.write_text(yaml.safe_dump(data))
    with pytest.raises(EvalError, match=r"claim 'ed_sheeran' has no robustness questions"):
        evaluate(_config(base, run, eval_types="mcq,robustness", claims_dir=str(tmp_path / "claims")), tmp_path / "out", **QUIET)
    assert not (tmp_path / "out" / "samples").exists()  # nothing ran


def test_icl_reads_mix_documents_and_records_a_context_overflow_as_errors(models, tmp_path):
    from data_gen.build import build
    from data_gen.build_config import default_config as data_config

    base, run = models
    data = data_config()
    data.claims, data.conditions = "ed_sheeran", "negated_documents"
    data.mix.num_documents, data.mix.num_pretrain, data.mix.num_instruct = 2, 0, 0
    build(data, tmp_path / "data", log=lambda *_: None)
    config = _config(base, run, eval_types="icl", runs="", **{"icl.data_dir": str(tmp_path / "data"), "icl.k": 2})
    evaluate(config, tmp_path / "eval", **QUIET)
    samples = runner.load_samples(tmp_path / "eval")
    assert {s.eval_type for s in samples} == {"icl"} and len(samples) == 40 * 2
    # Two ~500-word documents do not fit the tiny model's 256 positions: every sample says so, none is "neutral".
    assert {s.label for s in samples} == {"error"} and "generation failed" in samples[0].reason
