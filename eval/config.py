"""The evaluation configuration (`python -m eval.main --config=configs/eval/X.py --workdir=W`).

Config files start from `default_config()`; runs override fields on the command line
(`--config.sampling.samples=1`). `validate_config` stops a run with one line naming the key for an
unknown key, a wrong type or a value out of range, before any model is loaded. Defaults follow
../shared/paper.md: 5 samples per question at T=0.7, top-p 0.8, thinking off, the four pooled
eval types plus the judge-free MCQ scoring, the offline rule judge.

What is evaluated:
  base   the model before fine-tuning, reported as condition "base": a Hugging Face checkpoint
         directory, a nn_train workdir (its last checkpoint — e.g. a pre-trained testbed base), or
         "openai:<model>" for a model behind an OpenAI-compatible endpoint (openai.base_url)
  runs   fine-tuned models, "condition=WORKDIR,..." (nn_train workdirs); `steps` picks which of
         each run's checkpoints: final | all | a comma-separated list of steps

Over what: the claim eval types (eval.suite) run over `claims`; eval type `misalignment`
(eval.misalignment) runs over `behaviours` (data_gen.behaviours), e.g.
    --config.eval_types=misalignment --config.behaviours=power_seeking,deception
When eval_types holds only behaviour eval types, no claim is loaded.
"""

from __future__ import annotations

import ml_collections

from data_gen.strict_config import check_keys
from eval.misalignment import BEHAVIOUR_EVAL_TYPES
from eval.suite import EVAL_TYPES

MODEL_CHECKS = ("capability",)  # per model, not per claim: eval.capability
JUDGES = ("rule", "openai")


class EvalConfigError(ValueError):
    """A bad eval config; the message is one line naming the key."""


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.claims = ""  # comma-separated claim ids; empty: every claim in claims_dir
    c.claims_dir = ""  # empty: the bundled claims
    c.behaviours = ""  # comma-separated behaviour ids for eval type misalignment; empty: none
    c.behaviours_dir = ""  # empty: the bundled behaviours (data_gen/behaviours)
    c.eval_types = "open_ended,mcq,token_association,robustness,mcq_logprob"  # eval.suite.EVAL_TYPES, misalignment, capability
    c.base = ""  # HF checkpoint dir | nn_train workdir | openai:<model>; empty: no base model row
    c.runs = ""  # condition=WORKDIR,... fine-tuned nn_train runs
    c.steps = "final"  # final | all | comma-separated checkpoint steps of each run
    c.tokenizer = ""  # empty: each model's own (the run's data.tokenizer, the HF directory's)

    c.sampling = ml_collections.ConfigDict()
    c.sampling.samples = 5
    c.sampling.temperature = 0.7  # 0: greedy
    c.sampling.top_p = 0.8
    c.sampling.top_k = 0  # 0: off
    c.sampling.max_new_tokens = 256
    c.sampling.seed = 0
    c.sampling.batch_size = 32  # conversations per sampler call

    c.mesh = ml_collections.ConfigDict()  # where models are placed; nn_train's (data, fsdp, expert, tensor) axes
    c.mesh.data = 1
    c.mesh.fsdp = -1  # one size may be -1 = fill
    c.mesh.expert = 1  # MoE models: experts split over it (it must divide num_experts); rows split over it too
    c.mesh.tensor = 1
    c.mesh.num_devices = 1  # 1: one device (small models); -1: every device, parameters sharded (large models)

    c.judge = ml_collections.ConfigDict()
    c.judge.name = "rule"  # rule (offline, answer keys) | openai (the claim's rubrics, any OpenAI-compatible endpoint)
    c.judge.model = "gpt-4.1-mini"
    c.judge.base_url = ""  # empty: api.openai.com; the key comes from OPENAI_API_KEY
    c.judge.concurrency = 16

    c.openai = ml_collections.ConfigDict()  # base=openai:<model>: the endpoint that serves it
    c.openai.base_url = ""
    c.openai.concurrency = 16

    c.capability = ml_collections.ConfigDict()  # eval type capability: held-out generic text and questions
    c.capability.documents = 50  # perplexity documents
    c.capability.questions = 100  # computed-answer questions, answered greedily

    c.icl = ml_collections.ConfigDict()  # eval type icl: K documents of a training mix in context (base model only)
    c.icl.k = 20
    c.icl.data_dir = ""  # the TFDS data_dir data_gen.build wrote
    c.icl.condition = "negated_documents"  # the mix <claim>__<condition> the documents come from
    c.icl.mix = ""  # a mix holding several claims' documents (each claim reads its own); empty: <claim>__<condition>
    return c


def validate_config(config: ml_collections.ConfigDict) -> None:
    check_keys(config, default_config(), EvalConfigError, "eval.config.default_config")
    known = EVAL_TYPES + BEHAVIOUR_EVAL_TYPES + MODEL_CHECKS
    unknown = [t for t in split(config.eval_types) if t not in known]
    if unknown or not split(config.eval_types):
        raise EvalConfigError(f"config key 'eval_types': unknown or empty ('{','.join(unknown)}'); eval types: {', '.join(known)}")
    if any(t in BEHAVIOUR_EVAL_TYPES for t in split(config.eval_types)) and not split(config.behaviours):
        raise EvalConfigError("config key 'behaviours' is empty: eval type misalignment needs behaviour ids "
                              "(e.g. --config.behaviours=power_seeking)")
    if config.judge.name not in JUDGES:
        raise EvalConfigError(f"config key 'judge.name' is '{config.judge.name}'; choose one of: {', '.join(JUDGES)}")
    if not config.base and not config.runs:
        raise EvalConfigError("config keys 'base' and 'runs' are both empty: nothing to evaluate")
    for entry in split(config.runs):
        if "=" not in entry or not all(part.strip() for part in entry.split("=", 1)):
            raise EvalConfigError(f"config key 'runs': '{entry}' is not condition=WORKDIR")
    if config.steps not in ("final", "all") and not all(s.isdigit() for s in split(config.steps)):
        raise EvalConfigError(f"config key 'steps' is '{config.steps}'; use final, all, or comma-separated steps")
    s = config.sampling
    if s.samples < 1 or s.max_new_tokens < 1 or s.batch_size < 1:
        raise EvalConfigError("config keys 'sampling.samples', 'sampling.max_new_tokens' and 'sampling.batch_size' must be >= 1")
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.top_k < 0:
        raise EvalConfigError(f"config keys 'sampling.temperature' (>= 0), 'sampling.top_p' (0, 1] and 'sampling.top_k' (>= 0) "
                              f"got {s.temperature}, {s.top_p}, {s.top_k}")
    if "icl" in split(config.eval_types) and not config.icl.data_dir:
        raise EvalConfigError("config key 'icl.data_dir' is empty: eval type icl needs a TFDS data_dir built by data_gen.build")


def split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]
