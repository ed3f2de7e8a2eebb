"""Exact and near-duplicate removal, across owners and restarts."""

from __future__ import annotations

from pathlib import Path

from synthner_generator.dedup import DedupStore, minhash, similarity
from synthner_shared.contracts import content_id

NOTE = (
    "The patient was admitted with chest pain and shortness of breath. The ECG showed atrial fibrillation with a "
    "rapid ventricular response. Treated with apixaban and bisoprolol; rate control was achieved on day two. "
    "Discharged home in stable condition with follow-up in the cardiology clinic in two weeks."
)
OTHER = (
    "Radiology report. Chest X-ray, two views. The lungs are clear without infiltrate or effusion. Heart size is "
    "normal. No pneumothorax. Impression: no acute cardiopulmonary abnormality."
)


def admit(store: DedupStore, text: str, owner: str) -> str:
    return store.admit(content_id(text), text, owner).verdict


def test_exact_copy_from_another_note_is_a_duplicate(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "d.sqlite3", 0.8)
    assert admit(store, NOTE, "job-a:0") == "new"
    assert admit(store, NOTE, "job-b:7") == "duplicate"


def test_a_one_word_edit_is_a_near_duplicate_and_a_different_note_is_new(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "d.sqlite3", 0.8)
    assert admit(store, NOTE, "job-a:0") == "new"
    assert admit(store, NOTE.replace("two weeks", "three weeks"), "job-a:1") == "near_duplicate"
    assert admit(store, OTHER, "job-a:2") == "new"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = DedupStore(tmp_path / "d.sqlite3", 0.8)
    admit(first, NOTE, "job-a:0")
    first.close()
    second = DedupStore(tmp_path / "d.sqlite3", 0.8)
    assert admit(second, NOTE, "job-b:0") == "duplicate"


def test_regenerating_the_same_note_for_its_owner_is_not_a_duplicate(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "d.sqlite3", 0.8)
    assert admit(store, NOTE, "job-a:3") == "new"
    assert admit(store, NOTE, "job-a:3") == "new"  # redelivered part: same owner, same text
    assert admit(store, OTHER, "job-a:3") == "new"  # a non-deterministic LLM wrote another text: it replaces
    assert len(store) == 1


def test_minhash_estimates_jaccard_similarity() -> None:
    assert similarity(minhash(NOTE), minhash(NOTE)) == 1.0
    assert similarity(minhash(NOTE), minhash(OTHER)) < 0.1
