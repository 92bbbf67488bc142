"""The paper's evaluation of a real model on a GPU/TPU: Qwen3-1.7B as the base (a Hugging Face
directory, or a hub id for users with network) and the LoRA fine-tunes of configs/train/qwen3_1p7b_lora.py,
every claim, 5 samples per question at T=0.7 / top-p 0.8, every saved checkpoint (the belief
trajectory), judged by an LLM through any OpenAI-compatible endpoint (OPENAI_API_KEY).

    python -m eval.main --config=configs/eval/qwen3_1p7b.py --workdir=W \\
        --config.base=/path/to/Qwen3-1.7B \\
        --config.runs=negated_documents=workdirs/q17_neg,positive_documents=workdirs/q17_pos
"""

from eval.config import default_config


def get_config():
    config = default_config()
    config.steps = "all"
    config.eval_types = "open_ended,mcq,token_association,robustness,mcq_logprob,correction"
    config.judge.name = "openai"
    config.sampling.batch_size = 64
    config.mesh.num_devices = -1  # every accelerator; raise mesh.tensor for models that do not fit one
    return config
