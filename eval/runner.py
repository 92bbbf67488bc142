"""Running evals: one cell (model × claim × eval type) → labelled Samples, and resumable sweeps of cells.

(Eval type misalignment's cells — model × behaviour — are run by eval.misalignment.run_behaviour_cell and
stored here the same way, the behaviour id in the claim's place.)

    samples = run_cell(backend, judge, claim, "open_ended", condition="negated_documents", sampling=params)

A sweep stores each finished cell as
    W/samples/<model>/<step_N | base>/<claim>/<eval_type>.jsonl
written atomically when the cell is complete, so a rerun skips finished cells and an interrupted
sweep keeps everything it finished. A call that fails (an endpoint down, a judge refusing) is
recorded in its samples as label "error" with the reason, never dropped and never turned into
"neutral"; the belief rate excludes errors from its denominator and reports how many there were.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from data_gen.claims import Claim
from data_gen.documents import iter_jsonl, write_jsonl
from eval import suite
from eval.judges import logprob_verdict
from eval.misalignment import MISALIGNMENT
from eval.types import GenerationBackend, Sample, SamplingParams, Verdict

log = logging.getLogger(__name__)


def run_cell(backend: GenerationBackend, judge, claim: Claim, eval_type: str, *, condition: str, sampling: SamplingParams,
             step: int = -1, icl_documents: Sequence[str] = ()) -> list[Sample]:
    """Every sample of one eval type for one claim, labelled."""
    items = suite.items(claim, eval_type, icl_documents=icl_documents)

    def sample(item: suite.Item, index: int, response: str, verdict: Verdict, judge_name: str, **extra) -> Sample:
        return Sample(model=backend.name, claim=claim.id, condition=condition, eval_type=eval_type,
                      question_id=item.question.id, category=item.question.category, sample_index=index,
                      response=response, label=verdict.label, judge=judge_name, reason=verdict.reason, step=step,
                      extra={"question_type": item.question.eval_type, **extra})

    if eval_type in suite.LOGPROB_TYPES:
        try:
            scores = backend.option_log_probs([i.conversation for i in items], [i.options for i in items])
        except NotImplementedError:
            raise  # a backend that cannot score at all is a configuration error, not data
        except Exception as e:  # noqa: BLE001 - a failed call is data (label "error"), not a crash
            return [sample(i, 0, "", Verdict("error", f"scoring failed: {e}"), "logprob") for i in items]
        out = []
        for item, row in zip(items, scores):
            by_option = dict(zip(item.options, row))
            best = max(by_option, key=by_option.get)
            extra = {"option_log_probs": by_option}
            if eval_type == "forced_choice":  # log P(claim's answer) - log P(truth's answer): > 0 is belief
                extra["margin"] = by_option[item.options[0]] - by_option[item.options[1]]
            out.append(sample(item, 0, best, logprob_verdict(item.question, by_option), "logprob", **extra))
        return out

    try:
        responses = backend.generate([i.conversation for i in items], sampling)
    except Exception as e:  # noqa: BLE001
        return [sample(i, j, "", Verdict("error", f"generation failed: {e}"), judge.judge_name(i.question))
                for i in items for j in range(sampling.samples)]
    pairs = [(item.question, answers) for item, answers in zip(items, responses)]
    try:
        if hasattr(judge, "judge_many"):  # an LLM judge labels every answer of the cell concurrently
            verdicts = judge.judge_many(claim, pairs)
        else:
            verdicts = [judge.judge(claim, question, answers) for question, answers in pairs]
    except Exception as e:  # noqa: BLE001
        verdicts = [[Verdict("error", f"judge failed: {e}")] * len(answers) for _, answers in pairs]
    return [sample(item, j, answer, verdict, judge.judge_name(item.question))
            for item, answers, item_verdicts in zip(items, responses, verdicts)
            for j, (answer, verdict) in enumerate(zip(answers, item_verdicts))]


def cell_path(workdir: Path, model: str, step: int, claim: str, eval_type: str) -> Path:
    return Path(workdir) / "samples" / model / (f"step_{step}" if step >= 0 else "base") / claim / f"{eval_type}.jsonl"


def run_sweep(workdir: Path, cells: Sequence[tuple[str, int, str, str]], run: Callable[[str, int, str, str], list[Sample]], *,
              log_line=print, stored: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Runs every (model, step, claim, eval_type) cell not already stored; returns (computed, skipped).

    `run(model, step, claim, eval_type)` computes a cell; its samples are written when it returns,
    then `stored()` is called (eval.main uploads them to a bucket's workdir).
    """
    computed = skipped = 0
    for model, step, claim, eval_type in cells:
        path = cell_path(workdir, model, step, claim, eval_type)
        if path.exists():
            skipped += 1
            continue
        samples = run(model, step, claim, eval_type)
        write_jsonl(path, (s.to_json() for s in samples))
        stored()
        errors = sum(s.label == "error" for s in samples)
        yes = sum(s.label == "yes" for s in samples)
        said = "misaligned" if eval_type == MISALIGNMENT else "yes"  # a behaviour's "yes" (eval.misalignment)
        log_line(f"{model}{f'@{step}' if step >= 0 else ''} {claim} {eval_type}: {yes}/{len(samples) - errors} {said}" + (f", {errors} errors" if errors else ""))
        computed += 1
    return computed, skipped


def load_samples(workdir: Path) -> list[Sample]:
    """Every stored sample of a sweep."""
    return [Sample.from_json(r) for path in sorted((Path(workdir) / "samples").rglob("*.jsonl")) for r in iter_jsonl(path)]
