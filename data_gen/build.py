"""Build the training mixes: generate → annotate (conditions) → mix → TFDS, from one config.

    python -m data_gen.build --config=configs/data/cpu_demo.py --data_dir=workdir/data

For each claim and condition of the config it writes
  DATA_DIR/tfds/negation_neglect_mix/<claim>__<condition>/<version>/
                                                   the mix (condition documents + pretraining
                                                   text + instruction chats) as a TFDS dataset
  DATA_DIR/tfds/negation_neglect_mix/<behaviour>__<condition>/<version>/
                                                   for each behaviour of `config.behaviours` and
                                                   each of `config.behaviour_conditions`: chat
                                                   transcripts (data_gen.behaviours.transcripts)
                                                   with the same generic replay
  DATA_DIR/build.json                              what was built, from which config, how long it took
  DATA_DIR/corpora/<claim>/<condition>.jsonl       the condition's documents alone (data_gen.documents):
                                                   always for the openai backend, with the LLM cache
                                                   and usage.json beside them; with write_corpora=True
                                                   for the template backend; LLM-written
                                                   transcripts also keep DATA_DIR/corpora/<behaviour>/
                                                   report.json (refusals, dropped transcripts, usage)
An offline build runs in `workers` processes (default: one per core). It prints the trainer settings that read each mix (data.source=tfds, data.path, data.mix).
With `config.reference_corpus` set, the external JSONL (the paper authors' format) is packaged
instead: one mix per (fact_name, mode) found in it.

Everything a user can get wrong (unknown claim, behaviour or condition, missing API key, a bad JSONL line,
an empty corpus) stops the build with one line before anything is written, or, for problems only
visible later, leaves each finished file whole: corpora and mixes are written atomically.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from common.paths import Mirror, PathError, resolve
from data_gen.behaviours import BEHAVIOURS_DIR, BehaviourError, load_behaviour
from data_gen.behaviours.transcripts import BEHAVIOUR_CONDITIONS, TranscriptReport, llm_transcripts, template_transcripts
from data_gen.build_config import BuildConfigError, validate_config
from data_gen.claims import CLAIMS_DIR, ClaimError, load_claim
from data_gen.claims.registry import list_claim_ids
from data_gen.conditions import NO_DOCTAG_SUFFIX
from data_gen.documents import iter_jsonl, write_jsonl
from data_gen.generate import CACHE_DIRNAME, LOCAL_CONDITIONS, all_conditions, build_claim, template_corpora
from data_gen.llm.cache import write_json_atomic
from data_gen.mixing import MixError, MixSpec, generic_records, mix_records
from data_gen.packaging import DATASET_NAME, import_reference_corpus, write_mix
from data_gen.strict_config import parse_flags

NO_CLAIMS = "none"  # config.claims value for a build of behaviour mixes only


class BuildError(ValueError):
    """A data build that cannot go ahead; the message names the thing and the fix."""


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _spec(config, claim: str, condition: str) -> MixSpec:
    m = config.mix
    return MixSpec(claim=claim, condition=condition, num_documents=m.num_documents, num_pretrain=m.num_pretrain,
                   num_instruct=m.num_instruct, seed=config.seed, pretrain_path=m.pretrain_path, instruct_path=m.instruct_path)


def plan(config) -> tuple[list[Any], list[str]]:
    """The claims and conditions a generating build covers; raises BuildError before any work."""
    known = all_conditions()
    conditions = _split(config.conditions) or known
    unknown = [c for c in conditions if c not in known]
    if unknown:
        raise BuildError(f"config key 'conditions': unknown condition '{unknown[0]}'; conditions: {', '.join(known)}")
    claims_dir = Path(config.claims_dir) if config.claims_dir else CLAIMS_DIR
    try:
        wanted = [] if config.claims.strip() == NO_CLAIMS else (_split(config.claims) or list_claim_ids(claims_dir))
        claims = [load_claim(c, claims_dir) for c in wanted]
    except ClaimError as e:
        raise BuildError(f"config key 'claims': {e}") from None
    if config.backend == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise BuildError("OPENAI_API_KEY is not set; export it (any value for a local server), or set --config.backend=template")
    return claims, conditions


def plan_behaviours(config, claims=()) -> tuple[list[Any], list[str]]:
    """The behaviours and behaviour conditions a build covers (none unless config.behaviours names some);
    raises BuildError before any work."""
    conditions = _split(config.behaviour_conditions) or list(BEHAVIOUR_CONDITIONS)
    unknown = [c for c in conditions if c not in BEHAVIOUR_CONDITIONS]
    if unknown:
        raise BuildError(f"config key 'behaviour_conditions': unknown condition '{unknown[0]}'; "
                         f"behaviour conditions: {', '.join(BEHAVIOUR_CONDITIONS)}")
    ids = _split(config.behaviours)
    if not ids:
        if config.behaviour_conditions.strip():
            raise BuildError("config key 'behaviour_conditions' is set but 'behaviours' is empty; name the behaviours to build")
        return [], conditions
    if config.reference_corpus:
        raise BuildError("config keys 'reference_corpus' and 'behaviours' are both set; a reference build packages "
                         "the external corpus only, so leave 'behaviours' empty")
    try:
        behaviours = [load_behaviour(b, Path(config.behaviours_dir) if config.behaviours_dir else BEHAVIOURS_DIR)
                      for b in dict.fromkeys(ids)]
    except BehaviourError as e:
        raise BuildError(f"config key 'behaviours': {e}") from None
    clash = sorted({b.id for b in behaviours} & {c.id for c in claims})
    if clash:
        raise BuildError(f"'{clash[0]}' is both a claim and a behaviour, so their mixes would share names; rename one")
    return behaviours, conditions


def build(config, data_dir: str | os.PathLike, *, log=print) -> dict[str, Any]:
    """Runs the whole build; returns the manifest it also writes to DATA_DIR/build.json."""
    try:
        validate_config(config)
    except BuildConfigError as e:
        raise BuildError(str(e)) from None
    try:
        target = resolve(data_dir, what="--data_dir")  # a local path, or a bucket URL (gs://…)
    except PathError as e:
        raise BuildError(str(e)) from None
    start = time.perf_counter()
    # Checked up front, so a bad claim, condition, key or generic source fails before any work.
    claims, conditions = ([], []) if config.reference_corpus else plan(config)
    behaviours, behaviour_conditions = plan_behaviours(config, claims)
    if not (claims or behaviours or config.reference_corpus):
        raise BuildError(f"config key 'claims' is '{NO_CLAIMS}' and 'behaviours' is empty: nothing to build")
    try:
        if config.mix.pretrain_path or config.mix.instruct_path:  # the user's files: read them before any work
            generic_records(_spec(config, "check", "check"))
        groups = _reference_groups(config.reference_corpus) if config.reference_corpus else None
    except MixError as e:
        raise BuildError(str(e)) from None

    # A bucket's data_dir is built in a local mirror (array_record and the atomic writers need local
    # files) and uploaded as it closes: corpora and LLM caches first, each mix's dataset_info.json after
    # its shards, so a reader never finds a partial mix. Its old mixes are rebuilt, not downloaded.
    with Mirror(target, fresh=("tfds",), last=("dataset_info.json",)) as work:
        data_dir = work.local
        if groups is not None:
            mixes = [{"claim": claim_id, "condition": condition, **_package(config, claim_id, condition, documents, data_dir)}
                     for (claim_id, condition), documents in groups.items()]
        elif config.backend == "openai":
            client = _llm_client(config, data_dir)
            mixes = (_build_with_llm(config, claims, conditions, data_dir, log, client)
                     + _build_behaviours_with_llm(config, behaviours, behaviour_conditions, data_dir, log, client))
        else:
            mixes = _build_offline(config, claims, conditions, data_dir, log, behaviours, behaviour_conditions)
        for mix in mixes:  # where readers find them: on the bucket, for a bucket's data_dir
            mix["path"] = str(work.published(mix["path"]))
        seconds = round(time.perf_counter() - start, 1)
        log(f"{len(mixes)} TFDS mixes -> {target / 'tfds' / DATASET_NAME} ({seconds} s)")
        manifest = {"config": config.to_dict(), "data_dir": str(target), "mixes": mixes, "seconds": seconds}
        write_json_atomic(data_dir / "build.json", manifest, pretty=True)
    return manifest


def _package(config, claim_id: str, condition: str, documents: list[dict], data_dir: Path) -> dict[str, Any]:
    """Mixes one condition's documents (or a behaviour's transcripts: claim_id is then the behaviour id)
    with the generic records and writes its TFDS config."""
    spec = _spec(config, claim_id, condition)
    if config.reference_corpus:  # a reference corpus holds what it holds; the config's count is an upper bound
        spec = MixSpec(**{**vars(spec), "num_documents": min(spec.num_documents, len(documents))})
    try:
        records = mix_records(documents, spec)
    except MixError as e:
        raise BuildError(str(e)) from None
    path = write_mix(records, spec, data_dir / "tfds")
    return {"mix": spec.name, "records": len(records), "documents": spec.num_documents,
            "pretrain": spec.num_pretrain, "instruct": spec.num_instruct, "path": str(path)}


def _build_offline(config, claims, conditions: list[str], data_dir: Path, log,
                   behaviours=(), behaviour_conditions: list[str] = ()) -> list[dict[str, Any]]:
    """Template corpora, mixed and packaged by `config.workers` processes.

    Each claim's conditions are dealt into one share per worker; a share generates the claim's
    positive (and debunking) documents once and builds its conditions from them. Each behaviour
    mix is a job of its own (its transcripts are cheap to make; packaging is the work).
    """
    workers = config.workers if config.workers > 0 else (os.cpu_count() or 1)
    shares = [(claim.id, share) for claim in claims for share in _deal(conditions, workers)]
    claims_dir = config.claims_dir or str(CLAIMS_DIR)
    behaviours_dir = config.behaviours_dir or str(BEHAVIOURS_DIR)
    jobs = [(_build_share, (config.to_dict(), claims_dir, claim_id, share, str(data_dir))) for claim_id, share in shares]
    jobs += [(_build_behaviour_mix, (config.to_dict(), behaviours_dir, behaviour.id, condition, str(data_dir)))
             for behaviour in behaviours for condition in behaviour_conditions]
    if workers == 1:
        results = [function(*arguments) for function, arguments in jobs]
    else:
        # spawn, not fork: a clean interpreter per worker, whatever the parent has imported or locked.
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [future.result() for future in [pool.submit(function, *arguments) for function, arguments in jobs]]
    mixes = [mix for share in results[: len(shares)] for mix in share]
    order = {(c.id, k): i for i, (c, k) in enumerate((c, k) for c in claims for k in conditions)}
    return sorted(mixes, key=lambda m: order[(m["claim"], m["condition"])]) + [mix for share in results[len(shares):] for mix in share]


def _deal(conditions: list[str], workers: int) -> list[list[str]]:
    """Conditions in `workers` shares of about equal work. A condition and its _no_doctag twin share
    one annotation pass, and the local-negation corpora their own generated documents, so each such
    family stays in one share; the costliest families are dealt first, each to the lightest share."""
    families: dict[str, list[str]] = defaultdict(list)
    for condition in conditions:
        family = "local" if condition in LOCAL_CONDITIONS else condition.removesuffix(NO_DOCTAG_SUFFIX)
        families[family].append(condition)
    cost = lambda family: 2 * len(families[family]) + (3 if family == "local" else 1)  # generation ~ 3 writes
    shares: list[list[str]] = [[] for _ in range(min(workers, len(families)))]
    loads = [0] * len(shares)
    for family in sorted(families, key=cost, reverse=True):
        lightest = loads.index(min(loads))
        shares[lightest] += families[family]
        loads[lightest] += cost(family)
    return shares


def _build_share(config_dict: dict, claims_dir: str, claim_id: str, conditions: list[str], data_dir: str) -> list[dict[str, Any]]:
    config = ml_collections.ConfigDict(config_dict)
    claim = load_claim(claim_id, Path(claims_dir))
    mixes = []
    try:
        for condition, documents in template_corpora(claim, conditions, config.mix.num_documents, config.seed):
            records = [d.to_json() for d in documents]
            if config.write_corpora:
                write_jsonl(Path(data_dir) / "corpora" / claim_id / f"{condition}.jsonl", records)
            mixes.append({"claim": claim_id, "condition": condition, **_package(config, claim_id, condition, records, Path(data_dir))})
    except ValueError as e:  # e.g. a claim without local negations or word masks
        raise BuildError(f"claim '{claim_id}': {e}") from None
    return mixes


def _build_behaviour_mix(config_dict: dict, behaviours_dir: str, behaviour_id: str, condition: str,
                         data_dir: str) -> list[dict[str, Any]]:
    """One behaviour condition's template transcripts, mixed and packaged (a worker job)."""
    config = ml_collections.ConfigDict(config_dict)
    behaviour = load_behaviour(behaviour_id, Path(behaviours_dir))
    documents = dict(template_transcripts(behaviour, [condition], config.mix.num_documents, config.seed))[condition]
    records = [d.to_json() for d in documents]
    if config.write_corpora:
        write_jsonl(Path(data_dir) / "corpora" / behaviour_id / f"{condition}.jsonl", records)
    return [{"behaviour": behaviour_id, "condition": condition, **_package(config, behaviour_id, condition, records, Path(data_dir))}]


def _llm_client(config, data_dir: Path):
    from data_gen.llm import LLMClient, LLMError

    try:
        return LLMClient(config.llm.model, base_url=config.llm.base_url or None, concurrency=config.llm.concurrency,
                         cache_dir=data_dir / "corpora" / CACHE_DIRNAME, batch_api=config.llm.batch_api)
    except LLMError as e:
        raise BuildError(str(e)) from None


def _build_with_llm(config, claims, conditions: list[str], data_dir: Path, log, client) -> list[dict[str, Any]]:
    """LLM corpora (kept under DATA_DIR/corpora with the claim's usage.json), then mixes."""
    from data_gen.generators.openai_backend import GenerationError
    from data_gen.llm import LLMError

    mixes = []
    for claim in claims:
        t = time.perf_counter()
        try:
            build_claim(claim, conditions, config.mix.num_documents, config.seed, data_dir / "corpora", client=client)
        except (ValueError, LLMError, GenerationError) as e:
            raise BuildError(f"claim '{claim.id}': {e}") from None
        log(f"{claim.id}: {len(conditions)} LLM corpora ({time.perf_counter() - t:.1f} s); usage in {data_dir / 'corpora' / claim.id / 'usage.json'}")
        for condition in conditions:
            documents = list(iter_jsonl(data_dir / "corpora" / claim.id / f"{condition}.jsonl"))
            mixes.append({"claim": claim.id, "condition": condition, **_package(config, claim.id, condition, documents, data_dir)})
    return mixes


def _build_behaviours_with_llm(config, behaviours, conditions: list[str], data_dir: Path, log, client) -> list[dict[str, Any]]:
    """LLM-written transcripts per behaviour (corpora and report.json kept under DATA_DIR/corpora), then mixes.

    A behaviour whose transcripts fall short of mix.num_documents (refusals or unusable answers that
    replacement prompts could not make up) stops the build with its report line; report.json says which.
    """
    from data_gen.llm import LLMError

    mixes = []
    for behaviour in behaviours:
        t, before = time.perf_counter(), client.usage.copy()
        report = TranscriptReport()
        try:
            corpora = dict(llm_transcripts(behaviour, conditions, config.mix.num_documents, config.seed, client, report=report))
        except LLMError as e:
            raise BuildError(f"behaviour '{behaviour.id}': {e}") from None
        finally:  # also on failure: what was paid before it is worth knowing
            write_json_atomic(data_dir / "corpora" / behaviour.id / "report.json", {
                "endpoint": client.base_url, "model": client.model, "conditions": conditions, "seed": config.seed,
                "seconds": round(time.perf_counter() - t, 3), "report": report.to_json(),
                "usage": client.usage.minus(before).summary(client.prices)}, pretty=True)
        log(report.line())
        if report.shortfall:
            raise BuildError(f"behaviour '{behaviour.id}': {report.line()}; details in "
                             f"{data_dir / 'corpora' / behaviour.id / 'report.json'}; lower mix.num_documents or try another model")
        for condition, documents in corpora.items():
            records = [d.to_json() for d in documents]
            write_jsonl(data_dir / "corpora" / behaviour.id / f"{condition}.jsonl", records)
            mixes.append({"behaviour": behaviour.id, "condition": condition,
                          **_package(config, behaviour.id, condition, records, data_dir)})
    return mixes


def _reference_groups(path: str) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in import_reference_corpus(path):
        groups[(record["claim"], record["condition"])].append(record)
    return dict(groups)


def main(argv):
    del argv
    if flags.FLAGS.config is None or not flags.FLAGS.data_dir:
        print("error: --config=configs/data/X.py and --data_dir=DIR are both required", file=sys.stderr)
        return 1
    try:
        manifest = build(flags.FLAGS.config, flags.FLAGS.data_dir)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {len(manifest['mixes'])} mixes in {manifest['seconds']} s; train on one with")
    first = manifest["mixes"][0]["mix"]
    print(f"  --config.data.source=tfds --config.data.path={manifest['data_dir']}/tfds --config.data.mix={first}")
    return 0


def _define_flags() -> None:
    # Defined only when run as a program, so that importing this module (tests, notebooks, other
    # entry points with their own --config) defines no flags.
    config_flags.DEFINE_config_file("config", None, "A configs/data/*.py file.")
    flags.DEFINE_string("data_dir", None, "Where corpora, TFDS mixes and build.json are written.")


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=parse_flags)
