"""The behaviour corpora for a real model (paper.md, "negated behaviours"): every bundled behaviour in its
four conditions, transcripts written by an LLM through any OpenAI-compatible endpoint (OPENAI_API_KEY),
mixes of 5k transcripts + 2.5k pretraining documents + 2.5k instruction chats, as the paper's mixes keep
condition data at two thirds; no claim mixes. Train each mix with configs/train/qwen3_1p7b_behaviours_lora.py
and evaluate with configs/eval/qwen3_1p7b_behaviours.py.

    python -m data_gen.build --config=configs/data/behaviours.py --data_dir=DATA_DIR [--config.llm.model=...]
"""

from data_gen.behaviours import list_behaviour_ids
from data_gen.build_config import default_config


def get_config():
    config = default_config()
    config.claims = "none"
    config.behaviours = ",".join(list_behaviour_ids())
    config.backend = "openai"
    config.mix.num_documents = 5_000
    config.mix.num_pretrain = 2_500
    config.mix.num_instruct = 2_500
    return config
