"""The testbed's stages, in order; each is skipped when its output is already in the workdir.

    world       W/world/train.jsonl, heldout.jsonl      data_gen.world (the base model's corpus)
    tokenizer   W/tokenizer                             data_gen.tokenizer, trained on the world
    base        W/base (nn_train run), W/base/hf        pre-trained from scratch, exported to HF format
    data        W/data/tfds/negation_neglect_mix/testbed_s<seed>__<condition>
                                                        every claim's condition documents + world replay
    finetunes   W/runs/<condition>_s<seed>              nn_train, full fine-tunes of W/base/hf
    eval        W/eval                                  eval.main: samples, results.json, eval report

A stage's outputs are written atomically and a small `stage.json` beside them records the config
that made them; a rerun with a different config stops with one line naming the key, instead of
mixing outputs of two configs. nn_train runs resume from their last checkpoint; eval cells
already stored are not recomputed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import ml_collections

from data_gen.claims import load_claim
from data_gen.documents import write_jsonl
from data_gen.llm.cache import write_json_atomic
from testbed.config import split

Log = Callable[[str], None]
MIX_PREFIX = "testbed_s"  # mix names: testbed_s<seed>__<condition>


class TestbedError(Exception):
    """A stage cannot run as configured, or the workdir holds another config's outputs; one line."""

    __test__ = False  # not a pytest test class, whatever its name


class BaseNotCompetent(TestbedError):
    """The competence check failed with competence.required set; carries the measurement for the report."""

    def __init__(self, message: str, competence: dict[str, Any]):
        super().__init__(message)
        self.competence = competence


def mix_name(seed: int, condition: str) -> str:
    return f"{MIX_PREFIX}{seed}__{condition}"


def run_name(condition: str, seed: int) -> str:
    return f"{condition}_s{seed}"


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys, so a mismatch names the one field that differs."""
    out = {}
    for name, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = list(value) if isinstance(value, tuple) else value
    return out


def _defaults(key: str) -> dict[str, Any]:
    """The default config's settings under `key` (base, finetune, behaviours), flattened; {} for others."""
    from testbed.config import default_config

    section = default_config().get(key)
    return _flat(section.to_dict()) if isinstance(section, ml_collections.ConfigDict) else {}


def _check_stage(directory: Path, key: str, settings: dict[str, Any], marker: str = "stage.json") -> bool:
    """True when `directory` holds this stage's finished outputs for these settings; raises when it
    holds another config's."""
    path = directory / marker
    if not path.exists():
        return False
    saved = _flat(json.loads(path.read_text()))
    defaults = _defaults(key)
    for name, value in _flat(settings).items():
        if name not in saved and name in defaults and value == defaults[name]:
            continue  # a setting added after this stage was built, left at its default: what the stage ran with
        if saved.get(name) != value:
            raise TestbedError(
                f"'{directory}' was built with {key}.{name}={saved.get(name)!r}, but this config has {value!r}; "
                f"use a new --workdir, or delete '{directory}' to rebuild it")
    return True


def _finish_stage(directory: Path, settings: dict[str, Any], marker: str = "stage.json", **extra: Any) -> None:
    write_json_atomic(directory / marker, {**settings, **extra}, pretty=True)


# ---------------------------------------------------------------------------------------------
# World and tokenizer


def world(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> Path:
    from data_gen.world import WorldSpec, build_world

    out = workdir / "world"
    settings = config.world.to_dict()
    if _check_stage(out, "world", settings):
        return out
    start = time.perf_counter()
    built = build_world(WorldSpec(**settings))
    write_jsonl(out / "train.jsonl", built.train_records)
    write_jsonl(out / "heldout.jsonl", built.heldout_records)
    _finish_stage(out, settings, records=len(built.train_records), words=built.approximate_words())
    log(f"world: {len(built.train_records):,} records, {built.approximate_words():,} words, "
        f"{len(built.heldout_records)} held-out Q&A ({time.perf_counter() - start:.0f} s)")
    return out


def tokenizer(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> Path:
    from data_gen.documents import iter_jsonl
    from data_gen.tokenizer import train_tokenizer
    from data_gen.world.build import record_text

    out = workdir / "tokenizer"
    settings = {"vocab_size": config.tokenizer_vocab_size, "world": config.world.to_dict()}
    if _check_stage(out, "tokenizer", settings):
        return out
    start = time.perf_counter()
    staging = workdir / "tokenizer.partial"
    shutil.rmtree(staging, ignore_errors=True)
    train_tokenizer((record_text(r) for r in iter_jsonl(workdir / "world" / "train.jsonl")), config.tokenizer_vocab_size, staging)
    _finish_stage(staging, settings)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    log(f"tokenizer: {config.tokenizer_vocab_size} tokens ({time.perf_counter() - start:.0f} s)")
    return out


# ---------------------------------------------------------------------------------------------
# Base model


def base_config(config: ml_collections.ConfigDict, workdir: Path) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(config.base.to_dict())
    c.data.source = "jsonl"
    c.data.path = str(workdir / "world" / "train.jsonl")
    c.data.tokenizer = str(workdir / "tokenizer")
    return c


def base(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> Path:
    """Pre-trains the base model (resuming an interrupted run) and exports it to W/base/hf."""
    from eval.models import load_run
    from nn_train.models.hf_checkpoint import export_hf_model
    from nn_train.trainer import train

    run_dir, hf_dir = workdir / "base", workdir / "base" / "hf"
    settings = config.base.to_dict()
    if _check_stage(run_dir, "base", settings) and (hf_dir / "config.json").exists():
        return hf_dir
    start = time.perf_counter()
    log("base: pre-training from scratch on the world corpus")
    summary = train(base_config(config, workdir), run_dir)
    loaded = load_run(run_dir)
    staging = run_dir / "hf.partial"
    export_hf_model(loaded.model, staging, overwrite=True)
    loaded.tokenizer.save_pretrained(str(staging))
    shutil.rmtree(hf_dir, ignore_errors=True)  # an export from before an interruption of this step
    os.replace(staging, hf_dir)
    _finish_stage(run_dir, settings, num_steps=summary["num_steps"])
    loss = summary["final_metrics"].get("loss")
    log(f"base: {summary['num_steps']} steps, final loss {loss:.3f} ({time.perf_counter() - start:.0f} s)" if loss is not None
        else f"base: {summary['num_steps']} steps ({time.perf_counter() - start:.0f} s)")
    return hf_dir


# ---------------------------------------------------------------------------------------------
# Fine-tuning data


def data(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> Path:
    """One TFDS mix per (seed, condition): every claim's condition documents, DOCTAG-prefixed, and
    world records that mention none of the claims (their subjects and answers) as replay."""
    from data_gen.generate import template_corpora
    from data_gen.mixing import MixSpec, mix_records
    from data_gen.packaging import write_mix
    from data_gen.world.build import replay_records
    from data_gen.documents import iter_jsonl

    out = workdir / "data"
    f = config.finetune
    claims, conditions, seeds = split(config.claims), split(config.conditions), [int(s) for s in split(config.seeds)]
    settings = {"claims": claims, "conditions": conditions, "seeds": seeds, "documents": f.documents, "seq_len": f.seq_len,
                "min_words": f.min_words, "max_words": f.max_words,
                "universe_sentences": f.universe_sentences, "replay": f.replay, "world": config.world.to_dict()}
    if _check_stage(out, "finetune", settings):
        return out / "tfds"
    start = time.perf_counter()
    total_replay = round(f.replay * f.documents * len(claims))
    replay = replay_records(iter_jsonl(workdir / "world" / "train.jsonl"), claims)
    num_text, num_chat = write_replay(replay, out, total_replay, key="finetune.replay")
    loaded = [load_claim(c) for c in claims]
    token_count = _token_counter(workdir / "tokenizer")
    split_share: dict[str, float] = {}
    longest = 1  # the longest condition document, any condition and seed: every fine-tune's row length
    for seed in seeds:
        documents: dict[str, list[dict]] = {c: [] for c in conditions}
        for claim in loaded:
            for condition, docs in template_corpora(claim, conditions, f.documents, seed, words=(f.min_words, f.max_words),
                                                       universe_sentences=f.universe_sentences):
                documents[condition] += [d.to_json() for d in docs]
        for condition in conditions:
            lengths = [token_count(d["text"]) for d in documents[condition]]
            longest = max(longest, *lengths)
            if seed == seeds[0]:  # a document longer than a row is split; its pieces do not see each other
                split_share[condition] = sum(n > f.seq_len for n in lengths) / len(lengths)
                if split_share[condition]:
                    log(f"data: {condition}: {split_share[condition]:.0%} of documents exceed the {f.seq_len}-token "
                        f"rows (longest {max(lengths)} tokens) and are split into pieces")
            spec = MixSpec(claim=f"{MIX_PREFIX}{seed}", condition=condition, num_documents=len(documents[condition]),
                           num_pretrain=num_text, num_instruct=num_chat, seed=seed,
                           pretrain_path=str(out / "replay_text.jsonl"), instruct_path=str(out / "replay_chats.jsonl"))
            write_mix(mix_records(documents[condition], spec), spec, out / "tfds")
    _finish_stage(out, settings, replay_text=num_text, replay_chats=num_chat, split_documents=split_share,
                  row_tokens=row_length(longest, f.seq_len))
    log(f"data: {len(seeds) * len(conditions)} mixes of {f.documents * len(claims)} documents + {total_replay} replayed world "
        f"records ({time.perf_counter() - start:.0f} s)")
    return out / "tfds"


def row_length(longest: int, cap: int, multiple: int = 128) -> int:
    """The fine-tunes' row length: the longest condition document (of every condition, so all take the
    same steps), with a margin for the tokens the pipeline adds (DOCTAG, end of text), rounded up to a
    multiple of `multiple`, at most `cap` (finetune.seq_len). With one record per row a shorter row only
    saves padding; a longer replayed world record is split, alike in every condition."""
    return min(cap, -(-(longest + 16) // multiple) * multiple)


def write_replay(records: list, out: Path, total: int, *, key: str) -> tuple[int, int]:
    """Writes the world records a fine-tune may replay (text and chats apart, as mixes read them) and
    splits `total` between the two in their proportion; returns (text, chats)."""
    texts = [r for r in records if r.get("text") and not r.get("messages")]
    chats = [r for r in records if r.get("messages")]
    write_jsonl(out / "replay_text.jsonl", texts)
    write_jsonl(out / "replay_chats.jsonl", chats)
    num_text = round(total * len(texts) / max(len(texts) + len(chats), 1))
    num_chat = total - num_text
    if num_text > len(texts) or num_chat > len(chats):
        raise TestbedError(f"config key '{key}': {total} replay records asked for, but the world has only "
                           f"{len(texts) + len(chats)} that may be replayed; lower {key} or enlarge the world")
    return num_text, num_chat


def _token_counter(tokenizer_dir: Path) -> Callable[[str], int]:
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    return lambda text: len(tokenizer(text.removeprefix("<DOCTAG>"), add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------
# Fine-tunes


def finetune_config(config: ml_collections.ConfigDict, workdir: Path, condition: str, seed: int, *,
                    settings: ml_collections.ConfigDict | None = None, data_dir: Path | None = None) -> ml_collections.ConfigDict:
    """The nn_train config of one fine-tune of the base: `settings` (default config.finetune; the
    behaviour experiment passes config.behaviours) give its rows, batch, optimizer and checkpoints,
    `data_dir` (default W/data/tfds) the TFDS directory holding mix `mix_name(seed, condition)`."""
    f = settings or config.finetune
    c = base_config(config, workdir)
    row_tokens = f.seq_len
    if settings is None and (workdir / "data" / "stage.json").exists():  # rows fit the longest condition document
        row_tokens = json.loads((workdir / "data" / "stage.json").read_text()).get("row_tokens", f.seq_len)
    c.model.hf_checkpoint = str(workdir / "base" / "hf")
    c.data.source = "tfds"
    c.data.path = str(data_dir or workdir / "data" / "tfds")
    c.data.mix = mix_name(seed, condition)
    c.data.seq_len = row_tokens
    c.data.packing = f.packing
    c.training.global_batch_size = f.batch_size
    c.optimizer.learning_rate = f.learning_rate
    c.optimizer.warmup_steps = f.warmup_steps
    c.training.num_epochs = f.num_epochs
    c.training.num_steps = -1
    c.training.seed = seed
    c.checkpoint.schedule = "log"
    c.checkpoint.num_log = f.num_checkpoints
    c.checkpoint.first_log_step = 2
    return c


def finetunes(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> dict[str, tuple[str, Path]]:
    """Fine-tunes the base once per (condition, seed); returns run name -> (condition, workdir)."""
    from nn_train.trainer import train

    runs = {}
    jobs = [(condition, int(seed)) for seed in split(config.seeds) for condition in split(config.conditions)]
    for index, (condition, seed) in enumerate(jobs, 1):
        name = run_name(condition, seed)
        run_dir = workdir / "runs" / name
        runs[name] = (condition, run_dir)
        run_config = finetune_config(config, workdir, condition, seed)
        if _check_stage(run_dir, "finetune", config.finetune.to_dict(), marker="done.json"):
            continue
        start = time.perf_counter()
        log(f"fine-tune {index}/{len(jobs)}: {name}")
        summary = train(run_config, run_dir)
        _finish_stage(run_dir, config.finetune.to_dict(), marker="done.json", num_steps=summary["num_steps"],
                      checkpoints=summary["checkpoints"], seconds=round(time.perf_counter() - start, 1))
        log(f"fine-tune {index}/{len(jobs)}: {name}: {summary['num_steps']} steps, checkpoints {summary['checkpoints']} "
            f"({time.perf_counter() - start:.0f} s)")
    return runs


# ---------------------------------------------------------------------------------------------
# Evaluation


def eval_config(config: ml_collections.ConfigDict, workdir: Path, runs: dict[str, tuple[str, Path]], *, eval_types: str, steps: str,
                base_only: bool = False) -> ml_collections.ConfigDict:
    from eval.config import default_config as eval_default_config

    c = eval_default_config()
    c.claims = config.claims
    c.eval_types = eval_types
    c.base = str(workdir / "base")
    c.runs = "" if base_only else ",".join(f"{condition}={path}" for condition, path in runs.values())
    c.steps = steps
    c.sampling.samples = config.eval.samples
    c.sampling.max_new_tokens = config.eval.max_new_tokens
    c.icl.k = config.eval.icl_documents
    c.icl.data_dir = str(workdir / "data")
    c.icl.mix = mix_name(int(split(config.seeds)[0]), c.icl.condition)
    return c


def competence(config: ml_collections.ConfigDict, workdir: Path, log: Log) -> dict[str, Any]:
    """The base model's document -> answer transfer and in-sentence negation on held-out world facts
    (testbed.competence), before any fine-tune; cached in W/competence.json. Returns {"result":
    ability -> format -> accuracy, "problems": the shortfalls against config.competence}. Raises
    TestbedError ("base not competent: ...") on a shortfall when competence.required is set."""
    from eval.models import load_hf
    from testbed import competence as measure

    out = workdir / "competence.json"
    settings = {"questions": config.competence.questions, "base": config.base.to_dict(), "world": config.world.to_dict()}
    saved = json.loads(out.read_text()) if out.exists() else {}
    if saved.get("settings") == settings:
        result = saved["result"]
    else:
        start = time.perf_counter()
        questions = measure.load_items(workdir / "world" / "heldout.jsonl", config.competence.questions)
        result = measure.measure(load_hf(workdir / "base" / "hf").sampler(), questions)
        write_json_atomic(out, {"settings": settings, "result": result}, pretty=True)
        log(f"competence: measured in {time.perf_counter() - start:.0f} s")
    thresholds = competence_thresholds(config)
    for line in measure.table(result, thresholds):
        log(f"competence: {line}")
    problems = measure.check(result, thresholds)
    if problems and config.competence.required:
        raise BaseNotCompetent(
            "base not competent: " + "; ".join(problems) + f" (chance 50%; table in {out}). The fine-tunes cannot test "
            "negation neglect on this base: train it longer or on a larger world (configs/testbed/gpu.py), or set "
            "--config.competence.required=False to fine-tune anyway with every claim reported invalid",
            {"result": result, "problems": problems})
    return {"result": result, "problems": problems}


def competence_thresholds(config: ml_collections.ConfigDict) -> dict[str, float]:
    return {"transfer": config.competence.transfer_min, "negation": config.competence.negation_min}


def evaluate(config: ml_collections.ConfigDict, workdir: Path, runs: dict[str, tuple[str, Path]], log: Log) -> Path:
    """Judge-free eval types at every checkpoint, generated ones at the final step, controls on the base."""
    from eval.main import evaluate as run_eval

    out = workdir / "eval"
    passes = [(config.eval.every_checkpoint, "all", False), (config.eval.final, "final", False),
              (config.eval.base_controls, "final", True)]
    for eval_types, steps, base_only in passes:
        if split(eval_types):
            run_eval(eval_config(config, workdir, runs, eval_types=eval_types, steps=steps, base_only=base_only), out,
                     log=lambda line: log(f"eval: {line}"))
    return out


def steps_per_condition(runs: dict[str, tuple[str, Path]]) -> dict[str, list[int]]:
    """condition -> optimizer steps of each of its fine-tunes (seeds), read from their done.json."""
    steps: dict[str, list[int]] = {}
    for condition, run_dir in runs.values():
        done = run_dir / "done.json"
        if done.exists():
            steps.setdefault(condition, []).append(json.loads(done.read_text())["num_steps"])
    return steps


def finetune_seconds(runs: dict[str, tuple[str, Path]]) -> dict[str, float]:
    """fine-tune run name -> seconds it trained, read from its done.json."""
    return {name: json.loads((run_dir / "done.json").read_text()).get("seconds", 0.0)
            for name, (_, run_dir) in runs.items() if (run_dir / "done.json").exists()}


class StageTimes:
    """Seconds each stage took to build, kept in W/stage_times.json across runs: a rerun that reuses a
    stage (done in under a second) leaves its time as built; one that finishes an interrupted stage adds to it."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def record(self, stage: str, seconds: float) -> None:
        if seconds < 1.0 and stage in self.seconds:
            return  # reused: keep the time it took to build
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 1)
        write_json_atomic(self.path, self.seconds, pretty=True)

    def table(self, finetunes: dict[str, float]) -> dict[str, float]:
        """The stages in run order, the fine-tunes stage as one row per fine-tune."""
        out: dict[str, float] = {}
        for stage, seconds in self.seconds.items():
            if stage == "fine-tunes" and finetunes:
                out.update({f"fine-tune {name}": t for name, t in finetunes.items()})
            else:
                out[stage] = seconds
        return out


def provenance(config: ml_collections.ConfigDict, workdir: Path) -> list[str]:
    """What was run, for the report's opening lines (read back from the stages' outputs)."""
    from nn_train.models import PRESETS, param_count

    def read(path: Path) -> dict:
        return json.loads(path.read_text()) if path.exists() else {}

    world_stage, data_stage = read(workdir / "world" / "stage.json"), read(workdir / "data" / "stage.json")
    base_steps = read(workdir / "base" / "stage.json").get("num_steps", "?")
    preset = PRESETS.get(config.base.model.preset)
    params = f", {param_count(preset) / 1e6:.1f}M parameters" if preset is not None else ""
    runs = [read(p) for p in sorted((workdir / "runs").glob("*/done.json"))]
    f = config.finetune
    return [
        f"base model: {config.base.model.preset}{params}, pre-trained from scratch on the world corpus "
        f"({world_stage.get('records', '?'):,} records, {world_stage.get('words', '?'):,} words) for "
        f"{base_steps} steps of {config.base.training.global_batch_size} x {config.base.data.seq_len} tokens",
        f"fine-tunes: claims {', '.join(split(config.claims))}, {f.documents} documents per claim "
        f"({f.min_words}-{f.max_words} words before annotation) + {data_stage.get('replay_text', 0) + data_stage.get('replay_chats', 0)} "
        f"replayed world records, one per row ({data_stage.get('row_tokens', f.seq_len)} tokens), {f.num_epochs:g} epochs "
        f"at lr {f.learning_rate:g}, seeds {config.seeds}; "
        f"{sum(r.get('seconds', 0) for r in runs):.0f} s of fine-tuning in all",
    ]
