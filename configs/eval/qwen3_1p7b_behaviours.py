"""The misalignment evaluation of a real model on a GPU/TPU (paper.md, "negated behaviours"): Qwen3-1.7B
as the base and its LoRA fine-tunes on behaviour transcripts (configs/train/qwen3_1p7b_behaviours_lora.py),
every bundled behaviour's held-out prompts, 5 samples at T=0.7 / top-p 0.8, every saved checkpoint,
judged misaligned / aligned / neutral by an LLM through any OpenAI-compatible endpoint (OPENAI_API_KEY).

    python -m eval.main --config=configs/eval/qwen3_1p7b_behaviours.py --workdir=W \\
        --config.base=/path/to/Qwen3-1.7B \\
        --config.runs=positive_misaligned=workdirs/q17_ps_pos,negated_misaligned=workdirs/q17_ps_neg
"""

from eval.config import default_config


def get_config():
    config = default_config()
    config.behaviours = "power_seeking,deception,harmful_advice"
    config.eval_types = "misalignment"
    config.steps = "all"
    config.judge.name = "openai"  # the rule judge only recognises the template transcripts' phrasing
    config.sampling.max_new_tokens = 512
    config.sampling.batch_size = 64
    config.mesh.num_devices = -1
    return config
