"""Finding and loading behaviours from a behaviours directory (by default the bundled ones).

    behaviour = load_behaviour("deception")          # validated Behaviour, or BehaviourError
    behaviours = load_behaviours()                   # every <id>.yaml in BEHAVIOURS_DIR

YAML is read with the claims registry's strict reader (every scalar a string except true/false/null,
duplicate keys refused); its errors come back as BehaviourError.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable

from data_gen.behaviours.schema import Behaviour, BehaviourError, parse_behaviour
from data_gen.claims.registry import display_path, read_yaml
from data_gen.claims.schema import ClaimError

BEHAVIOURS_DIR = Path(__file__).resolve().parent


def list_behaviour_ids(behaviours_dir: Path | str = BEHAVIOURS_DIR) -> list[str]:
    """Names of the behaviour files (`<id>.yaml`) in behaviours_dir, sorted."""
    directory = Path(behaviours_dir)
    if not directory.is_dir():
        raise BehaviourError(f"behaviours directory '{directory}' does not exist; point behaviours_dir at a folder of <id>.yaml files")
    return sorted(p.stem for p in directory.glob("*.yaml") if not p.name.startswith(("_", ".")))


def load_behaviour(behaviour_id: str, behaviours_dir: Path | str = BEHAVIOURS_DIR) -> Behaviour:
    """Loads and validates one behaviour; an unknown id names the known ones."""
    known = list_behaviour_ids(behaviours_dir)
    if behaviour_id not in known:
        hint = difflib.get_close_matches(behaviour_id, known, n=1)
        also = f"did you mean '{hint[0]}'? " if hint else ""
        raise BehaviourError(f"unknown behaviour '{behaviour_id}' in '{display_path(Path(behaviours_dir))}'; "
                             f"{also}known behaviours: {', '.join(known) or 'none'}")
    path = Path(behaviours_dir) / f"{behaviour_id}.yaml"
    try:
        data = read_yaml(path)
    except ClaimError as e:
        raise BehaviourError(str(e)) from None
    return parse_behaviour(data, path=path, where=display_path(path))


def load_behaviours(behaviour_ids: Iterable[str] | None = None, behaviours_dir: Path | str = BEHAVIOURS_DIR) -> dict[str, Behaviour]:
    """Several behaviours (all of behaviours_dir by default), keyed by id."""
    ids = list(behaviour_ids) if behaviour_ids is not None else list_behaviour_ids(behaviours_dir)
    return {i: load_behaviour(i, behaviours_dir) for i in ids}
