"""python -m testbed --config=configs/testbed/cpu.py --workdir=workdir/testbed [--config.seeds=0,1,2]
python -m testbed --config=configs/testbed/behaviours_cpu.py --workdir=workdir/testbed

Runs every stage not yet finished in the workdir (testbed.stages; with experiment=behaviours, the
shared world/tokenizer/base stages and then testbed.behaviours), then writes the report and prints
validity per claim (behaviour) and belief (misalignment rate) per condition. A second run in the same workdir reuses
everything and only rewrites the report.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from common.paths import Mirror, PathError, resolve

_CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/testbed/ file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where every stage writes (created if missing).")


def run(config, workdir: str | Path, *, log=None) -> dict:
    """All stages, then the report; returns the report's paths and the summary."""
    from testbed.config import validate_config
    from testbed.stages import TestbedError

    log = log or (lambda line: print(line, flush=True))
    validate_config(config)
    try:
        target = resolve(workdir, what="--workdir")  # a local path, or a bucket URL (gs://…)
    except PathError as e:
        raise TestbedError(str(e)) from None
    # The stages write locally (tokenizer files, TFDS builds, atomic renames); a bucket's workdir is a
    # local mirror uploaded after every stage, so a rerun on a fresh machine resumes from the last one.
    with Mirror(target) as outputs:
        result = _run(config, outputs.local, log, stage_done=outputs.push)
        result["paths"] = {name: outputs.published(path) for name, path in result["paths"].items()}
        return result


def _run(config, workdir: Path, log, *, stage_done) -> dict:
    from eval.runner import load_samples
    from testbed import report, stages
    from testbed.config import split

    started = time.perf_counter()
    seconds = stages.StageTimes(workdir / "stage_times.json")

    def timed(name, fn, *args):
        start = time.perf_counter()
        try:
            result = fn(config, workdir, *args, log)
        finally:  # a stage that stops the run (the competence check) still has its time in the report
            seconds.record(name, time.perf_counter() - start)
            stage_done()
        log(f"[{time.perf_counter() - started:6.0f} s] {name} done ({time.perf_counter() - start:.0f} s)")
        return result

    timed("world", stages.world)
    timed("tokenizer", stages.tokenizer)
    timed("base model", stages.base)
    if config.experiment == "behaviours":
        from testbed import behaviours

        result = behaviours.run(config, workdir, timed, log)
        log(f"report: {result['paths']['report']} ({time.perf_counter() - started:.0f} s in all)")
        return result
    try:
        competence = timed("competence check", stages.competence)
    except stages.BaseNotCompetent as stop:  # the report says why there are no condition numbers, then the run stops
        path = report.write_stopped(workdir, competence=stop.competence, thresholds=stages.competence_thresholds(config),
                                    provenance=stages.provenance(config, workdir), stage_seconds=seconds.table({}))
        log(f"report: {path} (base not competent; {time.perf_counter() - started:.0f} s in all)")
        raise
    timed("fine-tuning data", stages.data)
    runs = timed("fine-tunes", stages.finetunes)
    eval_dir = timed("evaluation", stages.evaluate, runs)
    claims = split(config.claims)
    summary, paths = report.write(load_samples(eval_dir), workdir, claims=claims, validity=config.validity.to_dict(),
                                  provenance=stages.provenance(config, workdir), competence=competence,
                                  thresholds=stages.competence_thresholds(config), steps=stages.steps_per_condition(runs),
                                  stage_seconds=seconds.table(stages.finetune_seconds(runs)))
    for claim in claims:
        log(f"validity {claim:<22} {'valid  ' if summary.valid[claim] else 'INVALID'} {summary.reasons[claim]}")
    for condition in summary.conditions:
        log(f"belief   {condition:<22} {summary.means[condition].fmt()} (forced choice, mean over valid claims, 95% CI)")
    log(f"report: {paths['report']} ({time.perf_counter() - started:.0f} s in all)")
    return {"summary": summary, "paths": paths}


def main(argv):
    del argv
    from testbed.config import TestbedConfigError
    from testbed.stages import TestbedError

    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("give --config=configs/testbed/<preset>.py and --workdir=DIR")
    if not any(arg.startswith(("--verbosity", "-v")) for arg in sys.argv):
        logging.set_verbosity(logging.WARNING)  # library INFO chatter (Orbax, XLA) off by default
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except (TestbedConfigError, TestbedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
