"""`make demo`'s training stage: the tiny Qwen3 preset, fully fine-tuned for one epoch on a
template-generated negated_documents corpus with a tokenizer trained on it (CPU, about a minute).
It shows the pipeline wired end to end; the belief measurement arrives with the evaluation stage."""

from nn_train.config import default_config


def get_config():
    config = default_config()
    config.model.preset = "qwen3_tiny"
    config.model.dtype = "float32"
    config.lora.enabled = False
    config.data.source = "jsonl"
    config.data.path = "workdir/demo/corpora/ed_sheeran/negated_documents.jsonl"
    config.data.tokenizer = "workdir/demo/tokenizer"
    config.data.seq_len = 256
    config.optimizer.learning_rate = 3e-3
    config.training.global_batch_size = 8
    config.checkpoint.num_log = 5
    return config
