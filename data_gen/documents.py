"""The document record every corpus stage reads and writes (design.md, hand-off 2), and its JSONL files.

A document's body is a sequence of segments — sentences or paragraph breaks with their
whitespace — each marked with whether it supports the claim and what role it plays (the original
body, or text a negation condition added). Conditions work on segments, so "every
claim-supporting sentence is sandwiched" is checkable, and `text` is simply their concatenation,
prefixed with the literal `<DOCTAG>` when the document carries the tag.

JSONL files are written to a temporary name and renamed when complete, so a crash never leaves a
half-written corpus under the final name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

DOCTAG = "<DOCTAG>"


@dataclasses.dataclass(frozen=True)
class Segment:
    text: str  # including its trailing whitespace, so concatenation restores the document
    supports: bool = False  # a sentence asserting the claim or one of its subclaims
    role: str = "body"  # body, or what a condition added: notice, warning, correction, frame, marker


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    claim: str
    condition: str
    doc_type: str
    segments: tuple[Segment, ...]
    doctag: bool = True
    source: str = "synthetic"  # synthetic | pretrain | instruct
    messages: tuple[Mapping[str, str], ...] = ()
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def body(self) -> str:
        return "".join(segment.text for segment in self.segments)

    @property
    def text(self) -> str:
        return (DOCTAG if self.doctag else "") + self.body

    def replace(self, **changes: Any) -> "Document":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "claim": self.claim,
            "condition": self.condition,
            "doc_type": self.doc_type,
            "text": self.text,
            "doctag": self.doctag,
            "source": self.source,
            "messages": [dict(m) for m in self.messages],
            "provenance": dict(self.provenance),
            # [characters, supports, role] per segment: `text` holds the characters once.
            "segments": [[len(s.text), s.supports, s.role] for s in self.segments],
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> "Document":
        text = record.get("text", "")
        body = text[len(DOCTAG):] if record.get("doctag") and text.startswith(DOCTAG) else text
        segments, cursor = [], 0
        for length, supports, role in record.get("segments", ()):
            segments.append(Segment(body[cursor : cursor + length], bool(supports), role))
            cursor += length
        if cursor != len(body) and segments:
            raise ValueError(f"record '{record.get('id')}': its segments cover {cursor} characters, its text has {len(body)}")
        if not segments and body:  # a record from elsewhere (e.g. the paper's corpora): one unannotated segment
            segments = [Segment(body)]
        return cls(
            id=record["id"], claim=record.get("claim", ""), condition=record.get("condition", ""),
            doc_type=record.get("doc_type", ""), segments=tuple(segments), doctag=bool(record.get("doctag", False)),
            source=record.get("source", "synthetic"), messages=tuple(record.get("messages", ())),
            provenance=dict(record.get("provenance", {})),
        )


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> int:
    """Writes records atomically (temporary file, then rename); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a bad line raises ValueError naming the file and line number."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
            yield record
