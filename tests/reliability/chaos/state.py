"""The run's counts from durable state only: which note id each planned note became (the generator's dedup
database) and what the trainer's dataset store holds, each read through its store's own read methods on a read-only
view, and what every dead-letter, failure and quarantine queue holds, drained and mapped to the notes each message
stands for."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from synthner_generator.dedup import DedupStore
from synthner_shared.contracts import (
    AnnotationFailed,
    DocumentAnnotated,
    GenerationFailed,
    GenerationRequested,
    NoteGenerated,
    NoteQuarantined,
    decode_message,
)
from synthner_shared.messaging import (
    ANNOTATOR,
    FAILURES,
    GENERATOR,
    JOB_PROGRESS,
    NER_API,
    QUARANTINE,
    REASON_HEADER,
    TRAINER,
    Topology,
)
from synthner_trainer.store import DatasetStore, RequestStatus
from tests.reliability.chaos.result import ChaosResult


def planned_note_ids(dedup_db: Path, job_id: str) -> dict[int, str]:
    """Note index -> note id, as the generator recorded each planned note it accepted (a read-only view of its dedup
    database)."""
    if not dedup_db.is_file():
        return {}
    dedup = DedupStore(dedup_db, read_only=True)
    try:
        return dedup.planned_note_ids(job_id)
    finally:
        dedup.close()


def _store_view(store_db: Path) -> DatasetStore | None:
    """A read-only view of the trainer's dataset store; None before the trainer has created it."""
    return DatasetStore(store_db, read_only=True) if store_db.is_file() else None


def stored_note_ids(store_db: Path) -> Counter[str]:
    """Each note id in the trainer's dataset store, with how many documents hold it."""
    store = _store_view(store_db)
    if store is None:
        return Counter()
    try:
        return Counter(store.note_ids())
    except sqlite3.OperationalError:  # the trainer has not created its tables yet
        return Counter()
    finally:
        store.close()


def request_status(store_db: Path, request_id: str) -> tuple[RequestStatus, str | None] | None:
    """A training request's status and detail in the trainer's store; None while it is not there."""
    store = _store_view(store_db)
    if store is None:
        return None
    try:
        return store.request_status(request_id)
    except sqlite3.OperationalError:
        return None
    finally:
        store.close()


def dead_letter_queues(topology: Topology) -> list[str]:
    """Every queue where a note can end without reaching the store: the DLQs, the failure events (data, not errors)
    and the leak gate's quarantine."""
    roles = (GENERATOR, ANNOTATOR, TRAINER, FAILURES, QUARANTINE, JOB_PROGRESS, NER_API)
    return [
        *(topology.dead_letter_queue_name(role) for role in roles),
        topology.queue_name(FAILURES),
        topology.queue_name(QUARANTINE),
    ]


def dead_letter_reason(message: AbstractIncomingMessage) -> str:
    headers = message.headers or {}
    reason = headers.get(REASON_HEADER)
    if isinstance(reason, bytes | str):
        text = reason.decode() if isinstance(reason, bytes) else reason
        return text.split(":", 1)[0] if text.startswith("gave up") else text[:120]
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker: {deaths[0].get('reason')!s}"
    first = headers.get("x-first-death-reason")
    if first is not None:
        return f"broker: {first!s}"
    return "no reason given"


@dataclass
class DeadLetters:
    indices: dict[int, str] = field(default_factory=dict)
    """Planned note index -> reason (a generation part or note that never became a note)."""
    note_ids: dict[str, str] = field(default_factory=dict)
    """Note id -> reason."""
    other: Counter[str] = field(default_factory=Counter)
    """Dead letters that are not about a note (a training request, a model event), by reason."""
    every: Counter[str] = field(default_factory=Counter)
    """Every dead letter drained (each copy counts), by reason."""


async def drain_dead_letters(url: str, topology: Topology, job_id: str) -> DeadLetters:
    """Consume every message of the dead-letter, failure and quarantine queues (the run's end: nobody else reads
    them) and map each to the notes it stands for."""
    found = DeadLetters()
    connection = await aio_pika.connect(url, timeout=30)
    try:
        channel = await connection.channel()
        for name in dead_letter_queues(topology):
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                channel = await connection.channel()
                continue
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                _record(found, message, job_id)
    finally:
        await connection.close()
    return found


def _record(found: DeadLetters, message: AbstractIncomingMessage, job_id: str) -> None:
    reason = dead_letter_reason(message)
    try:
        decoded = decode_message(message.body)
    except Exception:  # noqa: BLE001 - an undecodable dead letter stands for no note of ours
        found.other[f"undecodable: {reason}"] += 1
        found.every[f"undecodable: {reason}"] += 1
        return
    if isinstance(decoded, GenerationRequested) and decoded.job_id == job_id:
        label = f"generation part: {reason}"
        for index in range(decoded.first_index, decoded.first_index + decoded.count):
            found.indices.setdefault(index, label)
    elif isinstance(decoded, GenerationFailed) and decoded.job_id == job_id and decoded.note_index is not None:
        label = f"GenerationFailed: {decoded.reason[:80]}"
        found.indices.setdefault(decoded.note_index, label)
    elif isinstance(decoded, NoteGenerated | DocumentAnnotated | NoteQuarantined):
        label = f"{decoded.type}: {reason}"
        found.note_ids.setdefault(decoded.note_id, label)
    elif isinstance(decoded, AnnotationFailed):
        label = f"AnnotationFailed: {decoded.reason[:80]}"
        found.note_ids.setdefault(decoded.note_id, label)
    else:
        label = f"{decoded.type}: {reason}"
        found.other[label] += 1
    found.every[label] += 1


def account(result: ChaosResult, planned: dict[int, str], stored: Counter[str], dead: DeadLetters, notes: int) -> None:
    """Fill the counts: every planned note index is stored, dead-lettered (with a reason) or lost; every dead letter
    drained counts by its reason (the run's allow-list is checked against those); ``duplicated`` is the records'
    unexplained repeat handlings (``result.analysis``, filled before) plus stored notes no planned index owns."""
    result.sent = notes
    result.stored = result.dead_lettered = result.lost = result.dead_lettered_but_stored = 0
    result.dead_letter_reasons = Counter(dead.every)
    for index in range(notes):
        note_id = planned.get(index)
        reason = dead.indices.get(index) or (dead.note_ids.get(note_id) if note_id else None)
        if note_id is not None and note_id in stored:
            result.stored += 1
            if reason is not None:
                result.dead_lettered_but_stored += 1  # a copy died, another got through: accounted once
        elif reason is not None:
            result.dead_lettered += 1
        else:
            result.lost += 1
    owned = set(planned.values())
    result.strangers = sum(1 for note_id in stored if note_id not in owned)
    result.duplicated = len(result.analysis.duplicates) + result.strangers
