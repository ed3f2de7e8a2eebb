"""A served mention of an abbreviation the text defines carries its long form's score."""

from __future__ import annotations

from synthner_shared.ner.encoding import CharSpan, ScoredSpan
from synthner_shared.ner.predictor import with_abbreviation_mentions


def test_an_abbreviation_mention_is_scored_as_its_long_form() -> None:
    text = "Wilms tumor (WT) and asthma; WT recurs."
    wilms, asthma = CharSpan(0, 11, "Disease"), CharSpan(21, 27, "Disease")
    scored = [ScoredSpan(0, 11, "Disease", 0.91), ScoredSpan(21, 27, "Disease", 0.55)]
    assert with_abbreviation_mentions(text, [wilms, asthma], scored) == [
        ScoredSpan(0, 11, "Disease", 0.91),
        ScoredSpan(13, 15, "Disease", 0.91),
        ScoredSpan(21, 27, "Disease", 0.55),
        ScoredSpan(29, 31, "Disease", 0.91),
    ]


def test_without_a_definition_the_spans_are_returned_as_they_are() -> None:
    text = "WT and asthma"
    scored = [ScoredSpan(7, 13, "Disease", 0.5)]
    assert with_abbreviation_mentions(text, [CharSpan(7, 13, "Disease")], scored) == scored
