"""Splitting free text into the sentence `Segment`s that conditions work on.

The template backend builds its segments sentence by sentence; an LLM writes whole documents, so
their text is cut here into the same shape: each segment is one sentence (or one heading or list
line) *with its trailing whitespace*, so that concatenating the segments restores the text exactly,
and a paragraph break stays in the whitespace of the sentence before it ("...end.\n\n").
A sentence ends at . ! or ? (optionally followed by closing quotes or brackets) before whitespace
and a capital, digit, quote or bracket; every line break also ends a segment.
"""

from __future__ import annotations

import re

from data_gen.documents import Segment

# The template backend's sentence boundary (used on the universe context): end mark, optional
# closing quote or bracket, whitespace, then the start of a new sentence.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z\"'(\[])")

_WHITESPACE = re.compile(r"\s+")
_ENDS_SENTENCE = re.compile(r"[.!?][\"'”’)\]]*$")
_STARTS_SENTENCE = re.compile(r"[A-Z0-9\"'“‘(\[*#-]")
# Titles and abbreviations whose full stop does not end a sentence ("Dr. Lyles", "e.g. Paris").
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "e.g.", "i.e.", "no.", "mt."})


def split_segments(text: str) -> tuple[Segment, ...]:
    """`text` as sentence segments (supports=False); "".join of their texts == text."""
    pieces, start = [], 0
    for gap in _WHITESPACE.finditer(text):
        if gap.end() == len(text) or gap.start() == 0:
            continue
        line_break = "\n" in gap.group()
        sentence_break = (_ENDS_SENTENCE.search(text, max(start, gap.start() - 4), gap.start())
                          and _STARTS_SENTENCE.match(text, gap.end())
                          and text[start : gap.start()].rsplit(None, 1)[-1].lower() not in _ABBREVIATIONS)
        if line_break or sentence_break:
            pieces.append(text[start : gap.end()])
            start = gap.end()
    if start < len(text):
        pieces.append(text[start:])
    return tuple(Segment(piece) for piece in pieces)


def sentence_texts(segments: tuple[Segment, ...]) -> list[str]:
    """The non-blank segments' text without surrounding whitespace, in order (what a model is shown, numbered)."""
    return [segment.text.strip() for segment in segments if segment.text.strip()]
