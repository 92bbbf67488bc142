"""The on-disk response cache that makes LLM runs resumable and never pay twice.

Every chat request is reduced to a canonical JSON record (model, messages, sampling parameters,
response format and a `sample` index, so distinct samples of one prompt are distinct entries)
and keyed by its SHA-256. Each entry is one small JSON file, DIR/<first two hex digits>/<key>.json,
written to a temporary name in the same directory and renamed into place: a run killed at any
moment leaves either the whole entry or none, and a rerun of the same work finds every completed
request here. An entry that cannot be read (e.g. truncated by a power loss on a filesystem that
reorders writes) is treated as missing and written again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping


def canonical_json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(canonical: Mapping[str, Any]) -> str:
    """The cache key of a canonical request record: SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(canonical).encode("utf-8")).hexdigest()


def write_json_atomic(path: Path, record: Mapping[str, Any], *, pretty: bool = False) -> None:
    """Writes `record` to `path` through a temporary file in the same directory and a rename.

    Compact canonical JSON by default (cache entries); `pretty` keeps the key order and indents (files people read).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem[:12]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n" if pretty else canonical_json(record))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ResponseCache:
    """Key → entry (a JSON object), one file per key, atomic writes."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        # Two-level fan-out keeps directories small for 10^5–10^6 entries.
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with open(self.path(key), encoding="utf-8") as f:
                entry = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None  # unreadable or truncated: a miss, overwritten by the next put
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        write_json_atomic(self.path(key), entry)

    def __len__(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(1 for _ in self.directory.glob("??/*.json"))


class MemoryCache(ResponseCache):
    """The same interface kept in memory, for library use without a cache directory (nothing survives the process)."""

    def __init__(self):
        super().__init__(Path("(memory)"))
        self._entries: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        self._entries[key] = json.loads(canonical_json(entry))

    def __len__(self) -> int:
        return len(self._entries)
