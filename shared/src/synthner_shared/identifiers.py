"""Detectors for direct identifiers: e-mail, phone and fax numbers, national IDs (with their checksums), dates.

One implementation for two users: the generator's leak gate counts matches per detector (never their text), and
NER decoding (:mod:`synthner_shared.ner.identifiers`) takes their character spans as entities where the model's
label map says so. Checksums keep false positives down: a Swedish personnummer must pass the Luhn check and have a
valid date, a Spanish DNI/NIE its control letter, an Estonian isikukood its check digit; a date must be a calendar
date.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PHONE = re.compile(r"(?<![\w/.,:-])(?:\+|00|\()?\d(?:[ \t().-]?\d){7,15}(?![\w/.,-]?\d)")
PERSONNUMMER = re.compile(r"(?<![\d-])(?:19|20)?(\d{2})(\d{2})(\d{2})[-+]?(\d{3})(\d)(?![\d-])")
DNI = re.compile(r"(?<![\w-])(\d{8})[- ]?([A-Za-z])(?!\w)")
NIE = re.compile(r"(?<![\w-])([XYZxyz])[- ]?(\d{7})[- ]?([A-Za-z])(?!\w)")
ISIKUKOOD = re.compile(r"(?<!\d)([1-6])(\d{2})(\d{2})(\d{2})(\d{3})(\d)(?!\d)")
_DATE = (
    r"(?:\d{1,4}[./-]\d{1,2}[./-]\d{2,4}"
    r"|\d{1,2}\.?\s+(?:de\s+)?[A-Za-zäöõüéáíóúñ]{3,12}\.?\s+(?:de\s+)?\d{4}"
    r"|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4})"
)
DATE_OF_BIRTH = re.compile(
    r"(?:\bborn\b|\bd\.?o\.?b\b|date of birth|birth ?date|\bnacid[oa]\b|fecha de nacimiento|f\.\s?nac"
    r"|\bfödd\b|födelsedatum|\bf\.\s|sünni(?:kuupäev|aeg)|\bsündinud\b)\W{0,5}(?:on\s+|el\s+|den\s+)?" + _DATE,
    re.IGNORECASE,
)
DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return total % 10 == 0


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def count_personnummer(text: str) -> int:
    found = 0
    for match in PERSONNUMMER.finditer(text):
        yy, mm, dd, serial, check = match.groups()
        day = int(dd) - 60 if int(dd) > 60 else int(dd)  # samordningsnummer add 60 to the day
        if _valid_date(2000 + int(yy), int(mm), day) and luhn_valid(yy + mm + dd + serial + check):
            found += 1
    return found


def count_dni(text: str) -> int:
    found = sum(1 for n, letter in DNI.findall(text) if DNI_LETTERS[int(n) % 23] == letter.upper())
    for prefix, digits, letter in NIE.findall(text):
        number = int(str("XYZ".index(prefix.upper())) + digits)
        found += DNI_LETTERS[number % 23] == letter.upper()
    return found


def isikukood_valid(code: str) -> bool:
    digits = [int(c) for c in code]
    weights_1 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1]
    weights_2 = [3, 4, 5, 6, 7, 8, 9, 1, 2, 3]
    check = sum(d * w for d, w in zip(digits, weights_1, strict=False)) % 11
    if check == 10:
        check = sum(d * w for d, w in zip(digits, weights_2, strict=False)) % 11
        check = 0 if check == 10 else check
    century = {1: 1800, 2: 1800, 3: 1900, 4: 1900, 5: 2000, 6: 2000}[digits[0]]
    year, month, day = century + int(code[1:3]), int(code[3:5]), int(code[5:7])
    return check == digits[10] and _valid_date(year, month, day)


def count_isikukood(text: str) -> int:
    return sum(1 for m in ISIKUKOOD.finditer(text) if isikukood_valid(m.group(0)))


NOT_PHONE = re.compile(
    r"\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?)\b"
    r"|(?<![\d-])(?:19|20)?\d{6}[-+]?\d{4}(?![\d-])"
)
"""Dates, times and ID-shaped numbers (found by their own detectors), masked before looking for phone numbers."""

FAX_CUE = re.compile(r"\b(?:fax|telefax|faks)\b\W{0,4}$", re.IGNORECASE)
"""Right before a number, these words make it a fax number rather than a phone number."""

DATE = re.compile(r"(?<![\w/.-])(\d{1,2})([./-])(\d{1,3})\2(\d{4}|\d{2})(?![\w/-]|\.\d)")
"""Day, month and year with one separator (``12/12/2016``, ``3.4.98``); ISO dates by ``ISO_DATE``."""
ISO_DATE = re.compile(r"(?<![\w/.-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w/-]|\.\d)")


NUMBER = re.compile(r"(?<![\w/.,-])\d+(?:[ -]\d+)*(?![\w/-]|[.,]\d)")
"""A free-standing number of digit groups (``368503``, ``26 63514095``): a record or episode number where its cue
says so; at least :data:`MIN_NUMBER_DIGITS` digits."""
MIN_NUMBER_DIGITS = 5

CUE = re.compile(r"([^\W\d_]+)[^\w\n]{0,4}$")
"""The word right before a match, on the same line (``Tel.:``, ``NHC:``, ``Episodio:``), read as its cue."""


@dataclass(frozen=True)
class IdentifierMatch:
    """Where a detector matched: character offsets (end exclusive), the detector's kind, and the word right before
    it on the same line, lower-cased (its cue: ``tel``, ``fax``, ``nhc``; empty where there is none)."""

    start: int
    end: int
    kind: str
    cue: str = ""


def _mask(pattern: re.Pattern[str], text: str) -> str:
    """``text`` with every match of ``pattern`` blanked (same length: offsets stay valid)."""
    return pattern.sub(lambda m: " " + "#" * (len(m.group()) - 2) + " " if len(m.group()) > 2 else "#" * 2, text)


def find_emails(text: str) -> Iterator[tuple[int, int]]:
    return (m.span() for m in EMAIL.finditer(text))


def find_phones(text: str) -> Iterator[tuple[int, int]]:
    """Phone and fax numbers: 9-15 digits with single separators, not a date, a time or an ID-shaped number."""
    masked = _mask(NOT_PHONE, text)
    return (m.span() for m in PHONE.finditer(masked) if 9 <= len(re.sub(r"\D", "", m.group(0))) <= 15)


def find_personnummer(text: str) -> Iterator[tuple[int, int]]:
    for match in PERSONNUMMER.finditer(text):
        yy, mm, dd, serial, check = match.groups()
        day = int(dd) - 60 if int(dd) > 60 else int(dd)  # samordningsnummer add 60 to the day
        if _valid_date(2000 + int(yy), int(mm), day) and luhn_valid(yy + mm + dd + serial + check):
            yield match.span()


def find_dni(text: str) -> Iterator[tuple[int, int]]:
    """Spanish DNI (8 digits and the control letter) and NIE (X/Y/Z, 7 digits, control letter)."""
    for match in DNI.finditer(text):
        number, letter = match.groups()
        if DNI_LETTERS[int(number) % 23] == letter.upper():
            yield match.span()
    for match in NIE.finditer(text):
        prefix, digits, letter = match.groups()
        if DNI_LETTERS[int(str("XYZ".index(prefix.upper())) + digits) % 23] == letter.upper():
            yield match.span()


def find_isikukood(text: str) -> Iterator[tuple[int, int]]:
    return (m.span() for m in ISIKUKOOD.finditer(text) if isikukood_valid(m.group(0)))


def find_dates(text: str) -> Iterator[tuple[int, int]]:
    """Numeric calendar dates: day/month/year (any of ``/ . -``, two- or four-digit year) and ISO year-month-day."""
    for match in DATE.finditer(text):
        day, _, month, year = match.groups()
        full_year = int(year) if len(year) == 4 else 1900 + int(year)
        if _valid_date(full_year, int(month), int(day)):
            yield match.span()
    for match in ISO_DATE.finditer(text):
        if _valid_date(*(int(g) for g in match.groups())):
            yield match.span()


def find_dates_of_birth(text: str) -> Iterator[tuple[int, int]]:
    """A date right after a birth cue (``born``, ``fecha de nacimiento``, ``född`` …): the whole phrase."""
    return (m.span() for m in DATE_OF_BIRTH.finditer(text))


LEAK_DETECTORS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "email": find_emails,
    "phone": find_phones,
    "personnummer": find_personnummer,
    "dni_nie": find_dni,
    "isikukood": find_isikukood,
    "date_of_birth": find_dates_of_birth,
}
"""The leak gate's detectors: name -> match spans. Names and counts are all a leak-gate result carries."""


def detect_identifiers(text: str) -> dict[str, int]:
    """Counts per leak-gate detector that matched (detectors with no match are left out)."""
    counts = {name: sum(1 for _ in find(text)) for name, find in LEAK_DETECTORS.items()}
    return {name: count for name, count in counts.items() if count}


IDENTIFIER_KINDS = ("email", "phone", "fax", "personnummer", "dni_nie", "isikukood", "date", "number")
"""What :func:`find_identifiers` reports; NER decoding maps some of these kinds to entity labels."""
_PRIORITY = ("personnummer", "dni_nie", "isikukood", "email", "date", "phone", "fax", "number")
"""Which kind wins where two match the same characters: validated check digits first."""


def find_identifiers(text: str) -> list[IdentifierMatch]:
    """Every identifier in ``text``, sorted by position, non-overlapping: an earlier, then a longer match wins, then
    one whose check digits passed (an 11-digit isikukood is also phone-shaped). A phone number right after ``Fax`` is
    a ``fax``.
    """
    found: list[IdentifierMatch] = []
    for start, end in find_phones(text):
        kind = "fax" if FAX_CUE.search(text, max(0, start - 16), start) else "phone"
        found.append(IdentifierMatch(start, end, kind))
    finders: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
        "email": find_emails,
        "personnummer": find_personnummer,
        "dni_nie": find_dni,
        "isikukood": find_isikukood,
        "date": find_dates,
    }
    for kind, find in finders.items():
        found.extend(IdentifierMatch(start, end, kind) for start, end in find(text))
    found.extend(
        IdentifierMatch(*m.span(), "number")
        for m in NUMBER.finditer(text)
        if sum(c.isdigit() for c in m.group()) >= MIN_NUMBER_DIGITS
    )
    kept: list[IdentifierMatch] = []
    for match in sorted(found, key=lambda m: (m.start, -(m.end - m.start), _PRIORITY.index(m.kind))):
        if not kept or match.start >= kept[-1].end:
            cue = CUE.search(text, max(0, match.start - 24), match.start)
            kept.append(IdentifierMatch(match.start, match.end, match.kind, cue.group(1).lower() if cue else ""))
    return kept
