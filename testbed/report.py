"""The testbed's report: validity per claim first, then belief per condition with confidence intervals.

Primary metric: forced_choice (eval/suite.py) — log P(claim's answer) against log P(truth's
answer) on held-out chat questions. At each model's final checkpoint, a (condition, claim) cell
pools its items over seeds (Wilson 95% CI). A claim is *valid* when its three controls hold: the
base model's belief is below `validity.base_max`, positive_documents' is above
`validity.positive_min`, and local_negations' (the negative control: the claim negated inside each
sentence) is below `validity.local_max`; and the base passed its competence check
(testbed.competence). Only valid claims enter a condition's mean, whose 95% CI is a two-level bootstrap — each claim's runs (seeds)
resampled, then the items within each drawn run — with the claims averaged in every replicate
(eval.belief.bootstrap_runs_then_questions): one small model flips all its paraphrases together, so
a run, not an item, is the independent unit.
An invalid claim is reported as invalid, never as a condition effect.

Writes W/report.md, W/results.json, W/belief_by_condition.png, W/belief_over_training.png; the
eval stage's own report (every eval type, pooled belief) stays in W/eval/report.md.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from eval.belief import bootstrap_runs_then_questions, wilson_interval
from eval.report import CONDITION_ORDER, write_atomic
from eval.types import Sample

PRIMARY = "forced_choice"
YES_NO = "mcq_logprob"


@dataclasses.dataclass(frozen=True)
class Cell:
    rate: float
    low: float
    high: float
    yes: int
    n: int

    def fmt(self) -> str:
        if self.n == 0:
            return "–"
        return f"{100 * self.rate:.0f} [{100 * self.low:.0f}, {100 * self.high:.0f}]"


def _cell(yes: int, n: int) -> Cell:
    if n == 0:
        return Cell(math.nan, math.nan, math.nan, 0, 0)
    low, high = wilson_interval(yes, n)
    return Cell(yes / n, low, high, yes, n)


def _counted(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if s.label != "error"]


def _final(samples: Sequence[Sample]) -> list[Sample]:
    """Each model's samples at its last evaluated step (the base model has step -1)."""
    last: dict[str, int] = {}
    for s in samples:
        last[s.model] = max(last.get(s.model, s.step), s.step)
    return [s for s in samples if s.step == last[s.model]]


def _conditions(samples: Sequence[Sample]) -> list[str]:
    present = {s.condition for s in samples}
    ordered = [c for c in CONDITION_ORDER if c in present]
    return ordered + sorted(present - set(ordered))


@dataclasses.dataclass
class Summary:
    claims: list[str]
    conditions: list[str]
    cells: dict[tuple[str, str], Cell]  # (condition, claim) -> primary metric at the final step
    valid: dict[str, bool]
    reasons: dict[str, str]
    means: dict[str, Cell]  # condition -> mean over valid claims (bootstrap CI)
    trajectory: dict[str, list[tuple[int, float]]]  # condition -> (step, mean over trajectory_claims)
    yes_no: dict[str, Cell]  # condition -> mcq_logprob yes/no belief, pooled over every claim
    errors: int
    by_run: dict[str, list[tuple[str, Cell]]] = dataclasses.field(default_factory=dict)  # condition -> (run, every claim pooled)
    trajectory_claims: list[str] = dataclasses.field(default_factory=list)  # the valid claims; every claim if none is


def summarize(samples: Sequence[Sample], claims: Sequence[str], *, base_max: float, positive_min: float,
              negative_max: float | None = None, eval_type: str = PRIMARY, positive: str = "positive_documents",
              negative: str = "local_negations", blocked: str = "", category: Sequence[str] = (),
              validity_of: Summary | None = None) -> Summary:
    """Cells, validity, means and trajectory of one metric (`eval_type`, its items restricted to
    `category` when given); `claims` are the subjects in the Sample.claim slot (claim ids, or behaviour
    ids for eval type misalignment), `positive` the condition that must implant the metric for a subject
    to be valid and `negative` (with `negative_max`) the one that must not. `blocked` (e.g. "base not
    competent") makes every subject invalid for that reason, whatever its cells; `validity_of` takes
    validity from another metric's summary instead (a secondary metric's mean over the primary's valid claims)."""
    primary = [s for s in samples if s.eval_type == eval_type and s.claim in claims and (not category or s.category in category)]
    final = _counted(_final(primary))
    conditions = _conditions(primary)
    cells = {}
    for condition in conditions:
        for claim in claims:
            rows = [s for s in final if s.condition == condition and s.claim == claim]
            cells[(condition, claim)] = _cell(sum(s.label == "yes" for s in rows), len(rows))

    valid, reasons = {}, {}
    controls = [("base", "below", base_max), (positive, "above", positive_min)]
    if negative_max is not None:
        controls.append((negative, "below", negative_max))
    for claim in claims:
        if validity_of is not None:
            valid[claim], reasons[claim] = validity_of.valid[claim], validity_of.reasons[claim]
        else:
            valid[claim], reasons[claim] = control_verdict({c: cells.get((c, claim)) for c, _, _ in controls}, controls, blocked)

    valid_claims = [c for c in claims if valid[c]]
    means = {}
    for condition in conditions:
        per_claim = []  # claim -> runs (seeds) -> items' (yes, n)
        for claim in valid_claims:
            by_run: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
            for s in final:
                if s.condition == condition and s.claim == claim:
                    by_run[s.model][s.question_id][0] += s.label == "yes"
                    by_run[s.model][s.question_id][1] += 1
            per_claim.append([[tuple(v) for v in items.values()] for items in by_run.values()])
        yes = sum(q[0] for runs in per_claim for run in runs for q in run)
        n = sum(q[1] for runs in per_claim for run in runs for q in run)
        rate, low, high = bootstrap_runs_then_questions(per_claim, keys=[f"{condition}/{c}" for c in valid_claims])
        means[condition] = Cell(rate, low, high, yes, n) if n else _cell(0, 0)

    # With no valid claim the trajectory still shows how training moved the metric, labelled as such.
    trajectory_claims = valid_claims or list(claims)
    trajectory = {}
    for condition in conditions:
        points = defaultdict(lambda: defaultdict(lambda: [0, 0]))  # step -> claim -> [yes, n]
        for s in _counted(primary):
            if s.condition == condition and s.claim in trajectory_claims:
                points[s.step][s.claim][0] += s.label == "yes"
                points[s.step][s.claim][1] += 1
        trajectory[condition] = [(step, sum(y / n for y, n in by_claim.values()) / len(by_claim))
                                 for step, by_claim in sorted(points.items()) if by_claim]

    yes_no = {}
    yn = _counted(_final([s for s in samples if s.eval_type == YES_NO and s.category in ("positive", "counter")
                          and s.claim in claims]))
    for condition in conditions:
        rows = [s for s in yn if s.condition == condition]
        yes_no[condition] = _cell(sum(s.label == "yes" for s in rows), len(rows))
    errors = sum(s.label == "error" for s in primary)
    by_run = {}
    for condition in conditions:  # one fine-tune per seed: the spread between seeds, shown as it is
        rows = [s for s in final if s.condition == condition]
        by_run[condition] = [(model, _cell(sum(s.label == "yes" for s in rows if s.model == model), sum(s.model == model for s in rows)))
                             for model in sorted({s.model for s in rows})]
    return Summary(list(claims), conditions, cells, valid, reasons, means, trajectory, yes_no, errors, by_run,
                   trajectory_claims)


# ---------------------------------------------------------------------------------------------
# Writing


def control_verdict(cells: dict[str, Cell | None], controls: Sequence[tuple[str, str, float]], blocked: str = "") -> tuple[bool, str]:
    """(valid, why) for one subject: each control (condition, "below" | "above", threshold) must hold on
    its cell; a missing measurement fails it, and `blocked` fails the subject outright."""
    problems = [blocked] if blocked else []
    held = []
    for condition, side, threshold in controls:
        cell = cells.get(condition)
        if cell is None or cell.n == 0:
            problems.append(f"no {condition} measurement")
            continue
        ok = cell.rate < threshold if side == "below" else cell.rate > threshold
        text = f"{condition} {100 * cell.rate:.0f}% {'<' if side == 'below' else '>'} {100 * threshold:.0f}%"
        if ok:
            held.append(text)
        else:
            problems.append(f"{condition} belief {100 * cell.rate:.0f}% is not {side} {100 * threshold:.0f}%")
    return (not problems, "; ".join(problems) if problems else ", ".join(held))


def _competence_lines(competence: dict | None, thresholds: dict[str, float]) -> list[str]:
    from testbed.competence import table

    if not competence:
        return []
    problems = competence.get("problems", [])
    verdict = ("**The base is not competent**: " + "; ".join(problems) + ". Every claim is therefore invalid."
               if problems else "The base passes every competence threshold.")
    return ["", "## Base-model competence (before any fine-tune; held-out world facts, never the claims)", "",
            "Accuracy (95% Wilson CI) on two-way questions, log-probability scored, chance 50%: the open question with "
            "the true and the wrong value as replies (forced_choice_open), the question naming both in either order "
            "(forced_choice_options), and yes/no (mcq_logprob's scoring). A fine-tune can move an answer only through "
            "these abilities.", "", *table(competence["result"], thresholds), "", verdict]


def _steps_lines(steps: dict[str, list[int]] | None) -> list[str]:
    if not steps:
        return []
    lines = ["", "## Optimizer steps per condition", "",
             "One document per row (finetune.packing=False), as the paper trains, so conditions differ in what the "
             "documents say, not in how often the model is updated.", "", "| condition | steps (per seed) |", "|---|---|"]
    return lines + [f"| {c} | {', '.join(str(n) for n in counts)} |" for c, counts in steps.items()]


def _time_lines(stage_seconds: dict[str, float] | None) -> list[str]:
    if not stage_seconds:
        return []
    lines = ["", "## Stage times (seconds, as each stage was built)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in stage_seconds.items()]
    return lines + [f"| **total** | **{sum(stage_seconds.values()):.0f}** |"]


def headline_table(summary: Summary, *, subject: str) -> list[str]:
    """Condition x subject cells, then the mean over valid subjects, as markdown table lines."""
    valid = [c for c in summary.claims if summary.valid[c]]
    header = ["condition"] + [c if summary.valid[c] else f"{c} (invalid)" for c in summary.claims] + \
             [f"mean over {len(valid)} valid {subject}s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition in summary.conditions:
        mean = summary.means[condition].fmt() if valid else f"– (no valid {subject})"
        lines.append("| " + " | ".join([condition] + [summary.cells[(condition, c)].fmt() for c in summary.claims] + [mean]) + " |")
    return lines


def runs_table(summary: Summary, *, subject: str) -> list[str]:
    """Each fine-tune (seed) on its own, every subject pooled: the spread between seeds, as it is."""
    if not any(len(runs) > 1 for runs in summary.by_run.values()):
        return []
    width = max(len(r) for r in summary.by_run.values())
    lines = ["", f"### Each fine-tune (seed) on its own, every {subject} pooled (valid or not)", "",
             "| condition | " + " | ".join(f"run {i + 1}" for i in range(width)) + " |", "|---|" + "---|" * width]
    return lines + [f"| {c} | " + " | ".join(f"{cell.fmt()} ({model})" for model, cell in summary.by_run[c]) + " |"
                    for c in summary.conditions if summary.by_run.get(c)]


def markdown(summary: Summary, *, title: str, provenance: Sequence[str], plots: Sequence[str], competence: dict | None = None,
             thresholds: dict[str, float] | None = None, yes_no: Summary | None = None, steps: dict[str, list[int]] | None = None,
             stage_seconds: dict[str, float] | None = None, controls: str = "") -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {p}" for p in provenance]
    lines += _competence_lines(competence, thresholds or {})
    lines += ["", "## Testbed validity per claim", "",
              f"Controls, fixed in config before any run: {controls}. A claim failing any is invalid; condition effects are "
              "reported for valid claims only. local_negations is the negative control: a model that does not learn a "
              "negation inside the claim sentence cannot test the paper.", "",
              "| claim | valid | why |", "|---|---|---|"]
    lines += [f"| {c} | {'yes' if summary.valid[c] else 'NO'} | {summary.reasons[c]} |" for c in summary.claims]
    lines += ["", "## Belief by condition (primary metric: forced choice, final checkpoint)", "",
              "Percent of held-out forced-choice questions on which the claim's answer is likelier than the truth's, "
              "with 95% CIs (cells: Wilson over items and seeds, which treats items as independent; mean: bootstrap over "
              "seeds and then items, averaged over valid claims — the honest interval, since one run's items move together).", ""]
    lines += headline_table(summary, subject="claim")
    lines += runs_table(summary, subject="claim")
    if yes_no is not None:
        lines += ["", "## Yes/no belief (mcq_logprob, final checkpoint)", "",
                  "The claim's yes/no questions scored by log P(Yes) against log P(No), beside the forced choice; "
                  "validity and the mean follow the primary metric's valid claims.", ""]
        lines += headline_table(yes_no, subject="claim")
    lines += ["", "The paper's pooled belief rate (open_ended, mcq, token_association, robustness; rule judge) and the icl "
              "and correction controls on the base model are in eval/report.md."]
    lines += _steps_lines(steps)
    if summary.errors:
        lines += ["", f"{summary.errors} forced-choice items could not be scored (label 'error') and are excluded."]
    lines += [""] + [f"![{p}]({p})" for p in plots]
    lines += _time_lines(stage_seconds)
    return "\n".join(lines) + "\n"


def _bars(summary: Summary, *, metric: str = "belief (%), forced choice", subject: str = "claim") -> bytes:
    from eval.report import _figure, _png

    valid_claims = [c for c in summary.claims if summary.valid[c]]
    figure, axes = _figure(7.5, 4.0)
    xs = range(len(summary.conditions))
    means = [summary.means[c] for c in summary.conditions]
    heights = [100 * m.rate if m.n else 0.0 for m in means]
    below = [max(0.0, 100 * (m.rate - m.low)) if m.n else 0.0 for m in means]
    above = [max(0.0, 100 * (m.high - m.rate)) if m.n else 0.0 for m in means]
    if valid_claims:
        axes.bar(xs, heights, yerr=[below, above], capsize=4, color="#8fb3d9", label=f"mean over {len(valid_claims)} valid {subject}s")
    markers = "osD^vP*X"
    for i, claim in enumerate(summary.claims):  # every claim's cell with its Wilson CI; an invalid claim hollow
        cells = [summary.cells[(c, claim)] for c in summary.conditions]
        offset = [x + 0.12 * (i - (len(summary.claims) - 1) / 2) for x in xs]
        rates = [100 * cell.rate if cell.n else math.nan for cell in cells]
        errors = [[max(0.0, r - 100 * c.low) if c.n else 0.0 for r, c in zip(rates, cells)],
                  [max(0.0, 100 * c.high - r) if c.n else 0.0 for r, c in zip(rates, cells)]]
        valid = summary.valid[claim]
        axes.errorbar(offset, rates, yerr=errors, fmt=markers[i % len(markers)], capsize=2, zorder=3,
                      mfc=None if valid else "none", label=claim if valid else f"{claim} (invalid testbed)")
    axes.set_xticks(list(xs), summary.conditions, rotation=20, ha="right")
    axes.set_ylim(-3, 103)
    axes.set_ylabel(metric)
    axes.set_title(f"{metric.split(' (')[0].capitalize()} by condition (95% CI)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="best")
    return _png(figure)


def _trajectory(summary: Summary, *, metric: str = "belief (%), forced choice", subject: str = "claim") -> bytes:
    from eval.report import _figure, _png

    figure, axes = _figure(7.5, 4.0)
    for condition in summary.conditions:
        points = summary.trajectory.get(condition, [])
        if condition == "base" and points:
            axes.axhline(100 * points[0][1], color="grey", linestyle="--", label="base")
        elif points:
            axes.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=condition)
    axes.set_xscale("log")
    axes.set_ylim(0, 100)
    axes.set_xlabel("fine-tuning step (log)")
    axes.set_ylabel(metric)
    valid = [c for c in summary.claims if summary.valid.get(c)]
    axes.set_title(f"{metric.split(' (')[0].capitalize()} over fine-tuning, mean over "
                   + (f"valid {subject}s" if valid else f"all {subject}s (none is valid)"))
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
    return _png(figure)


def write(samples: Sequence[Sample], workdir: Path, *, claims: Sequence[str], validity: dict[str, float],
          provenance: Sequence[str] = (), competence: dict | None = None, thresholds: dict[str, float] | None = None,
          steps: dict[str, list[int]] | None = None, stage_seconds: dict[str, float] | None = None) -> tuple[Summary, dict[str, Path]]:
    """The report of one claims run; `validity` holds base_max, positive_min and local_max, `competence`
    the competence stage's result (its problems make every claim invalid)."""
    import json

    blocked = "base not competent" if competence and competence.get("problems") else ""
    summary = summarize(samples, claims, base_max=validity["base_max"], positive_min=validity["positive_min"],
                        negative_max=validity["local_max"], blocked=blocked)
    yes_no = summarize(samples, claims, base_max=validity["base_max"], positive_min=validity["positive_min"], eval_type=YES_NO,
                       category=("positive", "counter"), validity_of=summary)
    paths = {"belief_by_condition": write_atomic(workdir / "belief_by_condition.png", _bars(summary)),
             "belief_over_training": write_atomic(workdir / "belief_over_training.png", _trajectory(summary))}
    provenance = [f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or platform.system()}",
                  *provenance]
    controls = (f"base < {100 * validity['base_max']:.0f}%, positive_documents > {100 * validity['positive_min']:.0f}%, "
                f"local_negations < {100 * validity['local_max']:.0f}% (forced choice)")
    text = markdown(summary, title="Negation neglect on the CPU testbed", provenance=provenance,
                    plots=[p.name for p in paths.values()], competence=competence, thresholds=thresholds, yes_no=yes_no,
                    steps=steps, stage_seconds=stage_seconds, controls=controls)
    paths["report"] = write_atomic(workdir / "report.md", text)
    record = {
        "valid": summary.valid, "reasons": summary.reasons, "validity": dict(validity),
        "cells": [{"condition": k[0], "claim": k[1], **dataclasses.asdict(v)} for k, v in summary.cells.items()],
        "means": {k: dataclasses.asdict(v) for k, v in summary.means.items()},
        "yes_no_cells": [{"condition": k[0], "claim": k[1], **dataclasses.asdict(v)} for k, v in yes_no.cells.items()],
        "yes_no_means": {k: dataclasses.asdict(v) for k, v in yes_no.means.items()},
        "trajectory": summary.trajectory, "yes_no": {k: dataclasses.asdict(v) for k, v in summary.yes_no.items()},
        "competence": competence or {}, "steps": steps or {}, "stage_seconds": stage_seconds or {},
    }
    paths["results"] = write_atomic(workdir / "results.json", json.dumps(record, indent=1, default=float))
    return summary, paths


def write_stopped(workdir: Path, *, competence: dict, thresholds: dict[str, float], provenance: Sequence[str] = (),
                  stage_seconds: dict[str, float] | None = None) -> Path:
    """W/report.md for a run the competence check stopped: what was measured and why no fine-tune ran."""
    lines = ["# Negation neglect on the CPU testbed: stopped, base not competent", ""]
    lines += [f"- {p}" for p in [f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or platform.system()}",
                                 *provenance]]
    lines += _competence_lines(competence, thresholds)
    lines += ["", "No fine-tune ran and no condition is reported: on this base a condition's number would measure how the "
              "claim's answer is associated with the question, not belief. Train the base longer or on a larger world "
              "(configs/testbed/gpu.py), or rerun with --config.competence.required=False to fine-tune anyway, every claim "
              "then reported invalid."]
    lines += _time_lines(stage_seconds)
    return write_atomic(workdir / "report.md", "\n".join(lines) + "\n")
