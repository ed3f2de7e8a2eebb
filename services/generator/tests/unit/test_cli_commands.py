"""The generator's CLI commands that need no broker: build-reference, status, and refusing a bad job locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthner.main import main
from synthner_generator.tracker import JobStore
from synthner_shared.contracts import GenerationProgress
from synthner_shared.ngrams import NgramReference


def test_build_reference_writes_a_loadable_hashed_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "real.jsonl"
    notes.write_text('{"id": "a", "text": "one two three four five six seven eight nine ten", "entities": []}\n')
    out = tmp_path / "ref.npz"
    assert main(["leakcheck", "build-reference", str(notes), "--out", str(out), "--n", "4"]) == 0
    assert "7 hashed 4-grams from 1 documents" in capsys.readouterr().out
    assert NgramReference.load(out).n == 4


def test_status_prints_the_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    common = {"correlation_id": "job-9", "producer": "t", "job_id": "job-9"}
    store.record(GenerationProgress.model_validate({**common, "event": "accepted", "requested": 2}))
    part = {**common, "event": "part", "requested": 2, "generated": 1, "quarantined": 1}
    store.record(GenerationProgress.model_validate(part))
    store.close()
    assert main(["status", "job-9", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "job job-9: done" in out
    assert "generated 1" in out
    assert "quarantined 1 (50.0%)" in out
    assert main(["status", "job-0", "--db", str(db)]) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--count", "0"], "count: Input should be greater than or equal to 1"),
        (["--count", "3", "--language", "xx"], "has no language 'xx'"),
        (["--count", "3", "--labels", "Spaceship"], "unknown entity label"),
    ],
)
def test_generate_refuses_an_invalid_job_before_submitting(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", *arguments]) == 2
    assert message in capsys.readouterr().err
