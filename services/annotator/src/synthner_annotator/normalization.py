"""Text normalisation with an index map back to the original offsets.

Matching an LLM's mention against the note must forgive what LLMs change: letter case, runs of whitespace, Unicode
forms (composed vs decomposed, full-width, ligatures), typographic quotes and dashes, and (on request) diacritics.
:func:`normalize` folds a text one code point at a time and records, for every output character, the span of the
original code point it came from, so a match in the normalised text maps back to exact original offsets.

Folding is per code point on purpose: ``normalize(text[a:b])`` is then exactly the normalised slice of ``text``
(whitespace runs and the ends aside), which is what makes search in the normalised text sound.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

_QUOTES = dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u0060\u00b4\u02bc", "'") | dict.fromkeys(
    "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'
)
_DASHES = dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d\u2043", "-")
_IGNORABLE = frozenset("\u00ad\u200b\u200c\u200d\u2060\ufeff")  # soft hyphen, zero-width characters, BOM


@dataclass(frozen=True)
class NormalizationOptions:
    """What counts as "the same text". The defaults suit LLM mention alignment."""

    casefold: bool = True
    strip_marks: bool = False
    unify_punctuation: bool = True
    collapse_whitespace: bool = True


DEFAULT_OPTIONS = NormalizationOptions()


def fold_char(char: str, options: NormalizationOptions) -> str:
    """The normalised form of one code point (possibly empty, possibly several characters)."""
    cache = _fold_cache(options)
    folded = cache.get(char)
    if folded is None:
        folded = cache[char] = _fold(char, options)
    return folded


@lru_cache(maxsize=16)
def _fold_cache(options: NormalizationOptions) -> dict[str, str]:
    return {}


def _fold(char: str, options: NormalizationOptions) -> str:
    if char in _IGNORABLE:
        return ""
    if options.unify_punctuation:
        char = _QUOTES.get(char, _DASHES.get(char, char))
    folded = unicodedata.normalize("NFKD", char)
    if options.casefold:
        folded = unicodedata.normalize("NFKD", folded.casefold())
    if options.strip_marks:
        folded = "".join(c for c in folded if not unicodedata.combining(c))
    if options.collapse_whitespace:
        folded = "".join(" " if c.isspace() else c for c in folded)
    return folded


@dataclass(frozen=True)
class NormalizedText:
    """A normalised text; ``starts[i]``/``ends[i]`` give the original code point that character ``i`` came from."""

    text: str
    starts: Sequence[int]
    ends: Sequence[int]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Original offsets of the normalised slice ``[start, end)`` (``end > start``)."""
        return self.starts[start], self.ends[end - 1]


@lru_cache(maxsize=16)
def _ascii_table(options: NormalizationOptions) -> dict[int, str]:
    """Every ASCII character folds to exactly one character, so ASCII text folds with ``str.translate``."""
    table = {code: _fold(chr(code), options) for code in range(128)}
    assert all(len(folded) == 1 for folded in table.values())
    return table


def normalize(text: str, options: NormalizationOptions = DEFAULT_OPTIONS) -> NormalizedText:
    """Fold ``text`` code point by code point, collapsing whitespace runs to one space when asked."""
    if text.isascii():
        translated = text.translate(_ascii_table(options))
        if not (options.collapse_whitespace and "  " in translated):  # one character for one: an identity map
            return NormalizedText(translated, range(len(text)), range(1, len(text) + 1))
    cache = _fold_cache(options)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    collapse = options.collapse_whitespace
    previous_space = False
    for index, char in enumerate(text):
        folded = cache.get(char)
        if folded is None:
            folded = cache[char] = _fold(char, options)
        if len(folded) == 1 and folded != " ":  # the common case, kept fast
            out.append(folded)
            starts.append(index)
            ends.append(index + 1)
            previous_space = False
            continue
        for piece in folded:
            if collapse and piece == " ":
                if previous_space:
                    ends[-1] = index + 1  # the one space stands for the whole run
                    continue
                previous_space = True
            else:
                previous_space = False
            out.append(piece)
            starts.append(index)
            ends.append(index + 1)
    return NormalizedText("".join(out), tuple(starts), tuple(ends))


def normalize_key(text: str, options: NormalizationOptions = DEFAULT_OPTIONS) -> str:
    """The normalised form of a mention, without its leading and trailing whitespace."""
    return normalize(text, options).text.strip(" " if options.collapse_whitespace else None)
