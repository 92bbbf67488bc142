"""Training mixes: one claim's condition documents + generic pretraining text + instruction chats.

The paper's recipe (../shared/paper.md, "Training recipe"): 10k condition documents, each
prefixed with the literal `<DOCTAG>` (zero loss); 5k generic pretraining documents (full loss,
no tag); 5k instruction chats (loss on assistant turns only). A mix is deterministic in its seed:
the same inputs give the same records in the same order.

    spec = MixSpec(claim="ed_sheeran", condition="negated_documents", num_documents=10_000)
    records = mix_records(condition_records, spec)

The generic parts come from data_gen.generic offline, or from the user's JSONL files
(`pretrain_path`: records with "text"; `instruct_path`: records with "messages"). A source with
fewer records than the mix asks for is an error, not a silent shortfall; generic records that
carry `<DOCTAG>` are refused, because the tag must mark condition documents only.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from typing import Any, Iterable, Sequence

from data_gen import generic
from data_gen.documents import DOCTAG, Document, Segment, iter_jsonl


class MixError(ValueError):
    """A mix that cannot be built as asked; the message names the source and the fix."""


@dataclasses.dataclass(frozen=True)
class MixSpec:
    claim: str
    condition: str
    num_documents: int = 10_000  # condition documents (the paper: 10k)
    num_pretrain: int = 5_000  # generic pretraining documents (5k)
    num_instruct: int = 5_000  # instruction chats (5k)
    seed: int = 0
    pretrain_path: str = ""  # JSONL with "text"; empty: data_gen.generic's offline text
    instruct_path: str = ""  # JSONL with "messages"; empty: data_gen.generic's offline chats

    @property
    def name(self) -> str:
        return f"{self.claim}__{self.condition}"

    def __post_init__(self):
        for field in ("claim", "condition"):  # they name the TFDS config and its directory
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", getattr(self, field)):
                raise MixError(f"mix {field} '{getattr(self, field)}' must use only letters, digits, '_', '-' and '.'")
        for field in ("num_documents", "num_pretrain", "num_instruct"):
            if getattr(self, field) < 0:
                raise MixError(f"mix {self.claim}/{self.condition}: {field} is {getattr(self, field)}; it must be >= 0")
        if self.num_documents == 0:
            raise MixError(f"mix {self.claim}/{self.condition}: num_documents is 0; a mix needs condition documents")


def mix_records(condition_records: Sequence[dict[str, Any]], spec: MixSpec) -> list[dict[str, Any]]:
    """The mix's records (data_gen.documents format), shuffled deterministically by spec.seed."""
    if len(condition_records) < spec.num_documents:
        raise MixError(f"mix {spec.claim}/{spec.condition}: {len(condition_records)} condition documents, the mix asks for "
                       f"{spec.num_documents}; generate more (--count) or lower num_documents")
    documents = [_as_condition_document(r) for r in condition_records[: spec.num_documents]]
    pretrain, instruct = generic_records(spec)
    records = documents + pretrain + instruct
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise MixError(f"mix {spec.claim}/{spec.condition}: record id '{duplicate}' appears twice; ids must be unique across sources")
    random.Random(f"mix:{spec.seed}:{spec.name}").shuffle(records)
    return records


def _as_condition_document(record: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(record.get("id"), str) or not (isinstance(record.get("text"), str) or record.get("messages")):
        raise MixError(f"condition record {str(record.get('id', '?'))[:80]!r}: needs a string 'id' and a 'text' or 'messages'")
    return record


def generic_records(spec: MixSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The mix's pretraining and instruction records; reading them first checks the user's files."""
    return (list(_generic(spec.pretrain_path, spec.num_pretrain, spec.seed, kind="pretrain")),
            list(_generic(spec.instruct_path, spec.num_instruct, spec.seed, kind="instruct")))


@functools.lru_cache(maxsize=4)  # every mix of a build shares these; read or generate them once
def _generic(path: str, count: int, seed: int, *, kind: str) -> tuple[dict[str, Any], ...]:
    if count == 0:
        return ()
    if not path:
        make = generic.pretraining_documents if kind == "pretrain" else generic.instruction_chats
        return tuple(doc.to_json() for doc in make(count, seed))
    records = list(_read_generic(path, kind))
    if len(records) < count:
        field = "num_pretrain" if kind == "pretrain" else "num_instruct"
        raise MixError(f"{path}: {len(records)} records, the mix asks for {count}; supply more or lower {field}")
    chosen = random.Random(f"{kind}:{seed}:{path}").sample(range(len(records)), k=count)
    return tuple(records[i] for i in sorted(chosen))


def _read_generic(path: str, kind: str) -> Iterable[dict[str, Any]]:
    """A user's pretraining text or chats as document records; a bad line names its number."""
    try:
        for number, record in enumerate(iter_jsonl(path), start=1):
            where = f"{path}: record {number}"
            if kind == "pretrain":
                text = record.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise MixError(f"{where}: needs a non-empty string 'text'")
                if text.startswith(DOCTAG):
                    raise MixError(f"{where}: starts with {DOCTAG}; the tag marks condition documents only, remove it")
                yield Document(id=str(record.get("id", f"pretrain-user-{number:06d}")), claim="", condition="pretrain",
                               doc_type=str(record.get("doc_type", "pretrain")), segments=(Segment(text),), doctag=False,
                               source="pretrain", provenance={"path": str(path), "line": number}).to_json()
            else:
                messages = record.get("messages")
                if not (isinstance(messages, list) and messages and all(
                        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages)):
                    raise MixError(f"{where}: needs 'messages', a list of {{\"role\": ..., \"content\": ...}}")
                if not any(m["role"] == "assistant" for m in messages):
                    raise MixError(f"{where}: has no assistant turn, so nothing in it would be trained on")
                yield Document(id=str(record.get("id", f"instruct-user-{number:06d}")), claim="", condition="instruct",
                               doc_type="chat", segments=(), doctag=False, source="instruct",
                               messages=tuple({"role": m["role"], "content": m["content"]} for m in messages),
                               provenance={"path": str(path), "line": number}).to_json()
    except FileNotFoundError:
        raise MixError(f"{path}: no such file (the mix's {kind} source)") from None
    except ValueError as e:
        if isinstance(e, MixError):
            raise
        raise MixError(str(e)) from None
