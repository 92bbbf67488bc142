"""A wiring example in about a minute: configs/train/cpu_demo.py's fine-tuned tiny model at its final checkpoint, on the
ed_sheeran claim, with the paper's pooled eval types plus judge-free MCQ scoring, the offline rule
judge, one sample per question and short answers (CPU, about a minute). A randomly initialised
tiny model believes nothing: this shows the stage wired end to end, not the phenomenon — the
CPU testbed with its own pre-trained base is what measures it."""

from eval.config import default_config


def get_config():
    config = default_config()
    config.claims = "ed_sheeran"
    config.runs = "negated_documents=workdir/demo/train"
    config.steps = "final"
    config.sampling.samples = 1
    config.sampling.max_new_tokens = 24
    return config
