"""The paper's corpora (../shared/paper.md): every condition of the six claims, mixes of 10k condition
documents + 5k pretraining documents + 5k instruction chats. Offline by default (template backend);
`--config.backend=openai --config.llm.model=...` writes them with an LLM, as the paper did.
For real runs, point mix.pretrain_path / mix.instruct_path at web text and chats sampled from the
base model."""

from data_gen.build_config import default_config


def get_config():
    return default_config()
