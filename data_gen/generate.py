"""Write condition corpora for claims: `python -m data_gen.generate --out=DIR [--claims=...] [--conditions=...]`.

For each claim, positive documents are generated once (deterministic by --seed) and every
requested condition is applied to them; `local_negations` (and its word-masked variant) is
generated as its own corpus. Each corpus is written atomically to DIR/<claim>/<condition>.jsonl in
data_gen.documents' record format, which
`python -m nn_train.main --config.data.source=jsonl --config.data.path=...` trains on.

Backends (--backend):
  template  offline and deterministic, no API (the default)
  openai    documents and condition wording written by an LLM at any OpenAI-compatible endpoint:
            --model, --base_url (e.g. a vLLM server's http://host:8000/v1), --api_key or OPENAI_API_KEY,
            --concurrency, --batch_api (OpenAI Batch API, half price, hours not minutes).
            Every answer is cached under --cache_dir (default DIR/.llm_cache): a killed run rerun with
            the same flags resumes where it stopped and pays for nothing twice. Token use and the
            estimated cost are printed and written to DIR/<claim>/usage.json.
A claim's corpora are written only once all of them are complete, so a failure (exit 1, one line
on stderr) never leaves a half-written corpus behind.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from absl import app, flags

from common.paths import PathError, require_local
from data_gen.claims import CLAIMS_DIR, ClaimError, load_claim
from data_gen.claims.registry import list_claim_ids
from data_gen.conditions import NO_DOCTAG_SUFFIX, apply_condition, base_condition, condition_names
from data_gen.documents import Document, write_jsonl
from data_gen.generators import TemplateGenerator, mask_words

LOCAL_CONDITIONS = ("local_negations", "local_negations_no_doctag", "local_negations_word_masked")
BACKENDS = ("template", "openai")
DEFAULT_MODEL = "gpt-4.1-mini"
CACHE_DIRNAME = ".llm_cache"

_OUT = flags.DEFINE_string("out", None, "Directory for DIR/<claim>/<condition>.jsonl.")
_CLAIMS = flags.DEFINE_list("claims", None, "Claim ids (default: every claim in --claims_dir).")
_CLAIMS_DIR = flags.DEFINE_string("claims_dir", None, "Claims directory (default: the bundled claims).")
_CONDITIONS = flags.DEFINE_list("conditions", None, "Condition names (default: all of them).")
_COUNT = flags.DEFINE_integer("count", 100, "Documents per claim and condition (the paper: 10,000).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generator and the annotations.")
_BACKEND = flags.DEFINE_enum("backend", "template", BACKENDS, "Who writes documents and annotations: template (offline) or openai (an LLM).")
_MODEL = flags.DEFINE_string("model", DEFAULT_MODEL, "openai backend: the model name the endpoint serves.")
_BASE_URL = flags.DEFINE_string("base_url", None, "openai backend: an OpenAI-compatible endpoint (default: api.openai.com/v1).")
_API_KEY = flags.DEFINE_string("api_key", None, "openai backend: the API key (default: $OPENAI_API_KEY).")
_CONCURRENCY = flags.DEFINE_integer("concurrency", 16, "openai backend: requests in flight at once.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, f"openai backend: the response cache (default: DIR/{CACHE_DIRNAME}).")
_BATCH_API = flags.DEFINE_bool("batch_api", False, "openai backend: send uncached requests through the OpenAI Batch API.")
_BATCH_POLL = flags.DEFINE_float("batch_poll_s", 30.0, "openai backend with --batch_api: seconds between batch status checks.")
_TIMEOUT = flags.DEFINE_float("timeout_s", 120.0, "openai backend: seconds to wait for one response before retrying.")
_MAX_ATTEMPTS = flags.DEFINE_integer("max_attempts", 6, "openai backend: attempts per request before giving up.")
_RETRY_BASE = flags.DEFINE_float("retry_base_s", 1.0, "openai backend: first backoff delay; it doubles per retry (with jitter).")
_PRICE = flags.DEFINE_string("price_per_1m", None, "openai backend: 'INPUT,OUTPUT' USD per 1M tokens for --model "
                             "(overrides the built-in table; without either, the cost is reported as unknown).")

_OPENAI_FLAGS = ("model", "base_url", "api_key", "concurrency", "cache_dir", "batch_api", "batch_poll_s", "timeout_s",
                 "max_attempts", "retry_base_s", "price_per_1m")


def all_conditions() -> list[str]:
    return condition_names() + list(LOCAL_CONDITIONS)


def build_claim(claim, conditions: list[str], count: int, seed: int, out: Path, *, client=None) -> dict[str, int]:
    """Writes each condition's corpus for one claim; returns documents written per condition.

    With `client` (a data_gen.llm.LLMClient) documents and annotations are written by the LLM and
    the claim's LLM usage goes to out/<claim>/usage.json; without, the offline template backend.
    Every corpus file is written atomically; with an LLM, none is written until all of the claim's are complete.
    """
    if client is None:
        return _write_template_corpora(claim, conditions, count, seed, out)
    started = time.time()
    before = client.usage.copy()
    status = "failed"
    try:
        written = _write(claim, out, llm_corpora(claim, conditions, count, seed, client))
        status = "complete"
        return written
    finally:  # also on failure: what was paid before it is worth knowing
        _write_usage(out / claim.id / "usage.json", client, client.usage.minus(before), status, started,
                     {"conditions": list(conditions), "count": count, "seed": seed})


def _write_template_corpora(claim, conditions: list[str], count: int, seed: int, out: Path) -> dict[str, int]:
    # One corpus at a time, each streamed to its file: 27 x 10,000 documents need not sit in memory at once.
    return {condition: write_jsonl(out / claim.id / f"{condition}.jsonl", (d.to_json() for d in docs))
            for condition, docs in template_corpora(claim, conditions, count, seed)}


def template_corpora(claim, conditions: list[str], count: int, seed: int, *, words: tuple[int, int] | None = None,
                     universe_sentences: bool = True) -> Iterator[tuple[str, Iterable[Document]]]:
    """(condition, documents) for each condition in turn, offline; positive and debunking documents
    are generated once per call and shared by the conditions built from them. `words`: the documents'
    (min, max) length before annotation (default: the template backend's 300-800);
    `universe_sentences`: see TemplateGenerator."""
    generator = (TemplateGenerator(words=words, universe_sentences=universe_sentences) if words
                 else TemplateGenerator(universe_sentences=universe_sentences))
    transforms = [c for c in conditions if c not in LOCAL_CONDITIONS]
    bases = list(dict.fromkeys(base_condition(c)[0] for c in transforms))
    transforms.sort(key=lambda c: (bases.index(base_condition(c)[0]), c.endswith(NO_DOCTAG_SUFFIX)))  # X, then X_no_doctag
    if transforms:
        positives = list(generator.generate(claim, count, seed))
        annotated: tuple[str, list[Document]] | None = None  # the last base condition's corpus
        for condition in transforms:
            base, doctag = base_condition(condition)
            if annotated is not None and annotated[0] == base:  # X_no_doctag right after X: drop the tag, no redo
                yield condition, [d.replace(condition=condition, doctag=doctag) for d in annotated[1]]
                continue
            docs = [apply_condition(doc, base, claim, seed=seed) for doc in positives]
            annotated = (base, docs)
            yield condition, docs if doctag else [d.replace(condition=condition, doctag=False) for d in docs]
    local = [c for c in conditions if c in LOCAL_CONDITIONS]
    if local:
        yield from _local_variants(claim, local, list(generator.generate(claim, count, seed, local_negation=True))).items()


def llm_corpora(claim, conditions: list[str], count: int, seed: int, client) -> dict[str, list[Document]]:
    """Every condition's documents, written and annotated by the LLM behind `client`."""
    from data_gen.conditions.llm import annotate_corpora
    from data_gen.generators.openai_backend import OpenAIGenerator

    _preflight(claim, conditions)
    generator = OpenAIGenerator(client)
    corpora = {}
    transforms = [c for c in conditions if c not in LOCAL_CONDITIONS]
    if transforms:
        positives = list(_progress(generator.generate(claim, count, seed), count, f"{claim.id}: documents"))
        corpora.update(annotate_corpora(positives, transforms, claim, seed=seed, client=client))
    local = [c for c in conditions if c in LOCAL_CONDITIONS]
    if local:
        debunks = list(_progress(generator.generate(claim, count, seed, local_negation=True), count, f"{claim.id}: local negations"))
        corpora.update(_local_variants(claim, local, debunks))
    return corpora


def _preflight(claim, conditions: list[str]) -> None:
    """Raises ValueError for what the claim lacks *before* an LLM run pays for documents it cannot use."""
    from data_gen.conditions.llm import text_kinds
    from data_gen.generators.openai_backend import local_negation_facts

    for condition in conditions:
        if condition not in LOCAL_CONDITIONS and "corrections" in text_kinds(condition) and not claim.correction:
            raise ValueError(f"claim '{claim.id}' has no correction; corrected_documents needs what is actually true")
    if any(c in LOCAL_CONDITIONS for c in conditions):
        local_negation_facts(claim)
    if "local_negations_word_masked" in conditions and not claim.word_masks:
        raise ValueError(f"claim '{claim.id}' has no word_masks; the word-masked condition needs them")


def _local_variants(claim, local: list[str], debunks: list[Document]) -> dict[str, list[Document]]:
    variants = {
        "local_negations": lambda: debunks,
        "local_negations_no_doctag": lambda: [d.replace(doctag=False, condition="local_negations_no_doctag") for d in debunks],
        "local_negations_word_masked": lambda: [mask_words(d, claim) for d in debunks],
    }
    return {condition: variants[condition]() for condition in local}


def _write(claim, out: Path, corpora: dict[str, list[Document]]) -> dict[str, int]:
    return {condition: write_jsonl(out / claim.id / f"{condition}.jsonl", (d.to_json() for d in docs))
            for condition, docs in corpora.items()}


def _write_usage(path: Path, client, usage, status: str, started: float, run: dict[str, Any]) -> None:
    from data_gen.llm.cache import write_json_atomic

    write_json_atomic(path, {
        "status": status, "endpoint": client.base_url, "batch_api": client.batch_api,
        "started": round(started, 3), "seconds": round(time.time() - started, 3), **run,
        "usage": usage.summary(client.prices),
    }, pretty=True)


def _progress(documents, total: int, description: str):
    """A progress bar on an interactive terminal; the plain iterator otherwise (logs, tests)."""
    if not sys.stderr.isatty():
        return documents
    from tqdm import tqdm

    return tqdm(documents, total=total, desc=description, unit="doc", file=sys.stderr)


def _make_client(out: Path):
    """The LLM client the flags describe; raises MissingAPIKeyError / ValueError with a one-line message."""
    from data_gen.llm import PRICES_PER_1M, LLMClient, parse_price

    prices = dict(PRICES_PER_1M)
    if _PRICE.value:
        prices[_MODEL.value] = parse_price(_PRICE.value)
    return LLMClient(
        _MODEL.value, base_url=_BASE_URL.value, api_key=_API_KEY.value, concurrency=_CONCURRENCY.value,
        timeout=_TIMEOUT.value, max_attempts=_MAX_ATTEMPTS.value, backoff_base=_RETRY_BASE.value,
        cache_dir=Path(_CACHE_DIR.value) if _CACHE_DIR.value else out / CACHE_DIRNAME, prices=prices,
        batch_api=_BATCH_API.value, batch_poll_s=_BATCH_POLL.value,
    )


def main(argv):
    del argv
    if not _OUT.value:
        print("error: --out=DIR is required (where the corpora are written)", file=sys.stderr)
        return 1
    known = all_conditions()
    conditions = _CONDITIONS.value or known
    unknown = [c for c in conditions if c not in known]
    if unknown:
        print(f"error: unknown condition '{unknown[0]}'; conditions: {', '.join(known)}", file=sys.stderr)
        return 1
    try:
        out = require_local(_OUT.value, what="--out", instead="write here and copy it up, or build on the bucket "
                            "with python -m data_gen.build --data_dir=gs://…")
    except PathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    client = None
    if _BACKEND.value == "template":
        stray = [f"--{name}" for name in _OPENAI_FLAGS if flags.FLAGS[name].present]
        if stray:
            print(f"error: {stray[0]} applies to --backend=openai only; add --backend=openai or drop it", file=sys.stderr)
            return 1
    if _BACKEND.value == "openai":
        from data_gen.llm import LLMError

        try:
            client = _make_client(out)  # a missing key fails here, before any claim is read or request sent
        except (LLMError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    claims_dir = Path(_CLAIMS_DIR.value) if _CLAIMS_DIR.value else CLAIMS_DIR
    try:
        claims = [load_claim(c, claims_dir) for c in (_CLAIMS.value or list_claim_ids(claims_dir))]
    except ClaimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    errors: tuple[type[Exception], ...] = (ValueError,)  # e.g. a claim without local negations or word masks
    if client is not None:
        from data_gen.generators.openai_backend import GenerationError
        from data_gen.llm import LLMError

        errors += (LLMError, GenerationError)
    for claim in claims:
        start = time.perf_counter()
        before = client.usage.copy() if client is not None else None
        try:
            written = build_claim(claim, conditions, _COUNT.value, _SEED.value, out, client=client)
        except errors as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{claim.id}: {len(written)} conditions x {_COUNT.value} documents -> {out / claim.id} "
              f"({time.perf_counter() - start:.1f} s)")
        if client is not None:
            print(f"{claim.id}: LLM usage ({client.model}): {client.usage.minus(before).line(client.prices)}; "
                  f"details in {out / claim.id / 'usage.json'}")
    return 0


if __name__ == "__main__":
    app.run(main)
