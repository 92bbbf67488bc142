"""A seconds-long LoRA run of the tiny Qwen3 preset on synthetic data (CPU; tests and smoke checks)."""

from nn_train.config import default_config


def get_config():
    config = default_config()
    config.model.preset = "qwen3_tiny"
    config.model.dtype = "float32"
    config.lora.rank = 4
    config.lora.alpha = 8.0
    config.data.seq_len = 64
    config.data.num_examples = 160
    config.optimizer.learning_rate = 1e-2
    config.training.global_batch_size = 8
    config.training.num_steps = 20
    config.checkpoint.schedule = "every"
    config.checkpoint.every_steps = 5
    config.logging.progress_bar = False
    return config
