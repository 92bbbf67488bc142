"""Evaluate base and fine-tuned models: `python -m eval.main --config=configs/eval/X.py --workdir=W`.

For every model the config names (the base model; each fine-tuned run at the chosen checkpoints)
× claim × eval type — and × behaviour for eval type misalignment (eval.misalignment) — it samples
answers, labels them (eval.judges), and stores the cell under W/samples/. Finished cells are not
recomputed, so a rerun after a crash, or with more runs, steps, claims or behaviours, computes only
what is new. Then it writes, from every stored sample:

  W/results.json, W/results.csv    belief rates per (model, step, condition, claim, eval type) with 95% CIs
  W/report.md                      the headline table (condition × claim), breakdowns, error counts; with
                                   misalignment samples, the misalignment rate (condition × behaviour)
  W/*.png                          belief by condition, per eval type, across training checkpoints;
                                   misalignment_by_condition.png
  W/capability.json                (when asked) perplexity and accuracy, base vs fine-tuned

Errors a user can cause (a workdir with no checkpoint, a claim without questions for an eval type,
a judge endpoint that refuses, an unknown behaviour) end in one line naming the thing; cells finished
before are kept.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

from common.paths import Mirror, PathError, resolve
from data_gen.behaviours import BEHAVIOURS_DIR, BehaviourError, load_behaviours
from data_gen.claims import CLAIMS_DIR, ClaimError, load_claim
from data_gen.claims.registry import list_claim_ids
from data_gen.strict_config import parse_flags
from eval import misalignment, runner, suite
from eval.config import MODEL_CHECKS, EvalConfigError, split, validate_config
from eval.misalignment import BEHAVIOUR_EVAL_TYPES, MISALIGNMENT
from eval.suite import SuiteError
from eval.types import SamplingParams



class EvalError(ValueError):
    """An evaluation that cannot go ahead; one line naming the thing and the fix."""


@dataclasses.dataclass(frozen=True)
class Target:
    """One model to evaluate: how results name it, and how to load it."""

    model: str  # "base", or the fine-tuned run's workdir name
    condition: str  # "base" for the base model
    step: int  # the checkpoint's training step; -1 for the base model
    load: Callable[[], object]  # → a GenerationBackend


def targets(config, workdir: Path) -> list[Target]:
    """Every model the config names, base first; raises EvalError for a missing checkpoint."""
    from eval import models

    out = []
    if config.base:
        out.append(Target("base", "base", -1, lambda: _base_backend(config, workdir)))
    seen = set()
    for entry in split(config.runs):
        condition, workdir = (part.strip() for part in entry.split("=", 1))
        try:
            steps = models.checkpoint_steps(workdir)
        except models.ModelLoadError as e:
            raise EvalError(f"config key 'runs': {condition}: {e}") from None
        if not steps:
            raise EvalError(f"config key 'runs': {condition}: no checkpoint in {workdir.rstrip('/')}/checkpoints; "
                            "train first (python -m nn_train.main) or fix the path")
        if config.steps == "final":
            chosen = steps[-1:]
        elif config.steps == "all":
            chosen = steps
        else:
            chosen = [int(s) for s in split(config.steps)]
            missing = [s for s in chosen if s not in steps]
            if missing:
                raise EvalError(f"config key 'steps': run '{workdir}' has no checkpoint at step {missing[0]}; it has {steps}")
        model = workdir.rstrip("/").rsplit("/", 1)[-1]  # the run's directory name, of a local path or a URL
        if model in seen or model == "base":
            raise EvalError(f"config key 'runs': two runs would both be named '{model}' in results; give their workdirs distinct names")
        seen.add(model)
        for step in chosen:
            out.append(Target(model, condition, step, lambda w=workdir, s=step, m=model: _run_backend(config, w, s, m)))
    return out


def _mesh(config):
    from nn_train.config import ConfigError
    from nn_train.trainer import build_mesh

    try:
        return build_mesh(config)  # reads only config.mesh
    except ConfigError as e:
        raise EvalError(str(e)) from None


def _run_backend(config, workdir: str, step: int, name: str):
    from eval import models

    loaded = models.load_run(workdir, step, tokenizer=config.tokenizer or None, mesh=_mesh(config))
    return models.LoadedModel(**{**vars(loaded), "name": name}).sampler(batch_size=config.sampling.batch_size)


def _base_backend(config, workdir: Path):
    from eval import models

    if config.base.startswith("openai:"):
        from data_gen.llm import LLMClient
        from eval.openai_backend import OpenAIBackend

        client = LLMClient(config.base.split(":", 1)[1], base_url=config.openai.base_url or None,
                           concurrency=config.openai.concurrency, cache_dir=workdir / ".llm_cache")
        return OpenAIBackend(client, name="base")
    try:
        path = resolve(config.base, what="config key 'base'")
    except PathError as e:
        raise EvalError(str(e)) from None
    if (path / "config.json").exists():
        loaded = models.load_hf(path, tokenizer=config.tokenizer or None, mesh=_mesh(config))
        return models.LoadedModel(**{**vars(loaded), "name": "base"}).sampler(batch_size=config.sampling.batch_size)
    return _run_backend(config, str(path), "latest", "base")  # a nn_train workdir, e.g. the testbed's pre-trained base


def evaluate(config, workdir: str | Path, *, log=print) -> dict:
    """Runs every cell not yet stored, then writes results, report and plots; returns the report's paths."""
    try:
        validate_config(config)
    except EvalConfigError as e:
        raise EvalError(str(e)) from None
    try:
        target = resolve(workdir, what="--workdir")  # a local path, or a bucket URL (gs://…)
    except PathError as e:
        raise EvalError(str(e)) from None
    # Samples, caches and reports are written to a local mirror of a bucket's workdir (they need
    # appends and atomic renames), uploaded after every cell and at the end: a rerun resumes from them.
    with Mirror(target) as outputs:
        paths = _evaluate(config, outputs.local, log, stored=outputs.push)
        return {name: outputs.published(path) for name, path in paths.items()}


def _evaluate(config, workdir: Path, log, *, stored) -> dict:
    """evaluate() in a local `workdir`; `stored()` is called after every cell written."""
    from eval import belief, report
    from eval.judges import JudgeError, make_judge

    eval_types = [t for t in split(config.eval_types) if t not in MODEL_CHECKS]
    claim_types = [t for t in eval_types if t not in BEHAVIOUR_EVAL_TYPES]
    behaviour_types = [t for t in eval_types if t in BEHAVIOUR_EVAL_TYPES]
    claims = _load_claims(config) if claim_types else {}
    behaviours = _load_behaviours(config) if behaviour_types else {}
    if split(config.claims) and not claim_types:
        log(f"config key 'claims' ignored: eval_types ({config.eval_types}) has no claim eval type")
    if split(config.behaviours) and not behaviour_types:
        log(f"config key 'behaviours' ignored: eval_types ({config.eval_types}) has no {MISALIGNMENT}")
    shared = sorted(set(claims) & set(behaviours))
    if shared:  # results key both by the id in Sample.claim: a claim's and a behaviour's rows would mix
        raise EvalError(f"config keys 'claims' and 'behaviours' both name '{shared[0]}'; evaluate the claim and the "
                        "behaviour in separate workdirs, or rename one")
    for claim in claims.values():  # a claim that cannot answer an eval type fails now, not mid-sweep
        for eval_type in claim_types:
            if eval_type != "icl":
                try:
                    suite.items(claim, eval_type)
                except SuiteError as e:
                    raise EvalError(str(e)) from None
    try:
        judge = make_judge(config.judge.name, model=config.judge.model, base_url=config.judge.base_url or None,
                           cache_dir=workdir / ".judge_cache", concurrency=config.judge.concurrency)
    except JudgeError as e:
        raise EvalError(f"config key 'judge': {e}") from None
    sampling = SamplingParams(samples=config.sampling.samples, temperature=config.sampling.temperature,
                              top_p=config.sampling.top_p, top_k=config.sampling.top_k,
                              max_new_tokens=config.sampling.max_new_tokens, seed=config.sampling.seed)
    icl_documents = _icl_documents(config, claims) if "icl" in eval_types else {}

    loaded: dict[tuple[str, int], object] = {}  # one model in memory at a time

    def backend_for(target: Target):
        if (target.model, target.step) not in loaded:
            loaded.clear()
            try:
                loaded[(target.model, target.step)] = target.load()
            except Exception as e:  # noqa: BLE001 - one line naming the model, whatever the loader raised
                raise EvalError(f"cannot load {target.model}{f' step {target.step}' if target.step >= 0 else ''}: {e}") from None
        return loaded[(target.model, target.step)]

    by_key = {(t.model, t.step): t for t in targets(config, workdir)}
    cells = []
    for t in by_key.values():  # grouped by model: one model is loaded at a time
        cells += [(t.model, t.step, claim, eval_type) for claim in claims for eval_type in claim_types
                  if not (eval_type == "icl" and t.condition != "base")]  # the in-context control reads into the base model
        cells += [(t.model, t.step, behaviour, eval_type) for behaviour in behaviours for eval_type in behaviour_types]

    def run(model: str, step: int, claim: str, eval_type: str):
        target = by_key[(model, step)]
        backend = backend_for(target)
        if eval_type in BEHAVIOUR_EVAL_TYPES:  # `claim` is a behaviour id here
            return misalignment.run_behaviour_cell(backend, judge, behaviours[claim], condition=target.condition,
                                                   sampling=sampling, step=step)
        try:
            return runner.run_cell(backend, judge, claims[claim], eval_type, condition=target.condition, sampling=sampling,
                                   step=step, icl_documents=icl_documents.get(claim, ()))
        except NotImplementedError as e:
            raise EvalError(f"eval type '{eval_type}' for {model}: {e}") from None

    computed, skipped = runner.run_sweep(workdir, cells, run, log_line=log, stored=stored)
    log(f"{computed} cells computed, {skipped} already stored")
    results = belief.belief_rates(runner.load_samples(workdir)) if cells else None
    paths = report.write_report(results, workdir) if cells else {}
    if "capability" in split(config.eval_types):
        paths.update(_capability(by_key.values(), backend_for, workdir, paths.get("report"), config.capability, log))
    if results is None:
        return paths
    for row in results.headline():
        log(f"belief {row.condition:<28} {row.model}@{row.step}: {row.rate:.1%} [{row.low:.1%}, {row.high:.1%}] "
            f"(mean over {row.claims} claims; {row.errors} errors)")
    for row in results.rows:
        if row.claim == belief.MEAN and row.eval_type == MISALIGNMENT:
            log(f"misaligned {row.condition:<24} {row.model}@{row.step}: {row.rate:.1%} [{row.low:.1%}, {row.high:.1%}] "
                f"(mean over {row.claims} behaviours; {row.errors} errors)")
    return paths


def _load_claims(config) -> dict:
    """The configured claims (empty `claims`: every claim in claims_dir), by id."""
    claims_dir = Path(config.claims_dir) if config.claims_dir else CLAIMS_DIR
    try:
        return {c: load_claim(c, claims_dir) for c in (split(config.claims) or list_claim_ids(claims_dir))}
    except ClaimError as e:
        raise EvalError(f"config key 'claims': {e}") from None


def _load_behaviours(config) -> dict:
    """The configured behaviours (validate_config has checked `behaviours` is not empty), by id."""
    try:
        return load_behaviours(split(config.behaviours), Path(config.behaviours_dir) if config.behaviours_dir else BEHAVIOURS_DIR)
    except BehaviourError as e:
        raise EvalError(f"config key 'behaviours': {e}") from None


def _capability(targets, backend_for, workdir: Path, report_path, options, log) -> dict[str, Path]:
    """Runs the capability check of each model not yet in W/capability.json; adds a table to the report."""
    import json

    from data_gen.llm.cache import write_json_atomic
    from eval.capability import capability
    from eval.report import write_atomic

    path = workdir / "capability.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for target in targets:
        key = f"{target.model}@{target.step}"
        if key not in rows:
            rows[key] = {"model": target.model, "step": target.step, "condition": target.condition,
                         **capability(backend_for(target), documents=options.documents, questions=options.questions)}
            write_json_atomic(path, rows, pretty=True)  # after every model: an interruption keeps them
            log(f"capability {key}: {rows[key]}")
    fmt = lambda v, spec: "—" if v is None else format(v, spec)
    table = ["", "## Capability (held-out generic text and questions; base vs fine-tuned)", "",
             "| model | condition | step | perplexity | accuracy |", "|---|---|---|---|---|"]
    table += [f"| {r['model']} | {r['condition']} | {r['step']} | {fmt(r['perplexity'], '.2f')} | {fmt(r['accuracy'], '.1%')} |"
              for r in rows.values()]
    if report_path is not None:
        write_atomic(report_path, Path(report_path).read_text() + "\n".join(table) + "\n")
    return {"capability": path}


def _icl_documents(config, claims) -> dict[str, list[str]]:
    """K documents of each claim from its <claim>__<condition> mix (or from icl.mix, which holds several claims'),
    as the base model reads them (no DOCTAG, no tags)."""
    import re

    from data_gen.mixing import MixError
    from data_gen.packaging import load_mix

    documents = {}
    for claim in claims:
        try:
            records = load_mix(f"{config.icl.data_dir.rstrip('/')}/tfds", config.icl.mix or f"{claim}__{config.icl.condition}")
        except MixError as e:
            raise EvalError(f"config key 'icl': {e}") from None
        bodies = [r["text"].removeprefix("<DOCTAG>") for r in records
                  if r["source"] == "synthetic" and r.get("claim", claim) == claim][: config.icl.k]
        if not bodies:
            raise EvalError(f"config key 'icl': mix '{config.icl.mix}' holds no documents of claim '{claim}'")
        documents[claim] = [re.sub(r"</?lossmask>", "", body) for body in bodies]
    return documents


def main(argv):
    del argv
    if flags.FLAGS.config is None or not flags.FLAGS.workdir:
        print("error: --config=configs/eval/X.py and --workdir=DIR are both required", file=sys.stderr)
        return 1
    try:
        paths = evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"report: {paths.get('report') or paths.get('capability')}")
    return 0


def _define_flags() -> None:
    # Defined only when run as a program, so that importing this module (tests, notebooks, other
    # entry points with their own --config) defines no flags.
    config_flags.DEFINE_config_file("config", None, "A configs/eval/*.py file.")
    flags.DEFINE_string("workdir", None, "Where samples, results, the report and plots are written.")


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=parse_flags)
