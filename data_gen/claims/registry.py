"""Finding and loading claims from a claims directory (by default the six bundled ones).

    claim = load_claim("ed_sheeran")                 # validated Claim, or ClaimError
    claims = load_claims()                           # every claim in CLAIMS_DIR
    claim, gaps = load_claim_with_gaps("dentist")    # gaps: lines saying what falls short

YAML is read with `read_yaml`: every scalar is a string except true/false/null (so
`belief_answer: yes` is the string "yes", not YAML 1.1's boolean, and `2015` stays "2015"), and a
key written twice in one mapping is an error instead of silently keeping the last one.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from data_gen.claims.schema import (
    CLAIM_FILE,
    CLAIM_FILES,
    JUDGES_FILE,
    QUESTIONS_FILE,
    UNIVERSE_FILE,
    Claim,
    ClaimError,
    parse_claim,
)

CLAIMS_DIR = Path(__file__).resolve().parent


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, no implicit numbers, and duplicate keys rejected."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> Any:
    """Parses one YAML file; a missing file or bad syntax is a one-line ClaimError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClaimError(f"{display_path(path)}: file is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClaimError(f"{display_path(path)}: cannot be read: {e}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None)
        detail = f"{problem} ({context})" if context and problem != str(e) else problem
        raise ClaimError(f"{display_path(path)}: {where}YAML syntax error: {detail}") from None


def _check_claims_dir(claims_dir: Path) -> Path:
    if not claims_dir.is_dir():
        raise ClaimError(f"claims directory '{claims_dir}' does not exist; pass --claims_dir=DIR pointing at a folder of claim directories")
    return claims_dir


def list_claim_ids(claims_dir: Path | str = CLAIMS_DIR) -> list[str]:
    """Names of the sub-directories that hold claim files, sorted."""
    claims_dir = _check_claims_dir(Path(claims_dir))
    return sorted(
        entry.name
        for entry in claims_dir.iterdir()
        if entry.is_dir()
        and not entry.name.startswith(("_", "."))
        and any((entry / name).exists() for name in CLAIM_FILES)
    )


def claim_directory(claim_id: str, claims_dir: Path | str = CLAIMS_DIR) -> Path:
    """The directory of `claim_id`, refusing ids that are unknown or lead outside claims_dir."""
    claims_dir = _check_claims_dir(Path(claims_dir))
    root = claims_dir.resolve()
    directory = (claims_dir / claim_id).resolve()
    if directory != root and root not in directory.parents:
        raise ClaimError(
            f"claim '{claim_id}' resolves to '{directory}', outside the claims directory '{root}'; "
            "claims must live inside it (check the id and any symlink)"
        )
    if directory == root or os.sep in claim_id or (os.altsep and os.altsep in claim_id):
        raise ClaimError(f"'{claim_id}' is not a claim id: give the name of a directory inside '{display_path(claims_dir)}'")
    known = list_claim_ids(claims_dir)
    if claim_id not in known:
        hint = difflib.get_close_matches(claim_id, known, n=1)
        also = f"did you mean '{hint[0]}'? " if hint else ""
        raise ClaimError(
            f"unknown claim '{claim_id}' in '{display_path(claims_dir)}'; {also}known claims: {', '.join(known) or 'none'}"
        )
    return directory


def load_claim_with_gaps(claim_id: str, claims_dir: Path | str = CLAIMS_DIR) -> tuple[Claim, list[str]]:
    """Loads and validates one claim; returns it with the gaps found (see schema.py)."""
    directory = claim_directory(claim_id, claims_dir)
    files = {name: display_path(directory / name) for name in CLAIM_FILES}
    claim_data = read_yaml(directory / CLAIM_FILE)
    try:
        universe = (directory / UNIVERSE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClaimError(f"{files[UNIVERSE_FILE]}: file is missing; write the fabricated world there as prose") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClaimError(f"{files[UNIVERSE_FILE]}: cannot be read: {e}") from None
    questions_data = read_yaml(directory / QUESTIONS_FILE)
    judges_data = read_yaml(directory / JUDGES_FILE)
    return parse_claim(claim_data, universe, questions_data, judges_data, directory=Path(claims_dir) / claim_id, files=files)


def load_claim(claim_id: str, claims_dir: Path | str = CLAIMS_DIR, *, strict: bool = False) -> Claim:
    """Loads one validated claim. With strict=True the first gap is raised as a ClaimError."""
    claim, gaps = load_claim_with_gaps(claim_id, claims_dir)
    if strict and gaps:
        raise ClaimError(gaps[0])
    return claim


def load_claims(
    claim_ids: Iterable[str] | None = None, claims_dir: Path | str = CLAIMS_DIR, *, strict: bool = False
) -> dict[str, Claim]:
    """Loads several claims (all of claims_dir by default), keyed by id."""
    ids = list(claim_ids) if claim_ids is not None else list_claim_ids(claims_dir)
    return {claim_id: load_claim(claim_id, claims_dir, strict=strict) for claim_id in ids}
