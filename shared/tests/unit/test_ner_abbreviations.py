"""The abbreviation step of the decoder: short forms defined for predicted entities become entities where used."""

from __future__ import annotations

import pytest

from synthner_shared.ner.abbreviations import (
    Definition,
    Expansion,
    can_abbreviate,
    definitions,
    expand_abbreviations,
    with_abbreviations,
)
from synthner_shared.ner.encoding import CharSpan


def span(text: str, mention: str, label: str = "Disease", nth: int = 0) -> CharSpan:
    start = -1
    for _ in range(nth + 1):
        start = text.index(mention, start + 1)
    return CharSpan(start, start + len(mention), label)


def mentions_of(text: str, spans: list[CharSpan]) -> list[str]:
    return [text[s.start : s.end] for s in spans]


def test_definitions_are_short_parenthesised_forms_with_a_capital() -> None:
    text = (
        "Ataxia-telangiectasia (A-T) and (AO2) but not (n = 12), (1998), (see), (a very long phrase) or (ACG1BXXXXXX)."
    )
    assert [d.short for d in definitions(text)] == ["A-T", "AO2"]
    assert next(definitions(text)) == Definition("A-T", text.index("(A-T)"))


@pytest.mark.parametrize(
    ("short", "long", "expected"),
    [
        ("DRPLA", "dentatorubral-pallidoluysian atrophy", True),
        ("AO2", "atelosteogenesis type 2", True),
        ("A-T", "ataxia-telangiectasia", True),
        ("G6PD", "glucose-6-phosphate dehydrogenase deficiency", True),
        ("PAX6", "aniridia", False),  # a gene named after the disease it causes
        ("PAH", "deficiency of hepatic phenylalanine hydroxylase", False),  # does not start the long form
        ("D/D", "Duarte enzyme variant of galactosemia", False),  # the second D is not there
        ("MD", "dystrophy", False),
    ],
)
def test_schwartz_hearst_test(short: str, long: str, expected: bool) -> None:
    assert can_abbreviate(short, long) is expected


def test_mentions_of_a_short_form_defined_for_an_entity_become_entities_with_its_label() -> None:
    text = (
        "Atelosteogenesis type 2 (AO2) is a chondrodysplasia. Two AO2 fetuses had AO2-like features; "
        "unlike AO2s and lao2, AO2 is lethal."
    )
    long_form = span(text, "Atelosteogenesis type 2", "Disorder")
    other = span(text, "chondrodysplasia", "Disorder")
    added = expand_abbreviations(text, [long_form, other])
    assert [e.source for e in added] == [long_form] * 3
    assert [e.span.label for e in added] == ["Disorder"] * 3
    # the definition itself and the two whole-word uses; not AO2-like, AO2s or lao2
    assert [e.span for e in added] == [span(text, "AO2", "Disorder", n) for n in (0, 1, 4)]


def test_nothing_is_added_where_the_long_form_was_not_predicted_or_does_not_fit() -> None:
    text = "Deficiency of phenylalanine hydroxylase (PAH) causes PKU. PAH is a liver enzyme; aniridia (PAX6) too. PAX6."
    deficiency = span(text, "Deficiency of phenylalanine hydroxylase")
    aniridia = span(text, "aniridia")
    assert expand_abbreviations(text, [aniridia]) == []  # PAX6 does not abbreviate aniridia
    assert expand_abbreviations(text, [deficiency]) == []  # PAH does not start with a D
    assert expand_abbreviations(text, []) == []


def test_only_whitespace_may_separate_the_long_form_from_its_definition() -> None:
    text = "Wilms tumor, also (WT), and WT again. Wilms tumor\n(WT) later."
    first, second = span(text, "Wilms tumor"), span(text, "Wilms tumor", nth=1)
    assert expand_abbreviations(text, [first]) == []
    added = expand_abbreviations(text, [first, second])
    assert mentions_of(text, [e.span for e in added]) == ["WT", "WT", "WT"]
    assert {e.source for e in added} == {second}


def test_mentions_inside_predicted_entities_stay_as_they_are() -> None:
    text = "Ataxia-telangiectasia (A-T) patients; A-T heterozygotes with A-T-like disease and A-T."
    long_form = span(text, "Ataxia-telangiectasia")
    covering = span(text, "A-T heterozygotes")
    result = with_abbreviations(text, [long_form, covering])
    assert mentions_of(text, result) == ["Ataxia-telangiectasia", "A-T", "A-T heterozygotes", "A-T"]
    assert result == sorted(result)


def test_the_first_definition_decides_the_label() -> None:
    text = "Multiple sclerosis (MS) and mass spectrometry (MS): MS."
    disease, method = span(text, "Multiple sclerosis", "Disease"), span(text, "mass spectrometry", "Method")
    added = expand_abbreviations(text, [disease, method])
    assert {e.span.label for e in added} == {"Disease"}
    assert len(added) == 3
    assert all(isinstance(e, Expansion) for e in added)
