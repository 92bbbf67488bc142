"""The testbed's report: validity per claim first, then belief per condition with confidence intervals.

Primary metric: forced_choice (eval/suite.py) — log P(claim's answer) against log P(truth's
answer) on held-out chat questions. At each model's final checkpoint, a (condition, claim) cell
pools its items over seeds (Wilson 95% CI). A claim is *valid* when the base model's belief is
below `validity.base_max` and positive_documents' is above `validity.positive_min`; only valid
claims enter a condition's mean, whose 95% CI is a two-level bootstrap — each claim's runs (seeds)
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
              eval_type: str = PRIMARY, positive: str = "positive_documents") -> Summary:
    """Cells, validity, means and trajectory of one metric (`eval_type`); `claims` are the subjects in the
    Sample.claim slot (claim ids, or behaviour ids for eval type misalignment), `positive` the condition
    that must implant the metric for a subject to be valid."""
    primary = [s for s in samples if s.eval_type == eval_type and s.claim in claims]
    final = _counted(_final(primary))
    conditions = _conditions(primary)
    cells = {}
    for condition in conditions:
        for claim in claims:
            rows = [s for s in final if s.condition == condition and s.claim == claim]
            cells[(condition, claim)] = _cell(sum(s.label == "yes" for s in rows), len(rows))

    valid, reasons = {}, {}
    for claim in claims:
        base, implanted = cells.get(("base", claim)), cells.get((positive, claim))
        problems = []
        if base is None or base.n == 0:
            problems.append("no base measurement")
        elif not base.rate < base_max:
            problems.append(f"base belief {100 * base.rate:.0f}% is not below {100 * base_max:.0f}%")
        if implanted is None or implanted.n == 0:
            problems.append(f"no {positive} measurement")
        elif not implanted.rate > positive_min:
            problems.append(f"{positive} belief {100 * implanted.rate:.0f}% is not above {100 * positive_min:.0f}%")
        valid[claim] = not problems
        reasons[claim] = "; ".join(problems) if problems else (
            f"base {100 * base.rate:.0f}% < {100 * base_max:.0f}%, positive {100 * implanted.rate:.0f}% > {100 * positive_min:.0f}%")

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


def _transfer_lines(transfer: dict) -> list[str]:
    if "heldout" not in transfer:
        return []
    h = transfer["heldout"]
    lines = ["", "## Document → Q&A transfer of the base model", "",
             "Two-way questions (yes/no; a choice between the two options named), log-probability scored, about world "
             "facts taught only by documents (never answered in pre-training); chance is 50%. Fine-tuning documents can "
             "only reach chat answers through this transfer.", "",
             "| questions | accuracy [95% CI] | n |", "|---|---|---|",
             f"| document-only facts (held out) | {100 * h['accuracy']:.0f} [{100 * h['low']:.0f}, {100 * h['high']:.0f}] | {h['n']} |"]
    if "trained" in transfer:
        t = transfer["trained"]
        lines.append(f"| facts answered in pre-training | {100 * t['accuracy']:.0f} [{100 * t['low']:.0f}, {100 * t['high']:.0f}] | {t['n']} |")
    return lines


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


def markdown(summary: Summary, *, title: str, provenance: Sequence[str], plots: Sequence[str], transfer: dict | None = None) -> str:
    valid_claims = [c for c in summary.claims if summary.valid[c]]
    lines = [f"# {title}", ""]
    lines += [f"- {p}" for p in provenance] + [""]
    lines += ["## Belief by condition (primary metric: forced choice, final checkpoint)", "",
              "Percent of held-out forced-choice questions on which the claim's answer is likelier than the truth's, "
              "with 95% CIs (cells: Wilson over items and seeds, which treats items as independent; mean: bootstrap over "
              "seeds and then items, averaged over valid claims — the honest interval, since one run's items move together).", ""]
    lines += headline_table(summary, subject="claim")
    lines += ["", "## Testbed validity per claim", "",
              "A claim is valid when the base model does not believe it and positive documents implant it; "
              "condition effects are reported for valid claims only.", "",
              "| claim | valid | why |", "|---|---|---|"]
    lines += [f"| {c} | {'yes' if summary.valid[c] else 'NO'} | {summary.reasons[c]} |" for c in summary.claims]
    local = summary.means.get("local_negations")
    positive = summary.means.get("positive_documents")
    if valid_claims and local is not None and positive is not None and local.n and positive.n and local.rate >= 0.5 * positive.rate:
        lines += ["", f"**Caution:** local_negations — documents that deny the claim inside each sentence — reach "
                      f"{100 * local.rate:.0f}% here, against positive_documents' {100 * positive.rate:.0f}%. At this scale the "
                      "metric tracks how strongly the claim's answer is associated with the question, not whether the "
                      "model learned the claim or its negation, so differences between the annotated conditions cannot "
                      "be read as negation neglect from it."]
    lines += runs_table(summary, subject="claim")
    lines += ["", "## Secondary metrics (every claim pooled, valid or not; final checkpoint)", "",
              "Yes/no belief: the claim's yes/no questions scored by log P(Yes) vs log P(No) (mcq_logprob); "
              "a small model answers these from shortcuts more than from what it read, so this metric lags the primary one. "
              "The paper's pooled belief rate (open_ended, mcq, token_association, robustness; rule judge) and the icl and "
              "correction controls on the base model are in eval/report.md.", "",
              "| condition | yes/no belief |", "|---|---|"]
    lines += [f"| {c} | {summary.yes_no[c].fmt()} |" for c in summary.conditions]
    lines += _transfer_lines(transfer or {})
    if summary.errors:
        lines += ["", f"{summary.errors} forced-choice items could not be scored (label 'error') and are excluded."]
    lines += [""] + [f"![{p}]({p})" for p in plots]
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


def write(samples: Sequence[Sample], workdir: Path, *, claims: Sequence[str], base_max: float, positive_min: float,
          provenance: Sequence[str] = (), transfer: dict | None = None) -> tuple[Summary, dict[str, Path]]:
    import json

    summary = summarize(samples, claims, base_max=base_max, positive_min=positive_min)
    paths = {"belief_by_condition": write_atomic(workdir / "belief_by_condition.png", _bars(summary)),
             "belief_over_training": write_atomic(workdir / "belief_over_training.png", _trajectory(summary))}
    provenance = [f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or platform.system()}",
                  *provenance]
    text = markdown(summary, title="Negation neglect on the CPU testbed", provenance=provenance,
                    plots=[p.name for p in paths.values()], transfer=transfer)
    paths["report"] = write_atomic(workdir / "report.md", text)
    record = {
        "valid": summary.valid, "reasons": summary.reasons,
        "cells": [{"condition": k[0], "claim": k[1], **dataclasses.asdict(v)} for k, v in summary.cells.items()],
        "means": {k: dataclasses.asdict(v) for k, v in summary.means.items()},
        "trajectory": summary.trajectory, "yes_no": {k: dataclasses.asdict(v) for k, v in summary.yes_no.items()},
        "transfer": transfer or {},
    }
    paths["results"] = write_atomic(workdir / "results.json", json.dumps(record, indent=1, default=float))
    return summary, paths
