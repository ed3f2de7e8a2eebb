"""The dataset store: durable, de-duplicated by note id, immutable versions, survives a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from synthner_shared.contracts import DatasetSelection, TrainingRequested
from synthner_shared.documents import read_documents
from synthner_shared.testing import sample_annotated
from synthner_trainer.store import (
    DatasetStore,
    EmptyDatasetError,
    LabelSetError,
    UnknownDatasetVersionError,
    check_labels,
)


def test_store_keeps_the_first_copy_of_a_note_and_counts_it_once(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store.sqlite3")
    document = sample_annotated(seed=1, target_chars=300, spans=3)
    assert store.add(document) is True
    assert store.add(document.model_copy(update={"producer": "another"})) is False
    assert store.count() == 1


def test_dataset_version_is_immutable_and_described_by_its_manifest(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store.sqlite3")
    for seed in range(3):
        store.add(sample_annotated(seed=seed, target_chars=300, spans=3))
    first = store.create_version()
    store.add(sample_annotated(seed=10, target_chars=300, spans=2))
    second = store.create_version()
    assert (first.document_count, second.document_count) == (3, 4)
    assert first.label_counts == {"Disease": 9}
    assert first.annotators == ["lexicon"]
    assert first.version != second.version
    assert first.content_hash != second.content_hash
    assert len(store.documents(first.version)) == 3  # unchanged by the later document
    assert store.create_version(DatasetSelection(dataset_version=first.version)) == first
    assert store.create_version(DatasetSelection(max_documents=2)).document_count == 2


def test_min_entities_leaves_documents_without_entities_out_of_a_new_version(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store.sqlite3")
    kept = [sample_annotated(seed=seed, target_chars=300, spans=spans) for seed, spans in ((1, 2), (2, 1))]
    empty = sample_annotated(seed=3, target_chars=300, spans=1).model_copy(update={"entities": []})
    for document in (kept[0], empty, kept[1]):
        store.add(document)
    assert store.create_version().document_count == 3
    filtered = store.create_version(min_entities=1)
    assert [d.id for d in store.documents(filtered.version)] == [d.note_id for d in kept]
    assert store.create_version(min_entities=2).document_count == 1
    with pytest.raises(EmptyDatasetError, match="at least 3 entities"):
        store.create_version(min_entities=3)


def test_store_survives_a_restart_and_exports_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = DatasetStore(path)
    document = sample_annotated(seed=4, target_chars=300, spans=3)
    store.add(document)
    manifest = store.create_version()
    store.close()
    reopened = DatasetStore(path)
    assert reopened.count() == 1
    assert reopened.add(document) is False
    assert reopened.versions() == [manifest]
    assert reopened.export(manifest.version, tmp_path / "out.jsonl") == 1
    (exported,) = read_documents(tmp_path / "out.jsonl")
    assert exported.id == document.note_id
    assert exported.text == document.text
    assert [(e.start, e.end, e.label) for e in exported.entities] == [
        (e.start, e.end, e.label) for e in document.entities
    ]


def test_empty_selection_and_unknown_version_are_clear_errors(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store.sqlite3")
    with pytest.raises(EmptyDatasetError, match="no documents"):
        store.create_version()
    with pytest.raises(UnknownDatasetVersionError, match="ds-9999"):
        store.manifest("ds-9999")


def test_training_requests_wait_in_the_store_until_done(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = DatasetStore(path)
    request = TrainingRequested(correlation_id="job-1", producer="tests")
    assert store.enqueue_request(request) is True
    assert store.enqueue_request(request) is False
    store.set_request_status(request, "running")
    store.close()
    reopened = DatasetStore(path)  # a crash mid-training: the request runs again
    assert reopened.next_request() == request
    reopened.set_request_status(request, "done", "published m-1")
    assert reopened.next_request() is None
    assert reopened.request_status(str(request.message_id)) == ("done", "published m-1")


def test_automatic_trigger_counts_documents_since_the_last_trigger(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store.sqlite3")
    for seed in range(3):
        store.add(sample_annotated(seed=seed, target_chars=200, spans=1))
    assert store.new_since_trigger() == 3
    assert store.claim_trigger(3) is True
    assert store.claim_trigger(3) is False
    store.add(sample_annotated(seed=7, target_chars=200, spans=1))
    assert store.new_since_trigger() == 1
    assert store.claim_trigger(2) is False


def test_a_document_with_labels_outside_the_trainers_set_is_refused_and_not_stored(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store.sqlite3")
    disease = sample_annotated(seed=1, target_chars=300, spans=3)  # Disease spans only
    check_labels(disease, None)  # no label set: any label
    check_labels(disease, ["Disease", "Symptom"])
    with pytest.raises(LabelSetError, match=r"labels \['Disease'\] outside the trainer's label set"):
        check_labels(disease, ["Symptom"])
    with pytest.raises(LabelSetError, match=r"\['Disease'\]"):
        store.add(disease, ["Symptom"])
    assert store.count() == 0
    assert store.add(disease, ["Disease"]) is True
    assert store.count() == 1


def test_note_ids_are_listed_once_each_in_the_order_stored(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store.sqlite3")
    assert store.note_ids() == []
    documents = [sample_annotated(seed=seed, target_chars=200, spans=2) for seed in (5, 3, 9)]
    for document in [*documents, documents[0]]:  # the last one a redelivery
        store.add(document)
    assert store.note_ids() == [d.note_id for d in documents]


def test_a_read_only_view_reads_the_owners_writes_and_refuses_its_own(tmp_path: Path) -> None:
    path = tmp_path / "trainer" / "store.sqlite3"
    with pytest.raises(sqlite3.OperationalError):
        DatasetStore(path, read_only=True)  # nothing to view yet
    assert not path.parent.exists()  # and the attempt created nothing

    owner = DatasetStore(path)
    view = DatasetStore(path, read_only=True)
    try:
        first = sample_annotated(seed=1, target_chars=200, spans=2)
        owner.add(first)
        assert view.note_ids() == [first.note_id]
        assert view.count() == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            view.add(sample_annotated(seed=2, target_chars=200, spans=2))
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            view.enqueue_request(TrainingRequested(correlation_id="c", producer="test"))
        assert owner.count() == 1
    finally:
        view.close()
        owner.close()
