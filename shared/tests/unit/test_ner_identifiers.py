"""Structured identifiers merged into predicted spans (synthner_shared.ner.identifiers)."""

from __future__ import annotations

import pytest

from synthner_shared.documents import DocumentEntity
from synthner_shared.ner import CharSpan, ScoredSpan
from synthner_shared.ner.identifiers import (
    IdentifierMapError,
    check_label_map,
    identifier_label_map,
    with_identifiers,
    with_scored_identifiers,
)

TEXT = "Tel.: 630 304 365. Fax: 91 336 87 85. Ingreso: 12/12/2016."
PHONE, FAX, DATE = (6, 17), (24, 36), (47, 57)


def entity(extent: tuple[int, int], label: str) -> DocumentEntity:
    return DocumentEntity(start=extent[0], end=extent[1], label=label)


def test_the_label_map_follows_what_the_gold_labels_matches() -> None:
    gold = [entity(PHONE, "NUMERO_TELEFONO"), entity(FAX, "NUMERO_FAX"), entity(DATE, "FECHAS")]
    assert identifier_label_map([(TEXT, gold)] * 3) == {
        "date": "FECHAS",
        "date@ingreso": "FECHAS",
        "fax": "NUMERO_FAX",
        "fax@fax": "NUMERO_FAX",
        "phone": "NUMERO_TELEFONO",
        "phone@tel": "NUMERO_TELEFONO",
    }
    # a cue is read only after enough matches (MIN_CUE_MATCHES)
    assert "phone@tel" not in identifier_label_map([(TEXT, gold)] * 2)


def test_a_cue_decides_the_label_where_the_kind_alone_cannot() -> None:
    text = "NHC: 368503.\nEpisodio: 8330939.\nCP: 28016."
    gold = [entity((5, 11), "ID_SUJETO"), entity((23, 30), "ID_CONTACTO"), entity((36, 41), "TERRITORIO")]
    label_map = identifier_label_map([(text, gold)] * 3)
    assert "number" not in label_map  # no label has most of the numbers
    assert with_identifiers(text, [], label_map) == [
        CharSpan(5, 11, "ID_SUJETO"),
        CharSpan(23, 30, "ID_CONTACTO"),
        CharSpan(36, 41, "TERRITORIO"),
    ]


def test_a_kind_the_gold_rarely_labels_exactly_stays_unmapped() -> None:
    # the date is annotated with a wider extent (one character more), the phone not at all
    gold = [entity((DATE[0], DATE[1] + 1), "FECHAS")]
    assert identifier_label_map([(TEXT, gold)]) == {}


def test_an_identifier_replaces_the_model_spans_it_overlaps_and_keeps_the_rest() -> None:
    predicted = [CharSpan(0, 3, "OTHER"), CharSpan(6, 18, "ID_TITULACION"), CharSpan(47, 52, "FECHAS")]
    merged = with_identifiers(TEXT, predicted, {"phone": "NUMERO_TELEFONO", "date": "FECHAS"})
    assert merged == [CharSpan(0, 3, "OTHER"), CharSpan(*PHONE, "NUMERO_TELEFONO"), CharSpan(*DATE, "FECHAS")]
    assert with_identifiers(TEXT, predicted, {}) == predicted


def test_a_scored_identifier_takes_the_score_of_what_it_replaces_or_one() -> None:
    predicted = [ScoredSpan(6, 18, "ID_TITULACION", 0.4), ScoredSpan(8, 12, "X", 0.7)]
    merged = with_scored_identifiers(TEXT, predicted, {"phone": "NUMERO_TELEFONO", "fax": "NUMERO_FAX"})
    assert merged == [ScoredSpan(*PHONE, "NUMERO_TELEFONO", 0.7), ScoredSpan(*FAX, "NUMERO_FAX", 1.0)]


def test_a_label_map_with_an_unknown_kind_or_an_empty_label_is_refused() -> None:
    with pytest.raises(IdentifierMapError, match="unknown identifier kinds"):
        check_label_map({"iban@nhc": "X"})
    assert check_label_map({"number@nhc": "ID"}) == {"number@nhc": "ID"}
    with pytest.raises(IdentifierMapError, match="empty label"):
        check_label_map({"phone": ""})
