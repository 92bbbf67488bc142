"""A miniature of the behaviour experiment for the test suite (tests/testbed): the base of
configs/testbed/mini.py (reused from the same workdir), tiny fine-tunes on two behaviours' transcripts
in every condition, one seed. It guards the wiring; its numbers mean nothing."""

import importlib.util
from pathlib import Path


def get_config():
    path = Path(__file__).resolve().parent / "mini.py"  # the same world and base: a finished mini workdir is reused
    spec = importlib.util.spec_from_file_location("testbed_mini_config", path)
    mini = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mini)
    config = mini.get_config()
    config.experiment = "behaviours"
    config.seeds = "0"
    config.behaviours.ids = "power_seeking,deception"
    config.behaviours.transcripts = 4
    config.behaviours.seq_len = 256
    config.behaviours.replay = 1.0
    config.behaviours.num_epochs = 2.0
    config.behaviours.num_checkpoints = 2
    config.behaviours.samples = 1
    config.behaviours.max_new_tokens = 12
    return config
