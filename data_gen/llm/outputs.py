"""Reading structured answers out of model outputs, strictly and then leniently.

Stages that ask for JSON (`response_format={"type": "json_object"}`) parse the answer with
`json_object`: the whole output must be one JSON object; failing that, the object inside a
```json fence or between the first "{" and the last "}" is accepted, because models that ignore
the response format usually still write the object. Anything else raises `OutputError`, which the
client treats as a failed attempt (retried, never cached).
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


class OutputError(ValueError):
    """A model output is not in the format its prompt asked for."""


def json_object(text: str) -> dict[str, Any]:
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    preview = " ".join(text.split())[:80]
    raise OutputError(f"expected a JSON object, got {preview!r}")


def string_list(record: dict[str, Any], field: str, *, minimum: int = 1) -> list[str]:
    """record[field] as a list of non-empty strings (at least `minimum`)."""
    value = record.get(field)
    if not isinstance(value, list):
        raise OutputError(f"field '{field}' should be a list, got {type(value).__name__}")
    items = [item.strip() for item in value if isinstance(item, str) and item.strip()]
    if len(items) < minimum:
        raise OutputError(f"field '{field}' has {len(items)} usable strings, expected at least {minimum}")
    return items


def text_field(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise OutputError(f"field '{field}' should be a non-empty string")
    return " ".join(value.split())
