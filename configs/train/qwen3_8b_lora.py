"""The paper's recipe on Qwen3-8B, for a GPU node or a TPU slice: parameters sharded over fsdp,
full rematerialisation, bf16 compute."""

from nn_train.config import default_config


def get_config():
    config = default_config()
    config.model.hf_checkpoint = "Qwen/Qwen3-8B"
    config.model.remat = "full"
    config.data.seq_len = 8192
    config.training.microbatches = 4
    return config
