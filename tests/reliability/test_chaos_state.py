"""The chaos run's accounting, on its own (no broker, no processes): the trainer's store read through its read-only
view, and every planned note counted as stored, dead-lettered or lost, duplicates apart."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from synthner_shared.contracts import TrainingRequested
from synthner_shared.testing import sample_annotated
from synthner_trainer.store import DatasetStore
from tests.reliability.chaos.result import ChaosResult
from tests.reliability.chaos.state import DeadLetters, account, request_status, stored_note_ids


def test_the_store_is_read_through_a_view_that_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "trainer" / "store.sqlite3"
    assert stored_note_ids(path) == Counter()
    assert request_status(path, "r") is None
    assert not path.parent.exists()  # reading created nothing

    store = DatasetStore(path)
    first, second = sample_annotated(seed=1, target_chars=120, spans=1), sample_annotated(seed=2, target_chars=120)
    store.add(first)
    store.add(second)
    store.add(first)  # a redelivery: kept once
    request = TrainingRequested(correlation_id="c", producer="test")
    store.enqueue_request(request)
    store.set_request_status(request, "done", "published v1")
    try:
        assert stored_note_ids(path) == Counter({first.note_id: 1, second.note_id: 1})
        assert request_status(path, str(request.message_id)) == ("done", "published v1")
        view = DatasetStore(path, read_only=True)
        try:
            assert view.note_ids() == [first.note_id, second.note_id]
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                view.add(sample_annotated(seed=3, target_chars=120, spans=1))
        finally:
            view.close()
    finally:
        store.close()


def test_every_planned_note_is_stored_dead_lettered_or_lost_and_strangers_count_as_duplicates() -> None:
    planned = {0: "a", 1: "b", 2: "c", 3: "d"}
    stored = Counter({"a": 1, "d": 1, "stranger": 1})
    dead = DeadLetters(
        indices={1: "generation part: gave up"},
        note_ids={"d": "DocumentAnnotated: rejected"},
        every=Counter({"generation part: gave up": 1, "DocumentAnnotated: rejected": 2}),
    )
    result = ChaosResult()
    account(result, planned, stored, dead, notes=4)
    assert (result.sent, result.stored, result.dead_lettered, result.lost) == (4, 2, 1, 1)
    assert result.dead_lettered_but_stored == 1  # d: a copy died, another was stored
    assert result.duplicated == 1  # the stranger: stored, owned by no planned index
    # Every dead letter counts by its reason, the copies of a stored note's too: the allow-list is checked on these.
    assert result.dead_letter_reasons == Counter({"generation part: gave up": 1, "DocumentAnnotated: rejected": 2})
    assert result.line().startswith(
        "sent=4 stored=2 dead_lettered=1 duplicated=1 lost=1 redeliveries=0 kills=0 broker_crashes=0 seconds="
    )
