"""LoRA fine-tuning of Qwen3-1.7B on one behaviour mix (data_gen.build with configs/data/behaviours.py):
the paper's recipe (rank 32 with the unembedding, lr 5e-5 linear to 0, batch 32, one epoch, log-spaced
checkpoints) on chat transcripts, whose loss falls on the assistant turns only. Pick the mix:

    python -m nn_train.main --config=configs/train/qwen3_1p7b_behaviours_lora.py --workdir=workdirs/q17_ps_neg \\
        --config.data.source=tfds --config.data.path=DATA_DIR/tfds --config.data.mix=power_seeking__negated_misaligned
"""

from nn_train.config import default_config


def get_config():
    config = default_config()
    config.model.hf_checkpoint = "Qwen/Qwen3-1.7B"
    config.model.remat = "save_dots"
    config.data.seq_len = 2048  # a transcript is a few hundred tokens; rows pack several
    return config
