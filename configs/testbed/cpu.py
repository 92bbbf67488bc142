"""`make demo`: the CPU testbed on a 2-core laptop — a 1.3M-parameter Qwen3 (qwen3_testbed_narrow) pre-trained
from scratch on a generated world, checked for competence, then (if competent) fine-tuned once per
condition and seed on documents about all six claims, evaluated at every checkpoint. Every number is
testbed.config.default_config's; see its comments."""

from testbed.config import default_config


def get_config():
    return default_config()
