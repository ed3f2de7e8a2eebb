"""The leak gate: identifiers with checksums, and the hashed n-gram memorisation check."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthner_shared.identifiers import detect_identifiers, isikukood_valid, luhn_valid
from synthner_shared.leakgate import LeakGate, memorisation
from synthner_shared.ngrams import NgramReference, ReferenceError

REAL_NOTES = [
    "Paciente de 70 años de edad, minero jubilado, sin alergias medicamentosas conocidas, que presenta como "
    "antecedentes personales accidente laboral antiguo con fracturas vertebrales y costales e intervenido de "
    "enfermedad de Dupuytren en mano derecha.",
    "Mujer de 45 años que acude a urgencias por dolor abdominal de tres días de evolución localizado en fosa iliaca "
    "derecha, acompañado de fiebre de hasta 38,5 grados y vómitos alimentarios; la analítica muestra leucocitosis.",
]
FRESH = (
    "Varón de 62 años con antecedentes de hipertensión arterial en tratamiento con enalapril, que consulta por disnea "
    "de esfuerzo progresiva. La radiografía de tórax muestra cardiomegalia y el ecocardiograma una fracción de "
    "eyección reducida. Se inicia tratamiento con furosemida y se programa control en consultas externas."
)
MEMORISED = (
    "que acude a urgencias por dolor abdominal de tres días de evolución localizado en fosa iliaca derecha, "
    "acompañado de fiebre de hasta 38,5 grados"
)


@pytest.fixture
def reference() -> NgramReference:
    return NgramReference.build(REAL_NOTES, n=8)


def test_a_planted_memorised_passage_is_caught(reference: NgramReference) -> None:
    note = FRESH.replace("Se inicia", f"Refiere {MEMORISED}. Se inicia")
    result = LeakGate(reference, min_run_tokens=20).check(note)
    assert result.status == "failed"
    assert any("verbatim run of 2" in reason for reason in result.reasons)


def test_a_fresh_note_passes(reference: NgramReference) -> None:
    result = LeakGate(reference, min_run_tokens=20).check(FRESH)
    assert result.status == "passed"
    assert result.reasons == []
    assert result.max_ngram_overlap == 0.0


def test_memorisation_measures_the_longest_shared_run(reference: NgramReference) -> None:
    words = MEMORISED.split()[:12]
    assert memorisation(reference, "nada " + " ".join(words) + " nada").longest_run_tokens == 12


def test_the_reference_file_holds_no_readable_text(reference: NgramReference, tmp_path: Path) -> None:
    path = tmp_path / "ref.npz"
    reference.save(path)
    raw = path.read_bytes()
    for word in ("minero", "Dupuytren", "urgencias", "abdominal"):
        assert word.encode() not in raw
    loaded = NgramReference.load(path)
    assert loaded.n == 8
    assert (loaded.hashes == reference.hashes).all()


def test_a_file_that_is_not_a_reference_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ref.npz"
    path.write_text("not numpy")
    with pytest.raises(ReferenceError, match="not an n-gram reference"):
        NgramReference.load(path)


@pytest.mark.parametrize(
    ("text", "detector"),
    [
        ("Kontakt: anna.svensson@example.se", "email"),
        ("Tel 070-123 45 67", "phone"),
        ("llamar al +34 612 345 678", "phone"),
        ("pnr 19811218-9876", "personnummer"),
        ("DNI 12345678Z", "dni_nie"),
        ("NIE X1234567L", "dni_nie"),
        ("isikukood 38001085718", "isikukood"),
        ("born on 12 March 1980", "date_of_birth"),
        ("Fecha de nacimiento: 03/03/1946.", "date_of_birth"),
        ("född 1955-04-03", "date_of_birth"),
    ],
)
def test_each_identifier_detector_finds_its_format(text: str, detector: str) -> None:
    assert detector in detect_identifiers(text)


@pytest.mark.parametrize(
    "text",
    [
        "BP 120/80 mmHg, HR 72, Hb 12.3 g/dl, metformin 500 mg twice daily, CT on 2024-01-03 at 12:30, INR 2.5",
        "Dose 1 000 000 IU; creatinine 85 umol/L; follow-up in 6 weeks",
    ],
)
def test_clinical_numbers_and_invalid_checksums_are_not_identifiers(text: str) -> None:
    assert detect_identifiers(text) == {}


@pytest.mark.parametrize(
    ("text", "detector"),
    [("pnr 19811218-9875", "personnummer"), ("DNI 12345678A", "dni_nie"), ("isikukood 38001085719", "isikukood")],
)
def test_a_national_id_with_a_wrong_checksum_is_not_one(text: str, detector: str) -> None:
    assert detector not in detect_identifiers(text)


def test_checksums() -> None:
    assert luhn_valid("8112189876")
    assert not luhn_valid("8112189875")
    assert isikukood_valid("38001085718")
    assert not isikukood_valid("38013085718")  # month 13


def test_an_identifier_fails_the_gate_with_name_and_count_but_not_the_value() -> None:
    result = LeakGate(None).check("Paciente con DNI 12345678Z y correo a.b@example.es.")
    assert result.status == "failed"
    assert result.reasons == ["dni_nie: 1 match", "email: 1 match"]
    assert "12345678Z" not in " ".join(result.reasons)
    assert result.max_ngram_overlap is None
