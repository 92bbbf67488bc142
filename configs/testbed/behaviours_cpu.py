"""The behaviour experiment on the CPU testbed: the base model of the main job (configs/testbed/cpu.py,
the same world and base settings, so a finished `make demo` workdir is reused) fine-tuned on
aligned / misaligned / negated-misaligned / locally negated transcripts of three behaviours.

    python -m testbed --config=configs/testbed/behaviours_cpu.py --workdir=workdir/testbed
"""

from testbed.config import default_config


def get_config():
    config = default_config()
    config.experiment = "behaviours"
    return config
