"""Opening words of real notes for prefix prompting ("continue the first k words of a held-out real note"), with
identifiers kept out.

A real note's first words are often its header: "Nombre: Ernesto. Apellidos: Rivera Bueno. NHC: 368503." Sent to
the generator's LLM as a prompt, they would put a patient's name into every synthetic note written from it. So a
prefix is taken from the note's first narrative sentence, and it ends before the first word that may identify
someone:

- **Header lines are skipped**: the ``Label:`` part of a line is dropped, and what is left must hold at least
  ``MIN_LINE_WORDS`` words (titles such as "Datos del paciente." and field lines such as "Nombre: Ernesto." go).
- **Flagged words end the prefix**: any word with a digit (dates, ages, IDs, phone numbers, postcodes), a month
  name, an e-mail address or web address, a word with a capital letter after its first character (acronyms, codes,
  "McDonald"), and a capitalised word unless it starts its sentence *and* occurs in lower case somewhere in the
  notes (a name such as "Ernesto" or a place such as "Madrid" never does; "Paciente" does). Mid-sentence capitals
  always end the prefix: names, places, hospitals.
- A sentence whose first word is flagged gives no prefix; the next sentence is tried. A note without any safe
  opening gives none (it is left out, never sent).

The same rules choose the context a generator may read before a prefix (:func:`safe_passage`): only sentences in
which no word is flagged, whole.

The rules are deliberately blunt: a prefix may come out shorter than asked, never with a name in it. Descriptive words
that identify nobody on their own (sex, kinship, an age in words, ethnicity: "varón", "madre", "siete años") are
kept: the generator has to be able to write them, and MEDDOCAN-style gold marks them only as quasi-identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MEDDOCAN_DESCRIPTOR_LABELS = frozenset(
    {
        "SEXO_SUJETO_ASISTENCIA",
        "FAMILIARES_SUJETO_ASISTENCIA",
        "EDAD_SUJETO_ASISTENCIA",
        "ID_SUJETO_ASISTENCIA",
        "OTROS_SUJETO_ASISTENCIA",
        "PROFESION",
    }
)
"""MEDDOCAN's labels that also mark words identifying nobody alone ("varón", "madre", "siete años", "caucásica",
"lactante"): the words these rules keep on purpose (never with a digit). The tests check prefixes against MEDDOCAN's
gold with it."""
PREFIX_FILTER = "v1"
"""Written into each prefix document (key ``prefix_filter``) by the producer that applied these rules, so that a
consumer need not apply them again (a second pass over a three-word prefix lacks the notes' vocabulary)."""
MIN_LINE_WORDS = 4
MIN_FIELD_WORDS = 12
"""A line that starts with a ``Label:`` is a header field unless its value is this long (free text after a label)."""
LABEL = re.compile(r"^(?:[^\s:.!?]+\s+){0,4}[^\s:.!?]+\s*:\s*")
WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
ADDRESS = re.compile(r"@|://|^www\.", re.IGNORECASE)
MONTHS = frozenset(
    " ".join(
        (
            "january february march april may june july august september october november december",  # en
            "enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre",  # es
            "januari februari mars april maj juni juli augusti september oktober november december",  # sv
            "jaanuar veebruar märts aprill mai juuni juuli august september oktoober november detsember",  # et
        )
    ).split()
)
"""Month names of the generator's languages: a date written in words ("12 de marzo", "i mars") ends a prefix."""


def lowercase_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """Every word that occurs written in lower case somewhere in ``texts`` (the evidence that a capitalised
    sentence opener is an ordinary word, not a name)."""
    return frozenset(word for text in texts for word in WORD.findall(text) if word.islower())


def _flagged(token: str, *, sentence_start: bool, vocabulary: frozenset[str]) -> bool:
    if any(char.isdigit() for char in token) or ADDRESS.search(token):
        return True
    words = WORD.findall(token)
    if not words:
        return False  # punctuation only
    for word in words:
        if word.lower() in MONTHS:
            return True
        if any(char.isupper() for char in word[1:]):
            return True
        if word[0].isupper() and not (sentence_start and word.lower() in vocabulary):
            return True
    return False


def _value(line: str) -> str | None:
    """The part of a line a prefix may come from: the line, or the text after its ``Label:`` when that is long."""
    label = LABEL.match(line)
    if label is None:
        return line if len(line.split()) >= MIN_LINE_WORDS else None
    value = line[label.end() :]
    return value if len(value.split()) >= MIN_FIELD_WORDS else None


TITLE = re.compile(r"^[A-Z][a-z]{0,2}\.$")
"""A capitalised abbreviation of up to three letters ("Dr.", "Dra.", "Sr.", "Mrs."): its full stop ends no sentence,
so the name after it is not taken for a sentence opener."""


def _ends_sentence(token: str) -> bool:
    return token.rstrip("\"')»”").endswith((".", "!", "?")) and not TITLE.match(token)


def prefix_span(text: str, words: int, vocabulary: frozenset[str]) -> tuple[int, int] | None:
    """Where in ``text`` the safe prefix lies (start, end character offsets), or None; see :func:`safe_prefix`."""
    if words < 1:
        raise ValueError(f"a prefix needs at least one word, not {words}")
    offset = 0
    for raw in text.splitlines(keepends=True):
        line_start, offset = offset, offset + len(raw)
        line = raw.rstrip("\r\n")
        value = _value(line.strip())
        if value is None:
            continue
        base = line_start + line.index(value)
        run: list[re.Match[str]] = []
        sentence_start, skipping = True, False
        for match in re.finditer(r"\S+", value):
            token = match.group()
            if len(run) == words:
                break
            if _flagged(token, sentence_start=sentence_start, vocabulary=vocabulary):
                if run:
                    break
                skipping = True
            elif not skipping:
                run.append(match)
            sentence_start = _ends_sentence(token)
            if sentence_start:
                if run:
                    break
                skipping = False
        if run:
            return base + run[0].start(), base + run[-1].end()
    return None


def safe_prefix(text: str, words: int, vocabulary: frozenset[str]) -> str:
    """At most ``words`` opening words of the first sentence of ``text`` that starts with safe words, cut before the
    first flagged word (whitespace normalised); ``""`` when no sentence qualifies. ``vocabulary``:
    :func:`lowercase_vocabulary` of the notes (the more notes, the more sentence openers are recognised as ordinary
    words)."""
    span = prefix_span(text, words, vocabulary)
    return " ".join(text[span[0] : span[1]].split()) if span else ""


def safe_passage(text: str, words: int, vocabulary: frozenset[str]) -> str:
    """At most ``words`` words of the sentences of ``text`` that hold no flagged word at all and at least
    ``MIN_LINE_WORDS`` words ("Madrid." after a full stop is no sentence), in order (header lines skipped, whitespace
    normalised): context a generator may read before a prefix, under the same rules as the prefix
    itself. ``""`` when no sentence qualifies."""
    if words < 1:
        raise ValueError(f"a passage needs at least one word, not {words}")
    kept: list[str] = []
    for raw in text.splitlines():
        value = _value(raw.strip())
        if value is None:
            continue
        sentence: list[str] = []
        clean = True
        for token in value.split():
            clean = clean and not _flagged(token, sentence_start=not sentence, vocabulary=vocabulary)
            sentence.append(token)
            if _ends_sentence(token):
                kept.extend(sentence if clean and len(sentence) >= MIN_LINE_WORDS else [])
                sentence, clean = [], True
        # A line's last sentence may end without a full stop (a title).
        kept.extend(sentence if clean and len(sentence) >= MIN_LINE_WORDS else [])
        if len(kept) >= words:
            break
    return " ".join(kept[:words])


def safe_prefixes(texts: Iterable[str], words: int) -> list[str]:
    """:func:`safe_prefix` of each text, the vocabulary taken from the texts themselves; notes without a safe
    opening are left out."""
    notes = list(texts)
    vocabulary = lowercase_vocabulary(notes)
    return [prefix for text in notes if (prefix := safe_prefix(text, words, vocabulary))]
