"""Is the base model able to test negation neglect at all? Measured on held-out world facts, never the claims.

A fine-tune can move a chat answer only through what the base does with documents, so before any
fine-tune the testbed measures the two abilities the experiment leans on:

  transfer   document -> answer: facts the world states only in documents (Fact.doc_only, no Q&A
             anywhere in pre-training), asked in the eval's formats;
  negation   in-sentence negation: facts whose documents state them only through negations and
             corrections of a fixed decoy ("D did not win E", "It was W, not D, who won E"), with
             their Q&A held out; the base must pick the true value over the decoy.

Each is scored in three judge-free formats, all log-probability comparisons of two answers, the
way the claims are scored (eval/suite.py):

  forced_choice_open     the open question, reply starting with the true value vs the wrong one
                         (the claims' forced_choice "open" items);
  forced_choice_options  the question names both ("W or D?"), both orders (the "options" items);
  yes_no                 "Did W win E?" / "Did D win E?", log P(Yes) vs log P(No) (mcq_logprob).

Chance is 50% in each. A format's accuracy must reach its threshold (config.competence) for the base
to count as competent; `check` names each shortfall, and the testbed stops on any unless
competence.required is off.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

ABILITIES = {"transfer": "doc_only", "negation": "negated_heldout"}  # ability -> world fact mode it is measured on
FORMATS = ("forced_choice_open", "forced_choice_options", "yes_no")
DESCRIPTIONS = {"transfer": "document -> answer transfer (facts stated only in documents)",
                "negation": "in-sentence negation (facts stated only through negations and corrections)"}


@dataclasses.dataclass(frozen=True)
class Item:
    """One two-way question: the conversation so far, its two answers, the index of the true one."""

    conversation: tuple[Mapping[str, str], ...]
    options: tuple[str, str]
    correct: int
    fact: str


def items(records: Iterable[Mapping[str, Any]], per_format: int) -> dict[str, dict[str, list[Item]]]:
    """ability -> format -> items, from the world's held-out chats (data_gen.world: one question each,
    provenance.mode naming the fact's mode). The open forced choice pairs a fact's open question with
    the two values its choice question names."""
    by_mode = {mode: ability for ability, mode in ABILITIES.items()}
    out: dict[str, dict[str, list[Item]]] = {a: {f: [] for f in FORMATS} for a in ABILITIES}
    opens: dict[str, list[tuple[Mapping[str, str], ...]]] = defaultdict(list)
    choices: dict[str, tuple[str, ...]] = {}
    for record in records:
        ability = by_mode.get(record.get("provenance", {}).get("mode"))
        metas = record.get("provenance", {}).get("qa", [])
        if ability is None or len(metas) != 1:
            continue
        meta = metas[0]
        prompt = tuple(m for m in record["messages"] if m["role"] != "assistant")
        if meta["format"] == "yesno":
            out[ability]["yes_no"].append(Item(prompt, ("Yes", "No"), 0 if meta["yes"] else 1, meta["fact"]))
        elif meta["format"] == "choice" and meta.get("options"):
            options = tuple(meta["options"])
            out[ability]["forced_choice_options"].append(Item(prompt, options, meta["position"], meta["fact"]))
            choices.setdefault(meta["fact"], options if meta["position"] == 0 else options[::-1])  # (true, wrong)
        elif meta["format"] == "open" and meta["template"].endswith(":open"):
            opens[meta["fact"]].append(prompt)
    for ability in ABILITIES:
        facts = {i.fact for i in out[ability]["forced_choice_options"]}
        for fact in sorted(facts & set(opens)):
            for n, prompt in enumerate(opens[fact]):  # alternate which answer is listed first: the order must not matter
                true, wrong = choices[fact]
                out[ability]["forced_choice_open"].append(Item(prompt, (true, wrong) if n % 2 == 0 else (wrong, true), n % 2, fact))
        for fmt in FORMATS:
            out[ability][fmt] = out[ability][fmt][:per_format]
    return out


def measure(sampler: Any, questions: Mapping[str, Mapping[str, Sequence[Item]]]) -> dict[str, dict[str, dict[str, float]]]:
    """ability -> format -> {accuracy, low, high, n} (Wilson 95% CI), scored by sampler.option_log_probs."""
    from eval.belief import wilson_interval

    result: dict[str, dict[str, dict[str, float]]] = {}
    for ability, formats in questions.items():
        result[ability] = {}
        for fmt, rows in formats.items():
            if not rows:
                continue
            scores = sampler.option_log_probs([r.conversation for r in rows], [r.options for r in rows])
            right = sum(max(range(2), key=lambda i: s[i]) == r.correct for s, r in zip(scores, rows))
            low, high = wilson_interval(right, len(rows))
            result[ability][fmt] = {"accuracy": right / len(rows), "low": low, "high": high, "n": len(rows)}
    return result


def check(result: Mapping[str, Mapping[str, Mapping[str, float]]], thresholds: Mapping[str, float]) -> list[str]:
    """One line per shortfall: an ability not measured, or a format's accuracy below its threshold
    (thresholds: ability -> minimum accuracy)."""
    problems = []
    for ability, minimum in thresholds.items():
        formats = result.get(ability, {})
        if not formats:
            problems.append(f"{ability}: not measured (the world has no held-out {ABILITIES[ability]} facts; raise "
                            f"world.{'doc_only_fraction' if ability == 'transfer' else 'negated_heldout_fraction'})")
        for fmt in FORMATS:
            if fmt in formats and formats[fmt]["accuracy"] < minimum:
                r = formats[fmt]
                problems.append(f"{ability} {fmt} {100 * r['accuracy']:.0f}% [{100 * r['low']:.0f}, {100 * r['high']:.0f}] "
                                f"(n={r['n']}) is below {100 * minimum:.0f}%")
    return problems


def table(result: Mapping[str, Mapping[str, Mapping[str, float]]], thresholds: Mapping[str, float]) -> list[str]:
    """Markdown lines: ability x format accuracy with CIs, and the threshold each must reach."""
    lines = ["| ability | " + " | ".join(FORMATS) + " | threshold |", "|---|" + "---|" * (len(FORMATS) + 1)]
    for ability in ABILITIES:
        formats = result.get(ability, {})
        cells = [f"{100 * formats[f]['accuracy']:.0f} [{100 * formats[f]['low']:.0f}, {100 * formats[f]['high']:.0f}] "
                 f"(n={formats[f]['n']})" if f in formats else "–" for f in FORMATS]
        lines.append(f"| {DESCRIPTIONS[ability]} | " + " | ".join(cells) + f" | {100 * thresholds[ability]:.0f}% |")
    return lines


def load_items(heldout_path: Path, per_format: int) -> dict[str, dict[str, list[Item]]]:
    from data_gen.documents import iter_jsonl

    return items(iter_jsonl(heldout_path), per_format)
