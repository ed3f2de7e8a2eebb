"""The chaos run's processing records, on their own (no broker, no processes): what the wrapper records of each
handling (ids, never text), the planted faults, and what the run concludes from the records: duplicates that a
UNIQUE column would hide, redeliveries after a SIGKILL, and a SIGTERM drain that did or did not hold."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from synthner_shared.contracts import Envelope, NoteGenerated
from synthner_shared.messaging import ANNOTATOR, BrokerSettings, Consumer, Service
from synthner_shared.testing import annotate_without_entities, sample_note
from tests.reliability.chaos.records import (
    Drain,
    Handling,
    Kill,
    Outage,
    Recorder,
    RecordLog,
    analyse,
    message_key,
    read_records,
)
from tests.reliability.chaos.result import ChaosOptions, ChaosResult
from tests.reliability.chaos.wrapped import DROP_EVERY, PlantedFault, instrument, raises_on, recorded


def handling(
    pid: int,
    key: str,
    message: str,
    started: float,
    ended: float | None = None,
    *,
    outputs: Sequence[str] = (),
    number: int = 1,
    outcome: str = "done",
    note: str = "",
) -> Handling:
    return Handling(
        pid=pid,
        process=f"p{pid}",
        number=number,
        key=key,
        message_id=message,
        started=started,
        ended=ended,
        outcome=("done" if outcome == "done" else "error") if ended is not None else None,
        outputs=tuple(outputs),
        note=note,
    )


async def annotate(note: NoteGenerated) -> Sequence[Envelope]:
    return [annotate_without_entities(note)]


# --- what is recorded ------------------------------------------------------------------------------------------------


async def test_each_handling_is_recorded_by_id_only_and_read_back_as_it_is_written(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, "annotator-1")
    handle = recorded(annotate, recorder)
    notes = [sample_note(seed=n) for n in range(3)]
    for note in notes:
        await handle(note)
    number = recorder.started(sample_note(seed=9))  # in flight: started, never ended
    recorder.close()

    log = RecordLog(tmp_path)
    log.refresh()
    assert [(h.key, h.outcome, h.outputs) for h in log.handlings.values() if h.outcome] == [
        (f"NoteGenerated:{n.note_id}", "done", (f"DocumentAnnotated:{n.note_id}",)) for n in notes
    ]
    assert [h.number for h in log.in_flight(os.getpid())] == [number]
    text = recorder.path.read_text(encoding="utf-8")
    assert all(note.text[:30] not in text for note in notes)  # ids, never the note

    with recorder.path.open("a", encoding="utf-8") as stream:  # a line still being written is kept for later
        stream.write(f'{{"e":"done","n":{number},"pid":{os.getpid()},')
    log.refresh()
    assert len(log.in_flight(os.getpid())) == 1
    with recorder.path.open("a", encoding="utf-8") as stream:
        stream.write('"t":1.0,"out":[]}\n')
    log.refresh()
    assert log.in_flight(os.getpid()) == []
    assert len(read_records(tmp_path)) == 4


async def test_the_planted_drop_acks_and_drops_the_first_of_every_twenty_notes(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, "annotator-1")
    handle = recorded(annotate, recorder, fault="drop")
    outputs = [await handle(sample_note(seed=n)) for n in range(2 * DROP_EVERY)]
    recorder.close()
    assert [n for n, out in enumerate(outputs) if not out] == [0, DROP_EVERY]  # the handler returns: the runner acks
    assert analyse(read_records(tmp_path)).planted == Counter({"planted drop": 2})


async def test_the_planted_raise_raises_on_the_same_fifth_of_the_notes_every_time(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, "annotator-1")
    handle = recorded(annotate, recorder, fault="raise")
    notes = [sample_note(seed=n) for n in range(50)]
    chosen = [note for note in notes if raises_on(note)]
    assert 0 < len(chosen) < 25
    for note in notes:
        if raises_on(note):
            for _ in range(2):  # every delivery of it: its retries fail too
                with pytest.raises(PlantedFault):
                    await handle(note)
        else:
            assert await handle(note)
    recorder.close()
    assert analyse(read_records(tmp_path)).planted == Counter({"planted raise": 2 * len(chosen)})


async def test_the_wrapper_records_what_the_services_own_handler_does(tmp_path: Path) -> None:
    consumer = Consumer(ANNOTATOR, (NoteGenerated,), annotate, idempotency_key=lambda n: n.note_id)
    service = Service(BrokerSettings(namespace="unused"), "test", [consumer])
    recorder = Recorder(tmp_path, "annotator-1")
    instrument(service, recorder, latency_s=0.0, fault=None)
    note = sample_note(seed=4)
    [wrapped] = service.consumers
    assert (wrapped.role, wrapped.accepts, wrapped.idempotency_key(note)) == (ANNOTATOR, (NoteGenerated,), note.note_id)
    outputs = await wrapped.handler(note)  # the service's own handler's outputs, passed on
    assert [message_key(m) for m in outputs] == [f"DocumentAnnotated:{note.note_id}"]
    recorder.close()
    [handled] = read_records(tmp_path)
    assert (handled.key, handled.outcome, handled.process) == (f"NoteGenerated:{note.note_id}", "done", "annotator-1")


def test_keys_name_the_stage_and_the_note() -> None:
    note = sample_note(seed=1)
    assert message_key(note) == f"NoteGenerated:{note.note_id}"
    assert message_key(annotate_without_entities(note)) == f"DocumentAnnotated:{note.note_id}"


# --- what the records show -------------------------------------------------------------------------------------------

NOTE = "NoteGenerated:n1"


def test_a_second_completion_of_one_message_with_nothing_to_explain_it_is_a_duplicate() -> None:
    # The store would keep the document once (a UNIQUE note id): only the records show the note was annotated twice.
    records = [handling(1, NOTE, "m1", 1.0, 1.1), handling(2, NOTE, "m1", 5.0, 5.1)]
    analysis = analyse(records)
    assert analysis.duplicates == [NOTE]
    assert analysis.repeats == Counter({"duplicate": 1})
    assert analysis.handled == Counter({"NoteGenerated": 2})


def test_a_repeat_after_the_first_handlers_process_was_killed_or_the_broker_went_down_is_explained() -> None:
    records = [handling(1, NOTE, "m1", 1.0, 1.1), handling(2, NOTE, "m1", 5.0, 5.1)]
    killed = analyse(records, kills=[Kill("annotator-1", 1, 1.2, 0)])
    assert (killed.duplicates, killed.repeats) == ([], Counter({"kill": 1}))
    other_killed = analyse(records, kills=[Kill("annotator-2", 3, 1.2, 0)])
    assert other_killed.duplicates == [NOTE]
    crashed = analyse(records, outages=[Outage("crash", 2.0, 3.0)])
    assert (crashed.duplicates, crashed.repeats) == ([], Counter({"broker": 1}))
    before = analyse(records, outages=[Outage("restart", 0.1, 0.5)])  # over before the first handling began
    assert before.duplicates == [NOTE]


def test_a_new_message_for_the_same_note_is_explained_only_by_an_upstream_that_published_it_again() -> None:
    part = "GenerationRequested:job:0+5"
    twice = [
        handling(7, part, "p1", 0.0, 0.5, outputs=[NOTE]),
        handling(8, part, "p1", 0.6, 0.9, outputs=[NOTE]),  # the part redelivered (its generator was killed)
        handling(1, NOTE, "m1", 1.0, 1.1),
        handling(2, NOTE, "m2", 2.0, 2.1),
    ]
    analysis = analyse(twice, kills=[Kill("generator", 7, 0.55, 0)])
    assert analysis.duplicates == []
    assert analysis.repeats == Counter({"kill": 1, "upstream": 1})
    once = [twice[0], twice[2], twice[3]]  # published once, yet arrived as two messages
    assert analyse(once).duplicates == [NOTE]


def test_a_redelivery_is_a_message_held_by_a_killed_process_and_handled_again() -> None:
    records = [
        handling(1, NOTE, "m1", 1.0, None),  # in flight when pid 1 was killed at 1.5
        handling(1, "NoteGenerated:n2", "m2", 1.1, None, number=2),  # in flight, never seen again
        handling(1, "NoteGenerated:n3", "m3", 0.5, 0.7, number=3),  # finished before the kill
        handling(2, NOTE, "m1", 2.0, 2.1),
    ]
    analysis = analyse(records, kills=[Kill("annotator-1", 1, 1.5, 2), Kill("trainer", 9, 1.6, 0)])
    assert (analysis.in_flight_kills, analysis.redeliveries) == (1, 1)
    assert analysis.lost_in_flight == ["NoteGenerated:n2"]
    assert analysis.duplicates == []


def test_a_drain_must_finish_what_it_started_exit_0_and_hand_nothing_it_finished_back() -> None:
    clean = [handling(1, NOTE, "m1", 1.0, 2.5), handling(1, "NoteGenerated:n2", "m2", 1.5, 2.6, number=2)]
    assert analyse(clean, drains=[Drain("annotator-1", 1, 2.0, 2, 0)]).drain_problems == []

    abandoned = [handling(1, NOTE, "m1", 1.0, 2.5), handling(1, "NoteGenerated:n2", "m2", 1.5, None, number=2)]
    problems = analyse(abandoned, drains=[Drain("annotator-1", 1, 2.0, 2, 0)]).drain_problems
    assert problems == [
        "annotator-1 did not finish 1 handlings it had started before exiting",
        "annotator-1 exited 0 after SIGTERM (expected 1)",
    ]

    handed_back = [*clean, handling(2, NOTE, "m1", 3.0, 3.1)]
    analysis = analyse(handed_back, drains=[Drain("annotator-1", 1, 2.0, 2, 0)])
    assert analysis.drain_problems == ["1 messages annotator-1 finished before its SIGTERM exit were handled again"]
    assert analysis.duplicates == [NOTE]  # a SIGTERM explains no repeat

    idle = analyse([], drains=[Drain("annotator-1", 1, 2.0, 0, 0)]).drain_problems
    assert idle == ["SIGTERM to annotator-1 found no work in flight: the drain proved nothing"]


# --- what fails the run ----------------------------------------------------------------------------------------------


def test_a_dead_letter_fails_the_run_unless_its_reason_is_allowed_and_kills_must_hit_work(tmp_path: Path) -> None:
    options = ChaosOptions(workdir=tmp_path, broker_restarts=0, broker_crashes=0, sigterm_drain=False, train=False)
    result = ChaosResult(planned=options, dead_letter_reasons=Counter({"NoteGenerated: broker: delivery_limit": 1}))
    result.analysis.in_flight_kills = result.analysis.redeliveries = 1
    assert result.problems() == [
        '1 dead letters with reasons not allowed: {"NoteGenerated: broker: delivery_limit": 1}'
    ]
    result.allowed_dead_letters = ("NoteGenerated: broker:",)
    assert result.problems() == []
    result.analysis.redeliveries = 0
    assert result.problems() == ["no message held by a SIGKILLed process was redelivered: the kills proved nothing"]
