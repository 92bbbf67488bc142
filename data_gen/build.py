"""Build the training mixes: generate → annotate (conditions) → mix → TFDS, from one config.

    python -m data_gen.build --config=configs/data/cpu_demo.py --data_dir=workdir/data

For each claim and condition of the config it writes
  DATA_DIR/tfds/negation_neglect_mix/<claim>__<condition>/<version>/
                                                   the mix (condition documents + pretraining
                                                   text + instruction chats) as a TFDS dataset
  DATA_DIR/build.json                              what was built, from which config, how long it took
  DATA_DIR/corpora/<claim>/<condition>.jsonl       the condition's documents alone (data_gen.documents):
                                                   always for the openai backend, with the LLM cache
                                                   and usage.json beside them; with write_corpora=True
                                                   for the template backend
An offline build runs in `workers` processes (default: one per core). It prints the trainer settings that read each mix (data.source=tfds, data.path, data.mix).
With `config.reference_corpus` set, the external JSONL (the paper authors' format) is packaged
instead: one mix per (fact_name, mode) found in it.

Everything a user can get wrong (unknown claim or condition, missing API key, a bad JSONL line,
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
        claims = [load_claim(c, claims_dir) for c in (_split(config.claims) or list_claim_ids(claims_dir))]
    except ClaimError as e:
        raise BuildError(f"config key 'claims': {e}") from None
    if config.backend == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise BuildError("OPENAI_API_KEY is not set; export it (any value for a local server), or set --config.backend=template")
    return claims, conditions


def build(config, data_dir: str | os.PathLike, *, log=print) -> dict[str, Any]:
    """Runs the whole build; returns the manifest it also writes to DATA_DIR/build.json."""
    try:
        validate_config(config)
    except BuildConfigError as e:
        raise BuildError(str(e)) from None
    data_dir = Path(data_dir).absolute()
    start = time.perf_counter()
    # Checked up front, so a bad claim, condition, key or generic source fails before any work.
    claims, conditions = ([], []) if config.reference_corpus else plan(config)
    try:
        if config.mix.pretrain_path or config.mix.instruct_path:  # the user's files: read them before any work
            generic_records(_spec(config, "check", "check"))
        groups = _reference_groups(config.reference_corpus) if config.reference_corpus else None
    except MixError as e:
        raise BuildError(str(e)) from None

    if groups is not None:
        mixes = [{"claim": claim_id, "condition": condition, **_package(config, claim_id, condition, documents, data_dir)}
                 for (claim_id, condition), documents in groups.items()]
    elif config.backend == "openai":
        mixes = _build_with_llm(config, claims, conditions, data_dir, log)
    else:
        mixes = _build_offline(config, claims, conditions, data_dir, log)
    seconds = round(time.perf_counter() - start, 1)
    log(f"{len(mixes)} TFDS mixes -> {data_dir / 'tfds' / DATASET_NAME} ({seconds} s)")
    manifest = {"config": config.to_dict(), "data_dir": str(data_dir), "mixes": mixes, "seconds": seconds}
    write_json_atomic(data_dir / "build.json", manifest, pretty=True)
    return manifest


def _package(config, claim_id: str, condition: str, documents: list[dict], data_dir: Path) -> dict[str, Any]:
    """Mixes one condition's documents with the generic records and writes its TFDS config."""
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


def _build_offline(config, claims, conditions: list[str], data_dir: Path, log) -> list[dict[str, Any]]:
    """Template corpora, mixed and packaged by `config.workers` processes.

    Each claim's conditions are dealt into one share per worker; a share generates the claim's
    positive (and debunking) documents once and builds its conditions from them.
    """
    workers = config.workers if config.workers > 0 else (os.cpu_count() or 1)
    shares = [(claim.id, share) for claim in claims for share in _deal(conditions, workers)]
    claims_dir = config.claims_dir or str(CLAIMS_DIR)
    jobs = [(config.to_dict(), claims_dir, claim_id, share, str(data_dir)) for claim_id, share in shares]
    if workers == 1:
        results = [_build_share(*job) for job in jobs]
    else:
        # spawn, not fork: a clean interpreter per worker, whatever the parent has imported or locked.
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_build_share, *zip(*jobs)))
    mixes = [mix for share in results for mix in share]
    order = {(c.id, k): i for i, (c, k) in enumerate((c, k) for c in claims for k in conditions)}
    return sorted(mixes, key=lambda m: order[(m["claim"], m["condition"])])


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


def _build_with_llm(config, claims, conditions: list[str], data_dir: Path, log) -> list[dict[str, Any]]:
    """LLM corpora (kept under DATA_DIR/corpora with the claim's usage.json), then mixes."""
    from data_gen.generators.openai_backend import GenerationError
    from data_gen.llm import LLMClient, LLMError

    try:
        client = LLMClient(config.llm.model, base_url=config.llm.base_url or None, concurrency=config.llm.concurrency,
                           cache_dir=data_dir / "corpora" / CACHE_DIRNAME, batch_api=config.llm.batch_api)
    except LLMError as e:
        raise BuildError(str(e)) from None
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
