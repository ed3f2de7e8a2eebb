"""Pattern recognizers for structured identifiers (synthner_shared.identifiers): spans, kinds, check digits."""

from __future__ import annotations

import itertools

import pytest

from synthner_shared.identifiers import IdentifierMatch, detect_identifiers, find_identifiers


def found(text: str) -> list[tuple[str, str]]:
    return [(m.kind, text[m.start : m.end]) for m in find_identifiers(text)]


def test_phone_fax_email_and_date_come_with_exact_boundaries() -> None:
    text = "28034 Madrid. Tel.: 913 36 80 00. Fax: 91 336 87 85. E-mail: j.jordano@telefonica.net. Ingreso: 12/12/2016."
    assert found(text) == [
        ("number", "28034"),
        ("phone", "913 36 80 00"),
        ("fax", "91 336 87 85"),
        ("email", "j.jordano@telefonica.net"),
        ("date", "12/12/2016"),
    ]


def test_a_phone_after_a_date_keeps_its_offsets() -> None:
    text = "03/03/1946 Teléfono: 630 304 365."
    assert find_identifiers(text) == [IdentifierMatch(0, 10, "date"), IdentifierMatch(21, 32, "phone", "teléfono")]


def test_the_cue_is_the_word_right_before_on_the_same_line() -> None:
    text = "NHC: 368503.\nNASS: 26 63514095.\n8330939"
    assert [(m.kind, m.cue) for m in find_identifiers(text)] == [("number", "nhc"), ("phone", "nass"), ("number", "")]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("DNI 12345678Z.", "dni_nie"),  # 12345678 mod 23 = 14 -> Z
        ("NIE X1234567L.", "dni_nie"),  # 01234567 mod 23 -> L
        ("pnr 811218-9876 ok", "personnummer"),  # Luhn-valid, 1981-12-18
        ("isikukood 37605030299 ok", "isikukood"),  # the Estonian example with its check digit
        ("el 29/02/2016 ingresa", "date"),
    ],
)
def test_valid_identifiers_are_found(text: str, kind: str) -> None:
    assert [m.kind for m in find_identifiers(text)] == [kind]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("DNI 12345678A.", "dni_nie"),  # wrong control letter
        ("NIE X1234567A.", "dni_nie"),
        ("pnr 811218-9875 ok", "personnummer"),  # Luhn fails
        ("isikukood 37605030291 ok", "isikukood"),  # wrong check digit (still phone-shaped: 11 digits)
        ("el 29/02/2015 ingresa", "date"),  # not a calendar date
        ("el 12/13/2016 ingresa", "date"),
        ("versión 1.2.3 del protocolo", "date"),
    ],
)
def test_invalid_identifiers_are_not_found_as_their_kind(text: str, kind: str) -> None:
    assert kind not in [m.kind for m in find_identifiers(text)]


def test_matches_never_overlap_and_the_leak_gate_counts_them() -> None:
    text = "Tel 630304365, fax: 630304366, a@b.es, a@b.es"
    matches = find_identifiers(text)
    assert all(a.end <= b.start for a, b in itertools.pairwise(matches))
    assert detect_identifiers(text) == {"email": 2, "phone": 2}
