"""Character-span invariants shared by every document-like model.

Offsets are Python ``str`` indices (Unicode code points), end exclusive. A span list is valid for a text when
every span lies inside the text, is non-empty, carries a label from the declared set (when one is declared),
and the list is sorted by start with no two spans overlapping.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol


class SpanLike(Protocol):
    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def label(self) -> str: ...


class SpanInvariantError(ValueError):
    """A span list breaks one of the invariants; the message names the span and the rule."""


def check_spans(text: str, spans: Sequence[SpanLike], labels: Collection[str] | None = None) -> None:
    """Raise :class:`SpanInvariantError` unless ``spans`` is a valid, sorted, non-overlapping span list of ``text``."""
    length = len(text)
    previous: SpanLike | None = None
    for index, span in enumerate(spans):
        if not 0 <= span.start < span.end <= length:
            raise SpanInvariantError(
                f"entity {index} [{span.start}, {span.end}) is not a non-empty span inside the text "
                f"(0 <= start < end <= {length} code points)"
            )
        if labels is not None and span.label not in labels:
            raise SpanInvariantError(
                # Neither label is quoted: in a message both are the sender's text (a reason must not carry it).
                f"entity {index} has a label outside the declared label set of {len(labels)} labels"
            )
        if previous is not None:
            if (span.start, span.end) < (previous.start, previous.end):
                raise SpanInvariantError(
                    f"entity {index} [{span.start}, {span.end}) comes before entity {index - 1} "
                    f"[{previous.start}, {previous.end}); entities must be sorted by start offset"
                )
            if span.start < previous.end:
                raise SpanInvariantError(
                    f"entity {index} [{span.start}, {span.end}) overlaps entity {index - 1} "
                    f"[{previous.start}, {previous.end})"
                )
        previous = span
