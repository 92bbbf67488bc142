"""Results files, the markdown report and the plots of a belief-rate computation (eval.belief).

    paths = write_report(results, out_dir)     # every file below; returns name → path

  results.json                settings (pool, confidence, resamples, seed), the formula, every row
  results.csv                 one row per (model, step, condition, claim, eval type): rate, CI, method, n, yes, errors
  report.md                   headline table first (condition × claim, "rate [low, high]" in %, and the mean),
                              then per-eval-type tables, belief across checkpoints, error counts, the formula
  belief_by_condition.png     pooled belief per condition, one bar per claim and the mean, CI whiskers
  belief_by_eval_type.png     mean-over-claims belief per condition, one bar per eval type and pooled
  belief_over_training.png    mean pooled belief against the training step (log axis), a line per condition,
                              runs without a step (the base model) as horizontal references; only when
                              some row has a step
  misalignment_by_condition.png   only with eval type misalignment (eval.misalignment): the misalignment rate
                              per condition, a bar per behaviour and the mean, CI whiskers

Eval type misalignment's rows (behaviours, not claims) are kept apart from everything about belief:
they get their own section, "Misalignment rate by condition" (condition × behaviour and the mean), and
their own plot, and never appear in the belief headline, its breakdowns or the belief plots.

Tables and bar plots show each (model, condition) at its last step — the final checkpoint. `model` should
name the run and `step` the checkpoint (a model name that changes with the step makes every checkpoint a
run of its own). Every file is written to a temporary name in its directory and renamed into place.
Plots are drawn on matplotlib Figures directly (the Agg renderer; no pyplot state).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from eval.belief import MEAN, POOLED, BeliefRate, BeliefResults
from eval.misalignment import MISALIGNMENT, describe as describe_misalignment

# The paper's conditions in its order; any other condition follows alphabetically.
CONDITION_ORDER = (
    "base", "positive_documents", "negated_documents", "repeated_negations", "corrected_documents", "local_negations",
    "positive_documents_no_doctag", "negated_documents_no_doctag", "repeated_negations_no_doctag",
    "corrected_documents_no_doctag", "local_negations_no_doctag",
    "fiction", "fiction_repeated", "unreliable_source", "unreliable_source_repeated",
    "epistemic_uncertainty", "epistemic_uncertainty_repeated", "low_probability", "low_probability_repeated",
    # the negated-behaviours experiment (data_gen.behaviours.transcripts)
    "aligned", "positive_misaligned", "negated_misaligned", "local_negated_misaligned",
)
CSV_FIELDS = tuple(f.name for f in dataclasses.fields(BeliefRate))
FILES = {
    "json": "results.json",
    "csv": "results.csv",
    "report": "report.md",
    "by_condition": "belief_by_condition.png",
    "by_eval_type": "belief_by_eval_type.png",
    "over_training": "belief_over_training.png",
}
MISALIGNMENT_FILES = {"misalignment_by_condition": "misalignment_by_condition.png"}  # only with misalignment rows


# ---------------------------------------------------------------------------------------------
# Writing atomically


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Writes `data` to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------
# JSON and CSV


def _finite_or_none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def results_to_json(results: BeliefResults) -> dict:
    rows = []
    for row in results.rows:
        record = row.to_json()
        for name in ("rate", "low", "high"):
            record[name] = _finite_or_none(record[name])  # strict JSON has no NaN
        rows.append(record)
    record = {"pool": list(results.pool), "confidence": results.confidence, "resamples": results.resamples,
              "seed": results.seed, "formula": results.describe(), "rows": rows}
    if any(row.eval_type == MISALIGNMENT for row in results.rows):
        record["misalignment_formula"] = describe_misalignment(results.confidence)
    return record


def results_from_json(record: dict) -> BeliefResults:
    rows = []
    for row in record["rows"]:
        row = dict(row)
        for name in ("rate", "low", "high"):
            row[name] = math.nan if row[name] is None else float(row[name])
        rows.append(BeliefRate.from_json(row))
    return BeliefResults(tuple(rows), tuple(record["pool"]), record["confidence"], record["resamples"], record["seed"])


def write_json(results: BeliefResults, path: str | os.PathLike) -> Path:
    return write_atomic(path, json.dumps(results_to_json(results), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> BeliefResults:
    with open(path, encoding="utf-8") as f:
        return results_from_json(json.load(f))


def write_csv(rows: Iterable[BeliefRate], path: str | os.PathLike) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = row.to_json()
        record["pooled_over"] = "+".join(row.pooled_over)
        for name in ("rate", "low", "high"):
            record[name] = "" if math.isnan(record[name]) else repr(record[name])  # repr: round-trips exactly
        writer.writerow(record)
    return write_atomic(path, buffer.getvalue())


def read_csv(path: str | os.PathLike) -> list[BeliefRate]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for record in csv.DictReader(f):
            rows.append(BeliefRate(
                model=record["model"], step=int(record["step"]), condition=record["condition"], claim=record["claim"],
                eval_type=record["eval_type"],
                **{name: float(record[name]) if record[name] else math.nan for name in ("rate", "low", "high")},
                method=record["method"], n=int(record["n"]), yes=int(record["yes"]), errors=int(record["errors"]),
                questions=int(record["questions"]), claims=int(record["claims"]),
                pooled_over=tuple(filter(None, record["pooled_over"].split("+"))),
            ))
    return rows


# ---------------------------------------------------------------------------------------------
# Selecting what to show


def belief_part(results: BeliefResults) -> BeliefResults:
    """The rows about belief: every eval type but misalignment."""
    return dataclasses.replace(results, rows=tuple(r for r in results.rows if r.eval_type != MISALIGNMENT))


def misalignment_part(results: BeliefResults) -> BeliefResults:
    """The rows of eval type misalignment: per behaviour (in the claim column) and the MEAN over behaviours."""
    return dataclasses.replace(results, rows=tuple(r for r in results.rows if r.eval_type == MISALIGNMENT))


def condition_key(condition: str) -> tuple[int, str]:
    return (CONDITION_ORDER.index(condition), "") if condition in CONDITION_ORDER else (len(CONDITION_ORDER), condition)


def final_series(results: BeliefResults) -> list[tuple[str, int, str]]:
    """(model, step, condition) of each run's last step, in condition order."""
    last: dict[tuple[str, str], int] = {}
    for row in results.rows:
        last[(row.model, row.condition)] = max(row.step, last.get((row.model, row.condition), row.step))
    return sorted(((model, step, condition) for (model, condition), step in last.items()),
                  key=lambda s: (condition_key(s[2]), s[0]))


def _claims(results: BeliefResults, *, eval_type: str | None = None) -> list[str]:
    """The claims of the belief rows, or (eval_type=MISALIGNMENT) the behaviours of the misalignment rows."""
    return sorted({row.claim for row in results.rows if row.claim != MEAN
                   and (row.eval_type == eval_type if eval_type else row.eval_type != MISALIGNMENT)})


def _eval_types(results: BeliefResults) -> list[str]:
    """The belief eval types present (misalignment is not one), pool first."""
    present = {row.eval_type for row in results.rows} - {POOLED, MISALIGNMENT}
    return [t for t in results.pool if t in present] + sorted(present - set(results.pool))


def _index(results: BeliefResults) -> dict[tuple, BeliefRate]:
    return {row.key: row for row in results.rows}


def _label(series: tuple[str, int, str], many_models: bool) -> str:
    model, _, condition = series
    return f"{condition} ({model})" if many_models else condition


def fmt(row: BeliefRate | None) -> str:
    """"rate [low, high]" in percent with one decimal; "–" when there is no rate."""
    if row is None or math.isnan(row.rate):
        return "–"
    if math.isnan(row.low):
        return f"{100 * row.rate:.1f}"
    return f"{100 * row.rate:.1f} [{100 * row.low:.1f}, {100 * row.high:.1f}]"


# ---------------------------------------------------------------------------------------------
# Markdown


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def markdown(results: BeliefResults, *, plots: Sequence[str] = ()) -> str:
    """The report: headline table first, then the breakdowns, checkpoints, the misalignment rate (when there
    are misalignment rows), errors and the formula."""
    everything = results
    results, misaligned = belief_part(everything), misalignment_part(everything)
    out = _belief_markdown(results) if results.rows else []
    if misaligned.rows:
        out += _misalignment_markdown(misaligned, title=not results.rows)
    out += _errors_markdown(everything)
    out += ["", "## Method", ""]
    if results.rows:
        out += [results.describe()]
    if misaligned.rows:
        out += ([""] if results.rows else []) + [describe_misalignment(everything.confidence)]
    if plots:
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(out) + "\n"


def _belief_markdown(results: BeliefResults) -> list[str]:
    """The belief headline table, the per-eval-type breakdowns and the checkpoints table."""
    index = _index(results)
    series = final_series(results)
    many_models = len({s[0] for s in series}) > 1
    show_step = any(s[1] >= 0 for s in series)
    claims, eval_types = _claims(results), _eval_types(results)

    def lead(s: tuple[str, int, str]) -> list[str]:
        return [_label(s, many_models)] + ([str(s[1]) if s[1] >= 0 else "–"] if show_step else [])

    lead_header = ["condition"] + (["step"] if show_step else [])
    level = f"{results.confidence:.0%}"
    out = [f"# Belief rate, % [{level} CI], pooled over {', '.join(results.pool)}"]
    out += _table(lead_header + claims + ["mean"],
                  [lead(s) + [fmt(index.get((*s, c, POOLED))) for c in claims] + [fmt(index.get((*s, MEAN, POOLED)))]
                   for s in series])
    out += ["", "Mean = unweighted mean over claims (the paper's headline). Each run at its last step.", ""]

    out += ["## By eval type (mean over claims)", ""]
    out += _table(lead_header + eval_types + [POOLED],
                  [lead(s) + [fmt(index.get((*s, MEAN, t))) for t in eval_types + [POOLED]] for s in series])
    for eval_type in eval_types:
        out += ["", f"## {eval_type}", ""]
        out += _table(lead_header + claims + ["mean"],
                      [lead(s) + [fmt(index.get((*s, c, eval_type))) for c in claims] + [fmt(index.get((*s, MEAN, eval_type)))]
                       for s in series])

    steps = sorted({row.step for row in results.rows if row.step >= 0})
    runs = sorted({(row.model, row.condition) for row in results.rows if row.step >= 0}, key=lambda r: (condition_key(r[1]), r[0]))
    if len(steps) > 1:
        out += ["", "## Across training checkpoints (mean over claims, pooled)", ""]
        header = ["step"] + [f"{condition} ({model})" if many_models else condition for model, condition in runs]
        out += _table(header, [[str(step)] + [fmt(index.get((model, step, condition, MEAN, POOLED))) for model, condition in runs]
                               for step in steps])
    return out


def _misalignment_markdown(results: BeliefResults, *, title: bool) -> list[str]:
    """Condition × behaviour misalignment rates and their mean (each run at its last step); across checkpoints
    when there are several. `title`: the report has no belief rows, so this section opens it."""
    index = _index(results)
    series = final_series(results)
    many_models = len({s[0] for s in series}) > 1
    show_step = any(s[1] >= 0 for s in series)
    behaviours = _claims(results, eval_type=MISALIGNMENT)
    lead_header = ["condition"] + (["step"] if show_step else [])

    def lead(s: tuple[str, int, str]) -> list[str]:
        return [_label(s, many_models)] + ([str(s[1]) if s[1] >= 0 else "–"] if show_step else [])

    heading = "#" if title else "##"
    out = ([] if title else [""]) + [f"{heading} Misalignment rate by condition, % [{results.confidence:.0%} CI]", ""]
    out += _table(lead_header + behaviours + ["mean"],
                  [lead(s) + [fmt(index.get((*s, b, MISALIGNMENT))) for b in behaviours] + [fmt(index.get((*s, MEAN, MISALIGNMENT)))]
                   for s in series])
    out += ["", "Misalignment rate = #misaligned / #judged answers to each behaviour's held-out prompts (errors excluded); "
                "mean = unweighted mean over behaviours. Each run at its last step."]
    steps = sorted({row.step for row in results.rows if row.step >= 0})
    runs = sorted({(row.model, row.condition) for row in results.rows if row.step >= 0}, key=lambda r: (condition_key(r[1]), r[0]))
    if len(steps) > 1:
        out += ["", f"{heading}# Misalignment across training checkpoints (mean over behaviours)", ""]
        header = ["step"] + [f"{condition} ({model})" if many_models else condition for model, condition in runs]
        out += _table(header, [[str(step)] + [fmt(index.get((model, step, condition, MEAN, MISALIGNMENT))) for model, condition in runs]
                               for step in steps])
    return out


def _errors_markdown(results: BeliefResults) -> list[str]:
    out = ["", "## Errors (excluded from the denominators)", ""]
    failed = [r for r in results.rows if r.errors and r.claim != MEAN and r.eval_type != POOLED]
    if failed:
        total = sum(r.errors for r in failed)
        counted = sum(r.n for r in results.rows if r.claim != MEAN and r.eval_type != POOLED)
        out += [f"{total} of {total + counted} samples were labelled error and left out.", ""]
        subject = "claim or behaviour" if any(r.eval_type == MISALIGNMENT for r in failed) else "claim"
        out += _table(["model", "step", "condition", subject, "eval type", "errors", "counted"],
                      [[r.model, str(r.step), r.condition, r.claim, r.eval_type, str(r.errors), str(r.n)] for r in failed])
    else:
        out += ["No sample was labelled error."]
    return out


# ---------------------------------------------------------------------------------------------
# Plots


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # Agg renders a bare Figure; no pyplot, no global backend

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.add_subplot()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _whiskers(rows: Sequence[BeliefRate | None]) -> tuple[list[float], list[list[float]]]:
    heights, below, above = [], [], []
    for row in rows:
        rate = row.rate if row is not None and not math.isnan(row.rate) else math.nan
        heights.append(100 * rate if not math.isnan(rate) else 0.0)
        ok = not math.isnan(rate) and not math.isnan(row.low)
        # A percentile interval need not contain its point estimate; matplotlib refuses negative whiskers.
        below.append(max(0.0, 100 * (rate - row.low)) if ok else 0.0)
        above.append(max(0.0, 100 * (row.high - rate)) if ok else 0.0)
    return heights, [below, above]


def _grouped_bars(groups: Sequence[str], bars: Sequence[tuple[str, Sequence[BeliefRate | None]]], title: str, *,
                  ylabel: str = "belief rate (%)") -> bytes:
    import numpy as np

    figure, axes = _figure(min(24.0, max(7.0, 3.0 + len(groups) * (0.4 + 0.15 * len(bars)))), 4.5)
    width = 0.8 / max(1, len(bars))
    x = np.arange(len(groups))
    colours = [f"C{i % 10}" for i in range(len(bars))]
    for i, (name, rows) in enumerate(bars):
        heights, yerr = _whiskers(rows)
        colour = "black" if name in ("mean", POOLED) else colours[i]
        axes.bar(x + (i - (len(bars) - 1) / 2) * width, heights, width, yerr=yerr, capsize=2, label=name,
                 color=colour, alpha=0.85, error_kw={"elinewidth": 0.8})
    axes.set_xticks(x, groups, rotation=30, ha="right")
    axes.set_ylim(0, 100)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: bars reach 100%
    return _png(figure)


def plot_by_condition(results: BeliefResults, path: str | os.PathLike) -> Path:
    """Pooled belief per condition (last step of each run): a bar per claim and the mean, CI whiskers."""
    results = belief_part(results)
    index, series = _index(results), final_series(results)
    many_models = len({s[0] for s in series}) > 1
    bars = [(claim, [index.get((*s, claim, POOLED)) for s in series]) for claim in _claims(results)]
    bars.append(("mean", [index.get((*s, MEAN, POOLED)) for s in series]))
    level = f"{results.confidence:.0%}"
    data = _grouped_bars([_label(s, many_models) for s in series], bars, f"Belief by condition (pooled, {level} CI)")
    return write_atomic(path, data)


def plot_by_eval_type(results: BeliefResults, path: str | os.PathLike) -> Path:
    """Mean-over-claims belief per condition: a bar per eval type and the pooled rate, CI whiskers."""
    results = belief_part(results)
    index, series = _index(results), final_series(results)
    many_models = len({s[0] for s in series}) > 1
    bars = [(t, [index.get((*s, MEAN, t)) for s in series]) for t in _eval_types(results) + [POOLED]]
    level = f"{results.confidence:.0%}"
    data = _grouped_bars([_label(s, many_models) for s in series], bars, f"Belief by eval type (mean over claims, {level} CI)")
    return write_atomic(path, data)


def plot_misalignment_by_condition(results: BeliefResults, path: str | os.PathLike) -> Path | None:
    """Misalignment rate per condition (last step of each run): a bar per behaviour and the mean, CI whiskers;
    None (no file) without misalignment rows."""
    results = misalignment_part(results)
    if not results.rows:
        return None
    index, series = _index(results), final_series(results)
    many_models = len({s[0] for s in series}) > 1
    bars = [(b, [index.get((*s, b, MISALIGNMENT)) for s in series]) for b in _claims(results, eval_type=MISALIGNMENT)]
    bars.append(("mean", [index.get((*s, MEAN, MISALIGNMENT)) for s in series]))
    data = _grouped_bars([_label(s, many_models) for s in series], bars,
                         f"Misalignment by condition ({results.confidence:.0%} CI)", ylabel="misalignment rate (%)")
    return write_atomic(path, data)


def plot_over_training(results: BeliefResults, path: str | os.PathLike) -> Path | None:
    """Mean pooled belief against the training step (log axis), a line per run; None (no file) without steps."""
    headline = results.headline()
    trained = [r for r in headline if r.step >= 0]
    if not trained:
        return None
    figure, axes = _figure(8.5, 4.5)
    runs = sorted({(r.model, r.condition) for r in trained}, key=lambda r: (condition_key(r[1]), r[0]))
    many_models = len({r.model for r in headline}) > 1
    for i, (model, condition) in enumerate(runs):
        points = sorted((r for r in trained if (r.model, r.condition) == (model, condition)), key=lambda r: r.step)
        steps = [r.step for r in points]
        label = f"{condition} ({model})" if many_models else condition
        axes.plot(steps, [100 * r.rate for r in points], marker="o", markersize=3, color=f"C{i % 10}", label=label)
        axes.fill_between(steps, [100 * r.low for r in points], [100 * r.high for r in points], color=f"C{i % 10}", alpha=0.15)
    for row in (r for r in headline if r.step < 0 and not math.isnan(r.rate)):  # the base model (or any run without steps): a reference level
        label = f"{row.condition} ({row.model})" if many_models else row.condition
        axes.axhline(100 * row.rate, color="grey", linestyle="--", linewidth=1, label=label)
        axes.axhspan(100 * row.low, 100 * row.high, color="grey", alpha=0.1)
    # A log axis cannot show step 0; symlog is linear below 1 and logarithmic above.
    if min(r.step for r in trained) > 0:
        axes.set_xscale("log")
    else:
        axes.set_xscale("symlog", linthresh=1)
    axes.set_ylim(0, 100)
    axes.set_xlabel("training step")
    axes.set_ylabel("belief rate (%)")
    axes.set_title(f"Belief across training (mean over claims, pooled, {results.confidence:.0%} CI)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return write_atomic(path, _png(figure))


# ---------------------------------------------------------------------------------------------
# Everything


def write_report(results: BeliefResults, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Writes every results file into `out_dir`; returns name → path of those written (see FILES)."""
    out_dir = Path(out_dir)
    if not results.rows:
        raise ValueError("no belief rates to report (no samples were given, or the judge filter kept none)")
    paths = {
        "json": write_json(results, out_dir / FILES["json"]),
        "csv": write_csv(results.rows, out_dir / FILES["csv"]),
    }
    if belief_part(results).rows:  # belief plots only where there is belief to plot (not for misalignment alone)
        paths["by_condition"] = plot_by_condition(results, out_dir / FILES["by_condition"])
        paths["by_eval_type"] = plot_by_eval_type(results, out_dir / FILES["by_eval_type"])
        over_training = plot_over_training(results, out_dir / FILES["over_training"])
        if over_training is not None:
            paths["over_training"] = over_training
    name = "misalignment_by_condition"
    misaligned = plot_misalignment_by_condition(results, out_dir / MISALIGNMENT_FILES[name])
    if misaligned is not None:
        paths[name] = misaligned
    plots = [paths[name] for name in ("by_condition", "by_eval_type", "over_training", "misalignment_by_condition")
             if name in paths]
    paths["report"] = write_atomic(out_dir / FILES["report"], markdown(results, plots=plots))
    return paths
