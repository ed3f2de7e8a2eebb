"""Exact and near-duplicate removal, across owners and restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from synthner_generator.dedup import DedupStore, minhash, note_owner, similarity
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

THIRD = (
    "Outpatient letter. Seen for review of asthma control. Uses salbutamol twice weekly, no night waking. Peak flow "
    "steady at four hundred litres per minute. Plan: continue inhaled budesonide and review in six months."
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


def test_a_read_only_view_maps_each_accepted_planned_note_of_a_job_to_its_note_id(tmp_path: Path) -> None:
    path = tmp_path / "generator" / "dedup.sqlite3"
    with pytest.raises(sqlite3.OperationalError):
        DedupStore(path, read_only=True)  # nothing to view yet
    assert not path.parent.exists()

    store = DedupStore(path, 0.8)
    admit(store, NOTE, note_owner("job-a", 0))
    admit(store, OTHER, note_owner("job-a", 1))
    admit(store, NOTE, note_owner("job-a", 2))  # a duplicate of note 0: not accepted
    admit(store, THIRD, note_owner("job-a:x", 0))  # another job whose id starts like this one's
    regenerated = OTHER + " Repeat in six weeks."
    admit(store, regenerated, note_owner("job-a", 1))  # index 1 regenerated (a redelivery): its last version counts
    view = DedupStore(path, read_only=True)
    try:
        assert view.planned_note_ids("job-a") == {0: content_id(NOTE), 1: content_id(regenerated)}
        assert view.planned_note_ids("job-a:x") == {0: content_id(THIRD)}
        assert view.planned_note_ids("job-b") == {}
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            view.admit(content_id("A note of its own."), "A note of its own.", note_owner("job-b", 0))
    finally:
        view.close()
        store.close()
