"""The job tracker folds progress events idempotently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthner_generator.tracker import JobStore
from synthner_shared.contracts import GenerationProgress


def event(**values: Any) -> GenerationProgress:
    return GenerationProgress.model_validate({"correlation_id": "j", "producer": "t", "job_id": "j", **values})


def test_parts_add_up_and_a_repeated_part_counts_once(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    assert store.status("j").state == "unknown"
    store.record(event(event="accepted", requested=8))
    store.record(event(event="part", first_index=0, requested=4, generated=3, quarantined=1))
    store.record(event(event="part", first_index=0, requested=4, generated=3, quarantined=1))  # redelivered
    running = store.status("j")
    assert (running.state, running.generated, running.quarantined, running.finished) == ("running", 3, 1, 4)
    store.record(event(event="part", first_index=4, requested=4, generated=2, rejected=1, failed=1))
    done = store.status("j")
    assert (done.state, done.requested, done.generated, done.rejected, done.failed) == ("done", 8, 5, 1, 1)
    assert done.quarantined_share == 1 / 8


def test_a_refused_job_keeps_its_reason_and_state_survives_a_restart(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.record(event(event="refused", requested=5, reason="unknown entity label(s) ['X']"))
    store.close()
    status = JobStore(tmp_path / "jobs.sqlite3").status("j")
    assert status.state == "refused"
    assert status.reason == "unknown entity label(s) ['X']"
