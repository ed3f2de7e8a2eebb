"""Long notes in overlapping chunks, and the merge of chunk spans back into one span list of the original text.

Chunks end at a paragraph, sentence or word break where one lies in the last fifth of the window, and consecutive
chunks overlap by about ``overlap`` characters. Each chunk *owns* the part of the text up to the middle of its
overlap with the next chunk; a span is kept from the chunk that owns its start. With an overlap of at least twice
the longest mention, every mention lies whole inside the chunk that owns it, so nothing is cut and nothing is
counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synthner_annotator.spans import OverlapPolicy, Span, resolve_overlaps

_BREAKS = ("\n\n", "\n", ". ", "; ", ", ", " ")


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    own_start: int
    own_end: int

    def text_of(self, text: str) -> str:
        return text[self.start : self.end]


def _cut(text: str, start: int, limit: int) -> int:
    """Where to end a chunk that starts at ``start`` and may reach ``limit``: after a break when one is near the end."""
    if limit >= len(text):
        return len(text)
    floor = start + (limit - start) * 4 // 5
    for separator in _BREAKS:
        at = text.rfind(separator, floor, limit)
        if at >= 0:
            return at + len(separator)
    return limit


def chunk_text(text: str, size: int, overlap: int) -> list[Chunk]:
    """Chunks of at most ``size`` characters covering ``text``, consecutive ones overlapping by about ``overlap``."""
    if size <= 0 or not 0 <= overlap < size // 2:
        raise ValueError("chunk size must be positive and the overlap below half of it")
    bounds: list[tuple[int, int]] = []
    start = 0
    while True:
        end = _cut(text, start, start + size)
        bounds.append((start, end))
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    chunks: list[Chunk] = []
    for i, (start, end) in enumerate(bounds):
        own_start = 0 if i == 0 else (bounds[i - 1][1] + start) // 2
        own_end = len(text) if i == len(bounds) - 1 else (end + bounds[i + 1][0]) // 2
        chunks.append(Chunk(start, end, own_start, own_end))
    return chunks


def merge_chunk_spans(
    chunks: Sequence[Chunk], spans_per_chunk: Sequence[Sequence[Span]], policy: OverlapPolicy
) -> tuple[list[Span], int]:
    """Spans of every chunk (offsets relative to their chunk) as one sorted, non-overlapping list of the whole text.

    Returns the spans and the number of spans rejected by the overlap policy (after de-duplication by ownership).
    """
    collected: list[Span] = []
    for chunk, spans in zip(chunks, spans_per_chunk, strict=True):
        for span in spans:
            absolute = span.shifted(chunk.start)
            if chunk.own_start <= absolute.start < chunk.own_end:
                collected.append(absolute)
    kept, rejected = resolve_overlaps(collected, policy)
    return kept, len(rejected)
