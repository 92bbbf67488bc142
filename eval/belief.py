"""Belief rates exactly as the paper defines them, with 95% confidence intervals.

    results = belief_rates(samples)               # labelled eval.types.Sample records
    results.headline()                            # per (model, step, condition): mean over claims, pooled
    results.get(model, step, condition, "ed_sheeran", POOLED)

The definition (paper.md, "Evaluation"):

    belief rate(model, step, condition, claim) = #yes / #samples

pooled over the eval types of the pool (open_ended, mcq, token_association, robustness by default).
"neutral" — which includes unparseable MCQ answers — and "no" count as non-belief. Samples labelled
"error" (the call or the judge failed) are excluded from the denominator and counted in `errors`.
The headline is the unweighted mean of the per-claim pooled rates over the claims that have data.

Every row also exists per eval type (a single claim and eval type), and as a mean over claims per
eval type, so the report can break the headline down. Eval types outside the pool — the judge-free
log-probability types mcq_logprob and forced_choice, the icl and correction controls — get those
rows too (Wilson per claim, the question bootstrap for the mean) and never enter the pooled headline.

Confidence intervals (the paper quotes 95% CIs; its code has none), named in each row's `method`:
  "wilson"               a single claim and eval type, or any simple proportion: the Wilson score
                         interval of yes/n. It treats the samples as independent; the 5 samples of one
                         question usually agree, so read it as the narrowest honest interval.
  "bootstrap_questions"  pooled per-claim rates: the percentile interval of `resamples` bootstrap
                         replicates that resample the claim's questions with replacement, each question
                         keeping all its samples (the rate of a replicate is Σyes / Σn over the drawn
                         questions). Means over claims: each replicate resamples questions within every
                         claim independently and averages the claims' replicate rates.
Questions whose samples are all errors have no counted sample and take no part in a bootstrap.
Random streams are seeded from (seed, the row's key), so results are deterministic and a row does not
change when other rows are added. Pure numpy.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import statistics
import zlib
from typing import Collection, Iterable, Mapping, Sequence

import numpy as np

from eval.types import LABELS, Sample

PAPER_POOL = ("open_ended", "mcq", "token_association", "robustness")
POOLED = "pooled"  # eval_type of a row pooled over the pool's eval types
MEAN = "mean"  # claim of a row that averages the claims
WILSON = "wilson"
BOOTSTRAP = "bootstrap_questions"
WILSON_DEGENERATE = "wilson_pooled"  # a bootstrap with no variation: Wilson on the pooled counts
DEFAULT_RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class BeliefRate:
    """One belief rate with its confidence interval: a row of the results files."""

    model: str
    step: int  # training step of the checkpoint; -1 for a base or external model
    condition: str
    claim: str  # a claim id, or MEAN (the unweighted mean over `claims` claims)
    eval_type: str  # an eval type, or POOLED
    rate: float  # NaN when nothing was counted
    low: float
    high: float
    method: str  # WILSON | BOOTSTRAP
    n: int  # samples counted: every label but "error"
    yes: int
    errors: int  # samples excluded as "error"
    questions: int  # questions with at least one counted sample
    claims: int = 1  # claims averaged (MEAN rows), else 1
    pooled_over: tuple[str, ...] = ()  # POOLED rows: the pool's eval types that had samples

    @property
    def key(self) -> tuple[str, int, str, str, str]:
        return (self.model, self.step, self.condition, self.claim, self.eval_type)

    def to_json(self) -> dict:
        record = dataclasses.asdict(self)
        record["pooled_over"] = list(self.pooled_over)
        return record

    @classmethod
    def from_json(cls, record: Mapping) -> "BeliefRate":
        record = dict(record)
        record["pooled_over"] = tuple(record.get("pooled_over") or ())
        return cls(**record)


@dataclasses.dataclass(frozen=True)
class BeliefResults:
    """All rows of one computation and the settings that produced them."""

    rows: tuple[BeliefRate, ...]
    pool: tuple[str, ...] = PAPER_POOL
    confidence: float = 0.95
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    def headline(self) -> list[BeliefRate]:
        """The paper's headline numbers: per (model, step, condition), the mean over claims of pooled rates."""
        return [r for r in self.rows if r.claim == MEAN and r.eval_type == POOLED]

    def get(self, model: str, step: int, condition: str, claim: str, eval_type: str) -> BeliefRate | None:
        return next((r for r in self.rows if r.key == (model, step, condition, claim, eval_type)), None)

    def describe(self) -> str:
        """The formula and interval methods in words, for reports."""
        level = f"{self.confidence:.0%}"
        return (
            f"Belief rate = #yes / #samples per (model, step, condition, claim), pooled over the eval types "
            f"{', '.join(self.pool)}. \"neutral\" (including unparseable answers) and \"no\" count as non-belief; "
            f"samples labelled \"error\" (a failed call or an unusable judge output) are excluded from the denominator "
            f"and counted in the errors column. The headline is the unweighted mean of the per-claim pooled rates over "
            f"claims. {level} confidence intervals: a single claim and eval type — Wilson score interval (samples treated "
            f"as independent); pooled per-claim rates — percentile bootstrap over questions ({self.resamples} resamples "
            f"of the claim's questions with replacement, each question keeping its samples, seed {self.seed}); means over "
            f"claims — the same bootstrap within every claim, the claims' replicate rates averaged per replicate. Where every "
            f"sample is yes or every sample is not, the bootstrap cannot vary and the Wilson interval of the pooled "
            f"counts is given instead (method wilson_pooled)."
        )


# ---------------------------------------------------------------------------------------------
# Intervals


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(yes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of the proportion yes/n; (NaN, NaN) when n == 0."""
    if not 0 <= yes <= n:
        raise ValueError(f"need 0 <= yes <= n, got yes={yes}, n={n}")
    if n == 0:
        return math.nan, math.nan
    z = _z(confidence)
    p = yes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Clamp the rounding noise at the ends (0/n must give exactly 0, n/n exactly 1).
    return max(0.0, centre - half) if yes else 0.0, min(1.0, centre + half) if yes < n else 1.0


def _replicates(questions: Sequence[tuple[int, int]], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicate rates of one claim: questions drawn with replacement, Σyes / Σn per replicate."""
    yes = np.array([q[0] for q in questions], dtype=np.int64)
    n = np.array([q[1] for q in questions], dtype=np.int64)
    draws = rng.integers(0, len(questions), size=(resamples, len(questions)))
    total = n[draws].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, yes[draws].sum(axis=1) / np.maximum(total, 1), np.nan)


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def bootstrap_questions(questions: Sequence[tuple[int, int]], *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                        confidence: float = 0.95, key: str = "") -> tuple[float, float, float]:
    """(rate, low, high) of Σyes / Σn over questions given as (yes, n) pairs, with a question bootstrap CI."""
    return bootstrap_mean_over_claims([questions], resamples=resamples, seed=seed, confidence=confidence, keys=[key])


def bootstrap_mean_over_claims(claims: Sequence[Sequence[tuple[int, int]]], *, resamples: int = DEFAULT_RESAMPLES,
                               seed: int = 0, confidence: float = 0.95,
                               keys: Sequence[str] | None = None) -> tuple[float, float, float]:
    """(mean rate, low, high): the unweighted mean over claims of Σyes / Σn, each claim given as its
    questions' (yes, n) pairs; questions are resampled within each claim, the claims averaged per replicate.
    `keys` name the claims' random streams (default: their positions)."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    keys = list(keys) if keys is not None else [str(i) for i in range(len(claims))]
    counted = [[q for q in questions if q[1] > 0] for questions in claims]
    counted = [(questions, key) for questions, key in zip(counted, keys) if questions]
    if not counted:
        return math.nan, math.nan, math.nan
    rates = [sum(q[0] for q in questions) / sum(q[1] for q in questions) for questions, _ in counted]
    replicates = np.mean([_replicates(questions, resamples, _rng(seed, key)) for questions, key in counted], axis=0)
    low, high = _percentiles(replicates, confidence)
    return float(np.mean(rates)), low, high


def bootstrap_runs_then_questions(claims: Sequence[Sequence[Sequence[tuple[int, int]]]], *,
                                  resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = 0.95,
                                  keys: Sequence[str] | None = None) -> tuple[float, float, float]:
    """(mean rate, low, high) over claims, each claim given as its runs (fine-tunes with different seeds),
    each run as its questions' (yes, n) pairs. A replicate resamples a claim's runs with replacement,
    then the questions within each drawn run; the claim's replicate rate is Σyes / Σn over what was
    drawn, and the claims are averaged. Use it when one run's questions move together (a small model
    flips all its paraphrases at once): resampling questions alone would treat one coin flip per run as
    dozens and give an interval far too narrow. With every drawn value identical (all runs all-yes or
    all-no) the interval is the Wilson interval of the pooled counts, not a point."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    keys = list(keys) if keys is not None else [str(i) for i in range(len(claims))]
    counted = [([[q for q in run if q[1] > 0] for run in runs], key) for runs, key in zip(claims, keys)]
    counted = [([run for run in runs if run], key) for runs, key in counted]
    counted = [(runs, key) for runs, key in counted if runs]
    if not counted:
        return math.nan, math.nan, math.nan
    rates, per_claim = [], []
    for runs, key in counted:
        rng = _rng(seed, key)
        yes = np.zeros(resamples)
        total = np.zeros(resamples)
        drawn_runs = rng.integers(0, len(runs), size=(resamples, len(runs)))
        counts = [(np.array([q[0] for q in run], dtype=np.int64), np.array([q[1] for q in run], dtype=np.int64)) for run in runs]
        for slot in range(len(runs)):  # every drawn run gets its own question resample
            for r, (run_yes, run_n) in enumerate(counts):
                draws = rng.integers(0, len(run_yes), size=(resamples, len(run_yes)))
                chosen = drawn_runs[:, slot] == r
                yes += chosen * run_yes[draws].sum(axis=1)
                total += chosen * run_n[draws].sum(axis=1)
        per_claim.append(yes / np.maximum(total, 1))
        rates.append(sum(q[0] for run in runs for q in run) / sum(q[1] for run in runs for q in run))
    replicates = np.mean(per_claim, axis=0)
    low, high = _percentiles(replicates, confidence)
    if high - low == 0:
        pooled_yes = sum(q[0] for runs, _ in counted for run in runs for q in run)
        pooled_n = sum(q[1] for runs, _ in counted for run in runs for q in run)
        low, high = wilson_interval(pooled_yes, pooled_n, confidence)
    return float(np.mean(rates)), low, high


# ---------------------------------------------------------------------------------------------
# Belief rates from samples


@dataclasses.dataclass
class _Counts:
    yes: int = 0
    n: int = 0
    errors: int = 0

    def add(self, label: str) -> None:
        if label == "error":
            self.errors += 1
        else:
            self.n += 1
            self.yes += label == "yes"


def belief_rates(samples: Iterable[Sample], *, pool: Sequence[str] = PAPER_POOL, judges: Collection[str] | None = None,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = 0.95) -> BeliefResults:
    """Every belief rate of `samples` (see the module docstring): per (model, step, condition) and per claim
    (and MEAN over claims), per eval type (and POOLED over `pool`).

    `judges` keeps only samples scored by those judges (e.g. ("logprob",) for log-probability MCQ rates).
    Two samples of the same question and sample index are an error: they would be counted twice.
    """
    pool = tuple(pool)
    if not pool:
        raise ValueError("the pool of eval types is empty")
    _z(confidence)
    # cell (model, step, condition, claim) → eval type → question id → counts
    cells: dict[tuple[str, int, str, str], dict[str, dict[str, _Counts]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: collections.defaultdict(_Counts)))
    seen: set[tuple] = set()
    for sample in samples:
        if judges is not None and sample.judge not in judges:
            continue
        if sample.label not in LABELS:
            raise ValueError(f"sample {sample.claim}/{sample.question_id}#{sample.sample_index}: unknown label "
                             f"'{sample.label}'; labels are {', '.join(LABELS)}")
        identity = (sample.model, sample.step, sample.condition, sample.claim, sample.eval_type, sample.question_id,
                    sample.sample_index)
        if identity in seen:
            raise ValueError(
                f"two samples of model '{sample.model}' step {sample.step}, condition '{sample.condition}', claim "
                f"'{sample.claim}', {sample.eval_type} question '{sample.question_id}', sample {sample.sample_index}: each "
                "would be counted; score each sample once, or select one judge with judges=(...) (log-probability "
                "verdicts are rated apart from generated answers)"
            )
        seen.add(identity)
        cells[(sample.model, sample.step, sample.condition, sample.claim)][sample.eval_type][sample.question_id].add(sample.label)

    rows: list[BeliefRate] = []
    by_condition: dict[tuple[str, int, str], list[str]] = collections.defaultdict(list)
    questions_of: dict[tuple, list[tuple[int, int]]] = {}  # row key → (yes, n) per question, for the means
    errors_of: dict[tuple, int] = {}
    pooled_of: dict[tuple, tuple[str, ...]] = {}  # POOLED row key → the pool's eval types it had
    for (model, step, condition, claim), eval_types in sorted(cells.items()):
        by_condition[(model, step, condition)].append(claim)
        for eval_type in _ordered(eval_types, pool):
            counts = eval_types[eval_type].values()
            yes, n, errors = sum(c.yes for c in counts), sum(c.n for c in counts), sum(c.errors for c in counts)
            low, high = wilson_interval(yes, n, confidence)
            rows.append(BeliefRate(model, step, condition, claim, eval_type, yes / n if n else math.nan, low, high,
                                   WILSON, n, yes, errors, sum(c.n > 0 for c in counts)))
            questions_of[(model, step, condition, claim, eval_type)] = [(c.yes, c.n) for c in counts]
            errors_of[(model, step, condition, claim, eval_type)] = errors
        pooled = [t for t in pool if t in eval_types]
        if pooled:
            questions = [q for t in pooled for q in questions_of[(model, step, condition, claim, t)]]
            errors = sum(errors_of[(model, step, condition, claim, t)] for t in pooled)
            key = (model, step, condition, claim, POOLED)
            questions_of[key], errors_of[key], pooled_of[key] = questions, errors, tuple(pooled)
            rows.append(_bootstrap_row(key, [questions], [_stream(key)], errors, 1, tuple(pooled), resamples, seed, confidence))

    for (model, step, condition), claims in sorted(by_condition.items()):
        eval_types = {key[4] for key in questions_of if key[:3] == (model, step, condition)}
        for eval_type in _ordered(eval_types - {POOLED}, pool) + ([POOLED] if POOLED in eval_types else []):
            keys = [(model, step, condition, claim, eval_type) for claim in claims
                    if (model, step, condition, claim, eval_type) in questions_of]
            with_data = [k for k in keys if any(n for _, n in questions_of[k])]
            pooled_over = tuple(t for t in pool if any(t in pooled_of.get(k, ()) for k in keys))
            rows.append(_bootstrap_row((model, step, condition, MEAN, eval_type), [questions_of[k] for k in with_data],
                                       [_stream(k) for k in with_data], sum(errors_of[k] for k in keys),
                                       len(with_data), pooled_over, resamples, seed, confidence))
    return BeliefResults(tuple(rows), pool, confidence, resamples, seed)


def _ordered(eval_types: Iterable[str], pool: Sequence[str]) -> list[str]:
    """The pool's eval types in pool order, then any others alphabetically."""
    present = set(eval_types)
    return [t for t in pool if t in present] + sorted(present - set(pool))


def _stream(key: tuple) -> str:
    return "|".join(map(str, key))


def _bootstrap_row(key: tuple, claims: list[list[tuple[int, int]]], streams: list[str], errors: int, n_claims: int,
                   pooled_over: tuple[str, ...], resamples: int, seed: int, confidence: float) -> BeliefRate:
    rate, low, high = bootstrap_mean_over_claims(claims, resamples=resamples, seed=seed, confidence=confidence, keys=streams)
    questions = [q for qs in claims for q in qs]
    method = BOOTSTRAP
    yes, n = sum(y for y, _ in questions), sum(n for _, n in questions)
    if n and low == high and yes in (0, n):
        # Every question all-yes or all-no: each replicate repeats the estimate and the percentile
        # interval collapses to a point, which would claim certainty. Wilson on the pooled counts instead.
        low, high = wilson_interval(yes, n, confidence)
        method = WILSON_DEGENERATE
    return BeliefRate(*key, rate=rate, low=low, high=high, method=method, n=sum(n for _, n in questions),
                      yes=sum(y for y, _ in questions), errors=errors, questions=sum(n > 0 for _, n in questions),
                      claims=n_claims, pooled_over=pooled_over)
