"""Strict ml_collections configs: every key of a run's config must exist in its defaults, with its type.

Shared by the data build (data_gen.build_config), training (nn_train.config) and evaluation
(eval.config), so a typo such as `--config.mix.num_document=5` stops any of them with one line
naming the key, before any work. `parse_flags` is their absl flags parser: a bad command-line
override is that one line too, not a traceback.
"""

from __future__ import annotations

import sys

import ml_collections
from absl import flags


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict, error: type[Exception],
               defaults_function: str, prefix: str = "") -> None:
    """Raises `error` for an unknown, missing or wrongly typed key (an int is accepted for a float)."""
    for key in config.keys():
        name = f"{prefix}{key}"
        if key not in reference:
            raise error(f"config key '{name}' is unknown; known keys here: {', '.join(sorted(reference.keys()))}")
        value, default = config[key], reference[key]
        if isinstance(default, ml_collections.ConfigDict):
            if not isinstance(value, ml_collections.ConfigDict):
                raise error(f"config key '{name}' must be a group of settings, got {type(value).__name__}")
            check_keys(value, default, error, defaults_function, f"{name}.")
        elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
            if not (isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
                raise error(f"config key '{name}' must be {type(default).__name__}, got {type(value).__name__} {value!r}")
    for key in reference.keys():
        if key not in config:
            raise error(f"config key '{prefix}{key}' is missing; start config files from {defaults_function}()")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with a bad --config override (unknown key, wrong type) as one line."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        message = str(e.args[0] if e.args else e)
        if isinstance(e, AttributeError) and message.startswith("'"):  # ml_collections wraps the text in a repr
            message = message[1:-1].replace("\\'", "'").replace("\\n", " ")
        message = " ".join(message.split())
        print(f"error: bad flag or config override: {message}", file=sys.stderr)
        sys.exit(1)
