"""A served mention of an abbreviation the text defines carries its long form's score."""

from __future__ import annotations

from synthner_ner_api.models import SpanPrediction
from synthner_ner_api.predictor import with_abbreviation_mentions
from synthner_shared.ner.encoding import CharSpan


def test_an_abbreviation_mention_is_scored_as_its_long_form() -> None:
    text = "Wilms tumor (WT) and asthma; WT recurs."
    wilms, asthma = CharSpan(0, 11, "Disease"), CharSpan(21, 27, "Disease")
    scored = [SpanPrediction(0, 11, "Disease", 0.91), SpanPrediction(21, 27, "Disease", 0.55)]
    assert with_abbreviation_mentions(text, [wilms, asthma], scored) == [
        SpanPrediction(0, 11, "Disease", 0.91),
        SpanPrediction(13, 15, "Disease", 0.91),
        SpanPrediction(21, 27, "Disease", 0.55),
        SpanPrediction(29, 31, "Disease", 0.91),
    ]


def test_without_a_definition_the_spans_are_returned_as_they_are() -> None:
    text = "WT and asthma"
    scored = [SpanPrediction(7, 13, "Disease", 0.5)]
    assert with_abbreviation_mentions(text, [CharSpan(7, 13, "Disease")], scored) == scored
