"""Command line for the behaviours registry.

  python -m data_gen.behaviours validate [--behaviours_dir=DIR] [--behaviour=ID,...]
      One line per behaviour (ok with its counts, or FAIL with file, field and what is wrong);
      exit 1 if any behaviour fails.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from data_gen.behaviours.registry import BEHAVIOURS_DIR, list_behaviour_ids, load_behaviour
from data_gen.behaviours.schema import BehaviourError
from data_gen.claims.registry import display_path

_BEHAVIOURS_DIR = flags.DEFINE_string("behaviours_dir", None, "Folder of <id>.yaml behaviour files (default: the bundled ones).")
_BEHAVIOUR = flags.DEFINE_list("behaviour", None, "validate: behaviour ids to check (default: every behaviour in --behaviours_dir).")

COMMANDS = ("validate",)


def validate() -> int:
    behaviours_dir = Path(_BEHAVIOURS_DIR.value) if _BEHAVIOURS_DIR.value else BEHAVIOURS_DIR
    try:
        behaviour_ids = _BEHAVIOUR.value or list_behaviour_ids(behaviours_dir)
    except BehaviourError as e:
        print(f"error: {e}")
        return 1
    if not behaviour_ids:
        print(f"error: no <id>.yaml behaviour files in '{display_path(behaviours_dir)}'")
        return 1
    width = max(len(behaviour_id) for behaviour_id in behaviour_ids)
    failed = 0
    for behaviour_id in behaviour_ids:
        try:
            behaviour = load_behaviour(behaviour_id, behaviours_dir)
        except BehaviourError as e:
            failed += 1
            print(f"FAIL {behaviour_id:<{width}}  {e}")
            continue
        print(f"ok   {behaviour_id:<{width}}  {len(behaviour.train_prompts)} train prompts, "
              f"{len(behaviour.eval_prompts)} eval prompts, {len(behaviour.responses)} response triples")
    print(f"{len(behaviour_ids) - failed} of {len(behaviour_ids)} behaviours valid")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        print(f"error: give one command, {' or '.join(COMMANDS)} (got {' '.join(argv[1:]) or 'none'}); --help lists the flags")
        return 2
    return validate()


if __name__ == "__main__":
    app.run(main)
