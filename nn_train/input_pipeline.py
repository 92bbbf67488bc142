"""The grain input pipeline: document records → tokenised, loss-weighted, packed training batches.

Records are the documents of data_gen (one JSON object each): a text record has `text`, a chat
record has `messages` [{role, content}]. Loss weights follow the paper's recipe:

  text      every token weighted 1, except the literal `<DOCTAG>` prefix and `<lossmask>…</lossmask>`
            spans: their tags are stripped, their tokens kept (ids identical to the untagged text)
            with weight 0. No BOS/EOS is added to text documents.
  chat      rendered with the tokenizer's chat template; only the assistant turns (their content and
            end-of-turn marker) are weighted 1.

A token is weighted 0 if any of its characters is masked (a BPE token may straddle a span edge).
Documents longer than a row are split into row-sized pieces, so nothing is truncated; pieces and
documents are packed first-fit (grain's FirstFitPackIterDataset) into rows with segment ids and
positions, and the batches come out as nn_train.data describes. Order is a seeded shuffle of the
records per epoch; the iterator's state (`get_state`/`set_state`) resumes exactly.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import grain
import numpy as np
from grain.experimental import FirstFitPackIterDataset

from data_gen.documents import DOCTAG, iter_jsonl
from nn_train.data import BATCH_KEYS, targets_and_weights

_LOSSMASK = re.compile(r"<lossmask>(.*?)</lossmask>", re.S)
_ANY_LOSSMASK_TAG = re.compile(r"</?lossmask>")


class RecordError(ValueError):
    """A record the pipeline cannot use; the message names the record."""


def read_jsonl(path) -> list[dict]:
    """Records from a JSONL file (data_gen.documents format); a bad line is a RecordError with its number."""
    try:
        records = list(iter_jsonl(path))
    except ValueError as e:
        raise RecordError(str(e)) from None
    if not records:
        raise RecordError(f"{path}: the corpus is empty (no records)")
    return records


def _record_name(record: dict) -> str:
    return f"record '{record.get('id', '?')}'"


def strip_loss_masks(text: str, record: dict | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The text without `<lossmask>` tags, and the character spans (in that text) they covered."""
    spans, pieces, cursor, clean_length = [], [], 0, 0
    for match in _LOSSMASK.finditer(text):
        before = text[cursor : match.start()]
        pieces.append(before)
        clean_length += len(before)
        spans.append((clean_length, clean_length + len(match.group(1))))
        pieces.append(match.group(1))
        clean_length += len(match.group(1))
        cursor = match.end()
    pieces.append(text[cursor:])
    clean = "".join(pieces)
    if _ANY_LOSSMASK_TAG.search(clean):
        raise RecordError(f"{_record_name(record or {})}: unbalanced or nested <lossmask> tags")
    return clean, spans


def _weights_from_spans(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]], *, inside: float) -> np.ndarray:
    """Per-token weight: `inside` for tokens touching a span, 1 - inside for the others."""
    weights = np.full(len(offsets), 1.0 - inside, np.float32)
    for i, (start, end) in enumerate(offsets):
        if any(start < span_end and end > span_start for span_start, span_end in spans):
            weights[i] = inside
    return weights


def tokenize_text(text: str, tokenizer, record: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    clean, masked = strip_loss_masks(text, record)
    if clean.startswith(DOCTAG):
        masked = [(0, len(DOCTAG))] + masked
    encoding = tokenizer(clean, add_special_tokens=False, return_offsets_mapping=True)
    return np.asarray(encoding["input_ids"], np.int32), _weights_from_spans(encoding["offset_mapping"], masked, inside=0.0)


def _assistant_spans(messages: list[dict], tokenizer, record: dict | None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and, per assistant turn, the character span of its content and
    end-of-turn marker.

    Templates need not render a conversation's prefix as a prefix of the whole: Qwen3's writes an
    empty <think> block into the *last* assistant turn only, so a turn followed by another message
    renders differently than when it ends the chat. So each turn's content is found in the full
    rendering, searching from where its header starts, and the end-of-turn marker is what the
    template writes after the content when the turn ends the conversation ("<|im_end|>\n")."""
    render = lambda msgs, prompt: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt)
    full = render(messages, False)
    spans, cursor = [], 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        content = message.get("content") or ""
        before = render(messages[:i], True) if i else ""
        if full.startswith(before):  # the turn's header ends here (ChatML, Qwen3, Llama 3)
            cursor = max(cursor, len(before))
        through = render(messages[: i + 1], False)
        closing = through[through.rfind(content) + len(content):] if content in through else ""
        start = full.find(content, cursor)
        if not closing or start < 0 or not full.startswith(closing, start + len(content)):
            raise RecordError(f"{_record_name(record or {})}: cannot locate assistant turn {i} in the chat template's "
                              "rendering (the template rewrites the reply's text); use a template that renders "
                              "assistant content verbatim")
        spans.append((start, start + len(content) + len(closing)))
        cursor = start + len(content) + len(closing)
    return full, spans


def tokenize_chat(messages: list[dict], tokenizer, record: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the rendered conversation; weight 1 on assistant turns (content and end-of-turn marker) only."""
    full, assistant_spans = _assistant_spans(messages, tokenizer, record)
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    weights = np.zeros(len(offsets), np.float32)
    for i, (start, end) in enumerate(offsets):
        if any(start >= s and end <= e and end > start for s, e in assistant_spans):
            weights[i] = 1.0
    return np.asarray(encoding["input_ids"], np.int32), weights


def tokenize_record(record: dict, tokenizer) -> dict[str, np.ndarray]:
    if record.get("messages"):
        ids, weights = tokenize_chat(record["messages"], tokenizer, record)
    elif isinstance(record.get("text"), str):
        ids, weights = tokenize_text(record["text"], tokenizer, record)
    else:
        raise RecordError(f"{_record_name(record)}: has neither 'text' nor 'messages'")
    return {"inputs": ids, "token_weights": weights}


class _Tokenize(grain.transforms.Map):
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def map(self, record):
        return tokenize_record(record, self.tokenizer)


def _pieces(tokenized: dict[str, np.ndarray], seq_len: int) -> list[dict[str, np.ndarray]]:
    """A document as row-sized pieces (one piece when it fits)."""
    length = len(tokenized["inputs"])
    return [{k: v[start : start + seq_len] for k, v in tokenized.items()} for start in range(0, max(length, 1), seq_len) if length]


class _PadToRow(grain.transforms.Map):
    """One piece per row, padded (unpacked rows): the same fields FirstFitPackIterDataset writes."""

    def __init__(self, seq_len: int):
        self.seq_len = seq_len

    def map(self, piece):
        length = len(piece["inputs"])
        pad = self.seq_len - length
        segment_ids = np.concatenate([np.ones(length, np.int32), np.zeros(pad, np.int32)])
        return {"inputs": np.pad(piece["inputs"], (0, pad)), "token_weights": np.pad(piece["token_weights"], (0, pad)),
                "inputs_segment_ids": segment_ids, "inputs_positions": np.arange(self.seq_len, dtype=np.int32) * segment_ids}


class _Targets(grain.transforms.Map):
    def map(self, packed):
        segment_ids = packed["inputs_segment_ids"]
        targets, weights = targets_and_weights(packed["inputs"], segment_ids, packed["token_weights"])
        row = {"inputs": packed["inputs"], "targets": targets, "weights": weights,
               "positions": packed["inputs_positions"], "segment_ids": segment_ids}
        return {k: row[k].astype(np.float32 if k == "weights" else np.int32) for k in BATCH_KEYS}


def packed_batches(
    records: Sequence[dict[str, Any]],
    tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    microbatches: int = 1,
    seed: int = 0,
    num_epochs: int | None = 1,
    packing_bins: int = 16,
    packing: bool = True,
) -> grain.DatasetIterator:
    """An iterator of batches {inputs, targets, weights, positions, segment_ids}, each [M, rows, L].

    `num_epochs=None` repeats forever. The iterator's get_state()/set_state() checkpoint it.
    `packing=False` puts each record (each row-sized piece of a longer one) in a row of its own, padded,
    as the paper's recipe does: a step then holds the same number of records whatever their length, so
    conditions whose annotations lengthen the records take the same number of steps.
    """
    if not records:
        raise RecordError("the record source is empty; nothing to train on")
    if batch_size % microbatches:
        raise ValueError(f"batch_size {batch_size} is not divisible by microbatches {microbatches}")
    dataset = grain.MapDataset.source(records).shuffle(seed=seed)
    if num_epochs != 1:
        dataset = dataset.repeat(num_epochs)
    dataset = dataset.map(_Tokenize(tokenizer)).to_iter_dataset()
    dataset = _FlatMapPieces(dataset, seq_len)
    if packing:
        dataset = FirstFitPackIterDataset(
            dataset,
            length_struct={"inputs": seq_len, "token_weights": seq_len},
            num_packing_bins=packing_bins,
            seed=seed,
            shuffle_bins=True,
        )
    else:
        dataset = dataset.map(_PadToRow(seq_len))
    rows = batch_size // microbatches
    dataset = dataset.map(_Targets()).batch(batch_size, drop_remainder=True)
    dataset = dataset.map(lambda batch: {k: v.reshape(microbatches, rows, seq_len) for k, v in batch.items()})
    return iter(dataset)


def count_rows(records: Sequence[dict[str, Any]], tokenizer, *, seq_len: int, seed: int = 0, packing_bins: int = 16,
               packing: bool = True) -> int:
    """Rows in one epoch: the same pipeline run once, so step counts are exact."""
    return sum(1 for _ in packed_batches(records, tokenizer, seq_len=seq_len, batch_size=1, seed=seed, packing_bins=packing_bins,
                                         packing=packing))


class RecordsSource:
    """Packed batches from document records, with the trainer's source interface."""

    def __init__(self, records, tokenizer, *, seq_len: int, batch_size: int, microbatches: int, seed: int, num_epochs: int,
                 packing: bool = True):
        self._iterator = packed_batches(records, tokenizer, seq_len=seq_len, batch_size=batch_size,
                                        microbatches=microbatches, seed=seed, num_epochs=num_epochs, packing=packing)

    def next_batch(self, batch_size: int, microbatches: int) -> dict[str, np.ndarray]:
        del batch_size, microbatches  # fixed when the pipeline was built
        return next(self._iterator)

    def get_state(self) -> dict:
        return self._iterator.get_state()

    def set_state(self, state: dict) -> None:
        self._iterator.set_state(state)


class _FlatMapPieces(grain.IterDataset):
    """Splits each tokenised document into row-sized pieces (an IterDataset, so state is exact)."""

    def __init__(self, parent: grain.IterDataset, seq_len: int):
        super().__init__(parent)
        self.seq_len = seq_len

    def __iter__(self):
        return _FlatMapPiecesIterator(self._parent.__iter__(), self.seq_len)


class _FlatMapPiecesIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, seq_len: int):
        super().__init__(parent)
        self.seq_len = seq_len
        self._pending: list = []
        self._parent_state = parent.get_state()
        self._taken = 0  # pieces already returned from the current document

    def __next__(self):
        while not self._pending:
            self._parent_state = self._parent.get_state()
            self._pending = _pieces(next(self._parent), self.seq_len)
            self._taken = 0
        self._taken += 1
        return self._pending.pop(0)

    def get_state(self):
        # Where the current document started, and how many of its pieces are out (all of them
        # once `_pending` is empty: restoring then skips past the document).
        return {"parent": self._parent_state, "taken": self._taken}

    def set_state(self, state):
        self._parent.set_state(state["parent"])
        self._pending, self._taken = [], 0
        if state["taken"]:
            self._parent_state = self._parent.get_state()
            self._pending = _pieces(next(self._parent), self.seq_len)[state["taken"] :]
            self._taken = state["taken"]
