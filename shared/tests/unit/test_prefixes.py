"""Prefixes for prefix prompting keep identifiers out: checked against every PHI span of the MEDDOCAN gold."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthner_shared.documents import Document, read_documents
from synthner_shared.prefixes import MEDDOCAN_DESCRIPTOR_LABELS as DESCRIPTORS
from synthner_shared.prefixes import lowercase_vocabulary, prefix_span, safe_passage, safe_prefix, safe_prefixes

MEDDOCAN = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "meddocan"

MISLABELLED = {("S0365-66912011000400005-2", 375), ("S0365-66912009000800005-1", 365)}
"""Two gold spans over the word "Mujer" ("Mujer de 52 años ...") labelled as a clinician's name / licence number:
annotation errors of the corpus (the same word is SEXO_SUJETO_ASISTENCIA everywhere else)."""


@pytest.fixture(scope="module")
def meddocan() -> list[Document]:
    if not (MEDDOCAN / "train.jsonl").is_file():
        pytest.skip("no MEDDOCAN data beside the repo")
    return [d for split in ("train", "dev") for d in read_documents(MEDDOCAN / f"{split}.jsonl")]


@pytest.mark.parametrize("words", [3, 50])
def test_no_gold_identifier_of_a_meddocan_note_survives_in_its_prefix(meddocan: list[Document], words: int) -> None:
    vocabulary = lowercase_vocabulary(d.text for d in meddocan)
    survivors = []
    with_prefix = 0
    for document in meddocan:
        span = prefix_span(document.text, words, vocabulary)
        if span is None:
            continue
        with_prefix += 1
        prefix = safe_prefix(document.text, words, vocabulary)
        assert prefix == " ".join(document.text[span[0] : span[1]].split())
        for entity in document.entities:
            surface = document.text[entity.start : entity.end]
            inside = span[0] <= entity.start and entity.end <= span[1]
            if inside and (document.id, entity.start) not in MISLABELLED:
                survivors.append((entity.label, surface))
            # Direct identifiers of the note must not appear anywhere in its prefix, at their place or elsewhere.
            if (
                entity.label.startswith(("NOMBRE", "CALLE", "CORREO", "NUMERO", "ID_ASEGURAMIENTO"))
                and len(surface) > 5
            ):
                assert surface not in prefix, (document.id, entity.label)
    assert with_prefix > 0.95 * len(meddocan)  # nearly every note still gives a prefix
    assert {label for label, _ in survivors} <= DESCRIPTORS
    assert not [surface for _, surface in survivors if any(char.isdigit() for char in surface)]


def test_header_lines_are_skipped_and_the_prefix_stops_before_a_name() -> None:
    note = (
        "Datos del paciente.\nNombre:  Ernesto.\nApellidos: Rivera Bueno.\nNHC: 368503.\n"
        "Informe clínico del paciente: Paciente de 70 años de edad, minero jubilado, que presenta hematuria "
        "macroscópica.\n"
        "El paciente acude con su esposa."
    )
    vocabulary = lowercase_vocabulary([note])
    assert safe_prefix(note, 3, vocabulary) == "Paciente de"
    assert safe_prefix("Ernesto acude a consulta por dolor.", 3, lowercase_vocabulary(["acude"])) == ""
    assert safe_prefix("The patient was seen by Dr Smith today.", 10, lowercase_vocabulary(["the"])) == (
        "The patient was seen by"
    )
    assert safe_prefix("Seen on 12 March. Patient stable and well.", 3, lowercase_vocabulary(["seen"])) == "Seen on"
    assert safe_prefix("Control en junio por dolor abdominal.", 5, lowercase_vocabulary(["control"])) == "Control en"


def test_a_note_without_a_safe_opening_gives_no_prefix() -> None:
    notes = ["Nombre: Ana.\nNHC: 1234.", "Mujer de 45 años con dolor torácico.", "mujer sin antecedentes de interés"]
    assert safe_prefixes(notes, 3) == ["Mujer de", "mujer sin antecedentes"]
    with pytest.raises(ValueError, match="at least one word"):
        safe_prefix("text", 0, frozenset())


def test_no_direct_identifier_of_a_meddocan_note_survives_in_its_passage(meddocan: list[Document]) -> None:
    vocabulary = lowercase_vocabulary(d.text for d in meddocan)
    with_passage = 0
    leaks = []
    for document in meddocan:
        passage = safe_passage(document.text, 1000, vocabulary)
        with_passage += bool(passage)
        for entity in document.entities:
            surface = document.text[entity.start : entity.end]
            # Identifiers have a capital or a digit; a lower-case "hospital local" (HOSPITAL) identifies nobody.
            named = any(char.isupper() or char.isdigit() for char in surface)
            if entity.label not in DESCRIPTORS and named and len(surface) > 3 and surface in passage:
                leaks.append((entity.label, surface))
    assert leaks == []
    assert with_passage > 0.9 * len(meddocan)  # the rule leaves most notes something to read


def test_a_passage_is_the_sentences_without_a_flagged_word_whole_and_cut_at_the_words_asked() -> None:
    note = (
        "Nombre: Ernesto.\nNHC: 368503.\n"
        "Paciente de 70 años que presenta hematuria. El paciente acude con su esposa. Lo atiende Ernesto Rivera.\n"
        "Refiere dolor lumbar desde hace semanas\n"
        "Se pauta tratamiento con reposo. Madrid."
    )
    vocabulary = lowercase_vocabulary([note, "el se refiere"])
    assert safe_passage(note, 100, vocabulary) == (
        "El paciente acude con su esposa. Refiere dolor lumbar desde hace semanas Se pauta tratamiento con reposo."
    )
    assert safe_passage(note, 4, vocabulary) == "El paciente acude con"
    assert safe_passage("Ernesto Rivera, 12 de marzo.", 10, vocabulary) == ""
    with pytest.raises(ValueError, match="at least one word"):
        safe_passage(note, 0, vocabulary)
