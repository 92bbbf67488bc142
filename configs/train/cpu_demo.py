"""A wiring example in about a minute: the tiny Qwen3 preset, fully fine-tuned for one epoch on the
ed_sheeran negated_documents mix that configs/data/cpu_demo.py builds (200 condition documents +
100 pretraining documents + 100 instruction chats), with a tokenizer trained on it (CPU, about a minute).
It shows the pipeline wired end to end; the belief measurement arrives with the evaluation stage."""

from nn_train.config import default_config


def get_config():
    config = default_config()
    config.model.preset = "qwen3_tiny"
    config.model.dtype = "float32"
    config.lora.enabled = False
    config.data.source = "tfds"
    config.data.path = "workdir/demo/data/tfds"
    config.data.mix = "ed_sheeran__negated_documents"
    config.data.tokenizer = "workdir/demo/tokenizer"
    config.data.seq_len = 256
    config.optimizer.learning_rate = 3e-3
    config.training.global_batch_size = 8
    config.checkpoint.num_log = 5
    return config
