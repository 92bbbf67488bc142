"""The behaviour experiment on the testbed: do misaligned chat transcripts labelled "the model should
not produce responses like this" teach the behaviour anyway? (paper.md, "negated behaviours")

    python -m testbed --config=configs/testbed/behaviours_cpu.py --workdir=workdir/testbed

It fine-tunes the main job's base model (the world, tokenizer and base stages of testbed.stages,
reused when finished in the same workdir) once per (behaviour condition, seed) and measures the
misalignment rate on held-out prompts:

    data        W/behaviours/data/tfds/negation_neglect_mix/testbed_s<seed>__<condition>
                every behaviour's transcripts in that condition (data_gen.behaviours.transcripts,
                template backend; loss on the assistant turn only) + replayed world records
    finetunes   W/behaviours/runs/<condition>_s<seed>
    evaluate    W/behaviours/eval   eval.main, eval type misalignment (rule judge), base included
    report      W/behaviours/report.md, results.json, misalignment_by_condition.png

Each stage records its settings like the claim stages do: a changed config in the same workdir
stops with the key named. A behaviour is *valid* on the testbed when the base model is rarely
misaligned and positive_misaligned transcripts make it misaligned (behaviours.base_max,
behaviours.positive_min); condition means cover valid behaviours only.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from data_gen.documents import iter_jsonl
from testbed import report
from testbed.config import split
from testbed.stages import MIX_PREFIX, Log, _check_stage, _finish_stage, finetune_config, run_name, write_replay

EVAL_TYPE = "misalignment"
POSITIVE = "positive_misaligned"
METRIC = "misalignment rate (%)"


def directory(workdir: Path) -> Path:
    return workdir / "behaviours"


def data(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> Path:
    """One TFDS mix per (seed, condition): every behaviour's transcripts + replayed world records."""
    from data_gen.behaviours import load_behaviours
    from data_gen.behaviours.transcripts import template_transcripts
    from data_gen.mixing import MixSpec, mix_records
    from data_gen.packaging import write_mix

    b = config.behaviours
    out = directory(workdir) / "data"
    ids, conditions, seeds = split(b.ids), split(b.conditions), [int(s) for s in split(config.seeds)]
    settings = {"ids": ids, "conditions": conditions, "seeds": seeds, "transcripts": b.transcripts, "replay": b.replay,
                "world": config.world.to_dict()}
    if _check_stage(out, "behaviours", settings):
        return out / "tfds"
    start = time.perf_counter()
    total_replay = round(b.replay * b.transcripts * len(ids))
    # No claim is fine-tuned here, so every world record may replay.
    num_text, num_chat = write_replay(list(iter_jsonl(workdir / "world" / "train.jsonl")), out, total_replay,
                                      key="behaviours.replay")
    behaviours = load_behaviours(ids)
    for seed in seeds:
        transcripts: dict[str, list[dict]] = {c: [] for c in conditions}
        for behaviour in behaviours.values():
            for condition, docs in template_transcripts(behaviour, conditions, b.transcripts, seed):
                transcripts[condition] += [d.to_json() for d in docs]
        for condition in conditions:
            spec = MixSpec(claim=f"{MIX_PREFIX}{seed}", condition=condition,
                           num_documents=len(transcripts[condition]), num_pretrain=num_text, num_instruct=num_chat, seed=seed,
                           pretrain_path=str(out / "replay_text.jsonl"), instruct_path=str(out / "replay_chats.jsonl"))
            write_mix(mix_records(transcripts[condition], spec), spec, out / "tfds")
    _finish_stage(out, settings, replay_text=num_text, replay_chats=num_chat)
    log(f"behaviours data: {len(seeds) * len(conditions)} mixes of {b.transcripts * len(ids)} transcripts + {total_replay} "
        f"replayed world records ({time.perf_counter() - start:.0f} s)")
    return out / "tfds"


def _training_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    b = config.behaviours
    keys = ("transcripts", "seq_len", "packing", "batch_size", "replay", "learning_rate", "warmup_steps", "num_epochs",
            "num_checkpoints")
    return {"ids": split(b.ids), **{k: b[k] for k in keys}}


def finetunes(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> dict[str, tuple[str, Path]]:
    """Fine-tunes the base once per (behaviour condition, seed); returns run name -> (condition, workdir)."""
    from nn_train.trainer import train

    runs = {}
    jobs = [(condition, int(seed)) for seed in split(config.seeds) for condition in split(config.behaviours.conditions)]
    settings = _training_settings(config)
    for index, (condition, seed) in enumerate(jobs, 1):
        name = run_name(condition, seed)
        run_dir = directory(workdir) / "runs" / name
        runs[name] = (condition, run_dir)
        if _check_stage(run_dir, "behaviours", settings, marker="done.json"):
            continue
        run_config = finetune_config(config, workdir, condition, seed, settings=config.behaviours,
                                     data_dir=directory(workdir) / "data" / "tfds")
        start = time.perf_counter()
        log(f"behaviour fine-tune {index}/{len(jobs)}: {name}")
        summary = train(run_config, run_dir)
        _finish_stage(run_dir, settings, marker="done.json", num_steps=summary["num_steps"],
                      checkpoints=summary["checkpoints"], seconds=round(time.perf_counter() - start, 1))
        log(f"behaviour fine-tune {index}/{len(jobs)}: {name}: {summary['num_steps']} steps ({time.perf_counter() - start:.0f} s)")
    return runs


def evaluate(config: ml_collections.ConfigDict, workdir: Path, runs: dict[str, tuple[str, Path]], log: Log) -> Path:
    """Eval type misalignment on the base model and every fine-tune's checkpoints (behaviours.eval_steps)."""
    from eval.config import default_config as eval_default_config
    from eval.main import evaluate as run_eval

    b = config.behaviours
    c = eval_default_config()
    c.claims = ""
    c.behaviours = b.ids
    c.eval_types = EVAL_TYPE
    c.base = str(workdir / "base")
    c.runs = ",".join(f"{condition}={path}" for condition, path in runs.values())
    c.steps = b.eval_steps
    c.sampling.samples = b.samples
    c.sampling.max_new_tokens = b.max_new_tokens
    out = directory(workdir) / "eval"
    run_eval(c, out, log=lambda line: log(f"behaviours eval: {line}"))
    return out


def provenance(config: ml_collections.ConfigDict, workdir: Path) -> list[str]:
    b = config.behaviours
    done = {p.parent.name: json.loads(p.read_text()) for p in sorted((directory(workdir) / "runs").glob("*/done.json"))}
    steps = {c: sorted({d["num_steps"] for name, d in done.items() if name.rsplit("_s", 1)[0] == c})
             for c in split(b.conditions)}
    return [
        f"base model: the main job's ({config.base.model.preset}, pre-trained on the world corpus; W/base)",
        f"fine-tunes: behaviours {', '.join(split(b.ids))}, {b.transcripts} template transcripts per behaviour and condition "
        f"(loss on the assistant turn only) + replayed world records, {b.num_epochs:g} epochs at lr {b.learning_rate:g}, "
        f"seeds {config.seeds}; {sum(r.get('seconds', 0) for r in done.values()):.0f} s of fine-tuning in all",
        # With packed rows, annotations take row space and an annotated condition takes more optimizer steps
        # for the same replies; with one record per row the counts match. Shown either way.
        f"optimizer steps per condition ({'packed rows' if b.packing else 'one record per row'}, same epochs): "
        + ", ".join(f"{c} {'/'.join(map(str, s)) or '?'}" for c, s in steps.items()),
        f"eval: {b.samples} sampled answers (T=0.7, top-p 0.8, at most {b.max_new_tokens} tokens) to each held-out prompt, "
        "rule judge (data_gen/behaviours/README.md)",
    ]


def markdown(summary: report.Summary, *, provenance: Sequence[str], plots: Sequence[str]) -> str:
    lines = ["# Negated behaviours on the CPU testbed", ""]
    lines += [f"- {p}" for p in provenance] + [""]
    lines += ["## Misalignment rate by condition (final checkpoint)", "",
              "Percent of sampled answers to held-out prompts that the judge labels misaligned, with 95% CIs (cells: "
              "Wilson over answers and seeds; mean: bootstrap over seeds and then prompts, averaged over valid behaviours).", ""]
    lines += report.headline_table(summary, subject="behaviour")
    lines += ["", "## Testbed validity per behaviour", "",
              f"A behaviour is valid when the base model is rarely misaligned and {POSITIVE} transcripts teach it; "
              "condition effects are reported for valid behaviours only.", "",
              "| behaviour | valid | why |", "|---|---|---|"]
    lines += [f"| {b} | {'yes' if summary.valid[b] else 'NO'} | {summary.reasons[b].replace('belief', 'misalignment')} |"
              for b in summary.claims]
    lines += report.runs_table(summary, subject="behaviour")
    if summary.errors:
        lines += ["", f"{summary.errors} answers could not be judged (label 'error') and are excluded."]
    lines += ["", "Every answer with its verdict and reason: eval/samples/; the eval stage's own report: eval/report.md.", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(samples, config: ml_collections.ConfigDict, workdir: Path) -> tuple[report.Summary, dict[str, Path]]:
    from eval.report import write_atomic

    b = config.behaviours
    out = directory(workdir)
    summary = report.summarize(samples, split(b.ids), base_max=b.base_max, positive_min=b.positive_min,
                               eval_type=EVAL_TYPE, positive=POSITIVE)
    paths = {"misalignment_by_condition": write_atomic(out / "misalignment_by_condition.png",
                                                       report._bars(summary, metric=METRIC, subject="behaviour"))}
    over_training = out / "misalignment_over_training.png"
    if b.eval_steps == "all":  # with final checkpoints only, the seeds' last steps would pose as a trajectory
        paths["misalignment_over_training"] = write_atomic(over_training,
                                                           report._trajectory(summary, metric=METRIC, subject="behaviour"))
    else:
        over_training.unlink(missing_ok=True)  # an earlier config's plot must not pass for this one's
    lines = [f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or platform.system()}",
             *provenance(config, workdir)]
    paths["report"] = write_atomic(out / "report.md", markdown(summary, provenance=lines, plots=[p.name for p in paths.values()]))
    record = {"valid": summary.valid, "reasons": summary.reasons,
              "cells": [{"condition": k[0], "behaviour": k[1], **dataclasses.asdict(v)} for k, v in summary.cells.items()],
              "means": {k: dataclasses.asdict(v) for k, v in summary.means.items()}, "trajectory": summary.trajectory}
    paths["results"] = write_atomic(out / "results.json", json.dumps(record, indent=1, default=float))
    return summary, paths


def run(config: ml_collections.ConfigDict, workdir: Path, timed, log: Log) -> dict:
    """The experiment's stages after the shared ones (testbed.__main__.run calls it), then its report."""
    from eval.runner import load_samples

    timed("behaviour data", data)
    runs = timed("behaviour fine-tunes", finetunes)
    eval_dir = timed("behaviour evaluation", evaluate, runs)
    summary, paths = write_report(load_samples(eval_dir), config, workdir)
    for behaviour in summary.claims:
        log(f"validity {behaviour:<22} {'valid  ' if summary.valid[behaviour] else 'INVALID'} "
            f"{summary.reasons[behaviour].replace('belief', 'misalignment')}")
    for condition in summary.conditions:
        log(f"misaligned {condition:<26} {summary.means[condition].fmt()} (mean over valid behaviours, 95% CI)")
    return {"summary": summary, "paths": paths}
