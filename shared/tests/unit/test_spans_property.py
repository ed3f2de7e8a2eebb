"""Property tests of the span invariants: every valid span list passes, every single break is caught."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synthner_shared.contracts import SpanInvariantError, check_spans


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str


@st.composite
def text_and_valid_spans(draw: st.DrawFn) -> tuple[str, list[Span]]:
    text = draw(st.text(min_size=1, max_size=200))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=20)))
    spans = [
        Span(a, b, draw(st.sampled_from(["A", "B"]))) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b
    ]
    return text, spans


@given(text_and_valid_spans())
def test_sorted_disjoint_spans_inside_the_text_are_valid(case: tuple[str, list[Span]]) -> None:
    text, spans = case
    check_spans(text, spans, {"A", "B"})


@given(text_and_valid_spans(), st.data())
def test_swapping_two_spans_or_growing_one_past_the_text_is_caught(
    case: tuple[str, list[Span]], data: st.DataObject
) -> None:
    text, spans = case
    if len(spans) >= 2:
        i = data.draw(st.integers(0, len(spans) - 2))
        swapped = [*spans[:i], spans[i + 1], spans[i], *spans[i + 2 :]]
        with pytest.raises(SpanInvariantError):
            check_spans(text, swapped)
    if spans:
        last = spans[-1]
        grown = [*spans[:-1], Span(last.start, len(text) + 1, last.label)]
        with pytest.raises(SpanInvariantError):
            check_spans(text, grown)
