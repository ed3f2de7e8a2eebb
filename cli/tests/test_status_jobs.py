"""``synthner status`` without a job id lists every job the tracker knows (what an operator runs inside the tracker pod:
``kubectl exec deploy/tracker -- synthner status``); ``--json`` for scripts. A real tracker database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthner.main import main
from synthner_generator.tracker import JobStore
from synthner_shared.contracts import GenerationProgress


def progress(job_id: str, event: str, requested: int, **counts: int) -> GenerationProgress:
    return GenerationProgress.model_validate(
        {
            "producer": "t",
            "correlation_id": job_id,
            "job_id": job_id,
            "event": event,
            "requested": requested,
            **({"reason": "unknown prompt"} if event == "refused" else {}),
            **counts,
        }
    )


def test_status_without_a_job_lists_every_job_and_json_gives_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    try:
        store.record(progress("job-b", "accepted", 2))
        store.record(progress("job-b", "part", 2, generated=1, quarantined=1))
        store.record(progress("job-a", "refused", 5))
        store.record(progress("job-c", "part", 1, failed=1))  # its accepted event not seen yet
    finally:
        store.close()

    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.index("job job-a: refused (unknown prompt)") < out.index("job job-b: done") < out.index("job job-c")
    assert "quarantined 1 (50.0%)" in out

    assert main(["status", "--db", str(db), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["job_id"] for row in rows] == ["job-a", "job-b", "job-c"]
    job_b = rows[1]
    assert (job_b["state"], job_b["generated"], job_b["finished"], job_b["quarantined_share"]) == ("done", 1, 2, 0.5)
    assert rows[2]["state"] == "running"


def test_status_of_an_empty_tracker_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "jobs.sqlite3"
    JobStore(db).close()
    assert main(["status", "--db", str(db)]) == 0
    assert capsys.readouterr().out == "no jobs yet\n"
