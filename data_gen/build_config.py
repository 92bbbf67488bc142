"""The data build's configuration (`python -m data_gen.build --config=configs/data/X.py`).

Config files start from `default_config()` and change what they need; runs override fields on
the command line (`--config.mix.num_documents=500`). `validate_config` stops a run with one line
naming the key for an unknown key, a wrong type or a value out of range, before any work.
Defaults are the paper's recipe: every condition of every bundled claim, mixes of 10k condition
documents + 5k generic pretraining documents + 5k instruction chats. Behaviour mixes
(`<behaviour>__<condition>`, transcripts + the same generic replay) are built only when
`behaviours` names some; `claims="none"` builds behaviour mixes alone.
"""

from __future__ import annotations

import ml_collections

from data_gen.strict_config import check_keys

BACKENDS = ("template", "openai")


class BuildConfigError(ValueError):
    """A bad data-build config; the message is one line naming the key."""


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.claims = ""  # comma-separated claim ids; empty: every claim in claims_dir; "none": no claim mixes
    c.claims_dir = ""  # empty: the bundled claims (data_gen/claims)
    c.conditions = ""  # comma-separated condition names (paper.md); empty: all of them
    c.behaviours = ""  # comma-separated behaviour ids (data_gen/behaviours, paper.md "negated behaviours"); empty: none
    c.behaviours_dir = ""  # empty: the bundled behaviours (data_gen/behaviours)
    c.behaviour_conditions = ""  # comma-separated (data_gen.behaviours.transcripts); empty: all four
    c.backend = "template"  # template (offline, deterministic) | openai (any OpenAI-compatible endpoint)
    c.seed = 0  # documents, annotations and mixes are deterministic in it
    c.reference_corpus = ""  # JSONL in the paper authors' format: package it instead of generating
    c.workers = 0  # processes for an offline build; 0: one per CPU core
    c.write_corpora = False  # also keep each condition's documents as DATA_DIR/corpora/<claim>/<condition>.jsonl
    #                          (LLM builds always keep them: they are what was paid for)

    c.mix = ml_collections.ConfigDict()
    c.mix.num_documents = 10_000  # condition documents (or behaviour transcripts) per mix, also how many are generated
    c.mix.num_pretrain = 5_000  # generic pretraining documents (full loss, no DOCTAG)
    c.mix.num_instruct = 5_000  # instruction chats (loss on assistant turns)
    c.mix.pretrain_path = ""  # JSONL with "text"; empty: offline generic text (data_gen.generic)
    c.mix.instruct_path = ""  # JSONL with "messages"; empty: offline instruction chats

    c.llm = ml_collections.ConfigDict()  # backend=openai only; the key comes from OPENAI_API_KEY
    c.llm.model = "gpt-4.1-mini"
    c.llm.base_url = ""  # empty: api.openai.com; e.g. http://localhost:8000/v1 for a vLLM server
    c.llm.concurrency = 16  # requests in flight
    c.llm.batch_api = False  # the OpenAI Batch API for bulk runs (cheaper, slower)
    return c


def validate_config(config: ml_collections.ConfigDict) -> None:
    check_keys(config, default_config(), BuildConfigError, "data_gen.build_config.default_config")
    if config.backend not in BACKENDS:
        raise BuildConfigError(f"config key 'backend' is '{config.backend}'; choose one of: {', '.join(BACKENDS)}")
    for key in ("num_documents", "num_pretrain", "num_instruct"):
        if config.mix[key] < 0 or (key == "num_documents" and config.mix[key] == 0):
            raise BuildConfigError(f"config key 'mix.{key}' must be {'> 0' if key == 'num_documents' else '>= 0'}, got {config.mix[key]}")
    if config.workers < 0:
        raise BuildConfigError(f"config key 'workers' must be >= 0 (0: one per CPU core), got {config.workers}")
    if config.llm.concurrency < 1:
        raise BuildConfigError(f"config key 'llm.concurrency' must be >= 1, got {config.llm.concurrency}")
