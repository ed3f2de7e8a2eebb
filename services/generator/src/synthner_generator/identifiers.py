"""Detectors for direct identifiers: e-mail, phone numbers, national IDs (with their checksums), dates of birth.

Each detector returns how many matches it found, never the matched text. Checksums keep false positives down: a
Swedish personnummer must pass the Luhn check and have a valid date, a Spanish DNI/NIE its control letter, an
Estonian isikukood its check digit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
"""Dates, times and ID-shaped numbers (counted by their own detectors), masked before looking for phone numbers."""


def count_phones(text: str) -> int:
    masked = NOT_PHONE.sub(" # ", text)
    return sum(1 for m in PHONE.finditer(masked) if 9 <= len(re.sub(r"\D", "", m.group(0))) <= 15)


DETECTORS: dict[str, Callable[[str], int]] = {
    "email": lambda text: len(EMAIL.findall(text)),
    "phone": count_phones,
    "personnummer": count_personnummer,
    "dni_nie": count_dni,
    "isikukood": count_isikukood,
    "date_of_birth": lambda text: len(DATE_OF_BIRTH.findall(text)),
}
"""Detector name -> count of matches. Names and counts are all a result carries."""


def detect_identifiers(text: str) -> dict[str, int]:
    """Counts per detector that matched (detectors with no match are left out)."""
    counts = {name: detect(text) for name, detect in DETECTORS.items()}
    return {name: count for name, count in counts.items() if count}
