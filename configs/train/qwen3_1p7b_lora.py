"""The paper's recipe on Qwen3-1.7B: LoRA rank 32 with the unembedding, lr 5e-5 linear to 0,
Adam(0.9, 0.95), batch 32, one epoch, log-spaced checkpoints. Weights from the Hugging Face hub
(or a local copy: --config.model.hf_checkpoint=/path)."""

from nn_train.config import default_config


def get_config():
    config = default_config()
    config.model.hf_checkpoint = "Qwen/Qwen3-1.7B"
    config.model.remat = "save_dots"
    config.data.seq_len = 4096
    return config
