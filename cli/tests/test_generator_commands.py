"""``synthner generate``, ``status`` and ``leakcheck``: happy paths and their main errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from synthner.main import main
from synthner_generator.tracker import JobStore
from synthner_shared.contracts import GenerationProgress, GenerationRequested
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import GENERATOR, BrokerSettings
from synthner_shared.testing import BrokerProbe


@pytest.mark.rabbitmq
async def test_generate_submits_the_job_to_the_generator_queue(
    broker_env: BrokerSettings,
    broker_probe: BrokerProbe,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ["generate", "--count", "3", "--labels", "Disease", "--mode", "label_conditioned", "--seed", "5"]
    code = await asyncio.to_thread(main, [*arguments, "--job-id", "job-cli-test"])
    assert code == 0
    assert "submitted job job-cli-test: 3 notes, seed 5" in capsys.readouterr().out
    message = await broker_probe.get(broker_probe.topology.queue_name(GENERATOR))
    job = GenerationRequested.model_validate_json(message.body)
    assert (job.job_id, job.count, job.entity_labels, job.seed) == ("job-cli-test", 3, ["Disease"], 5)


def test_generate_with_an_unreachable_broker_exits_1_without_submitting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    monkeypatch.setenv("SYNTHNER_BROKER_CONNECT_TIMEOUT_S", "2")
    assert main(["generate", "--count", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("synthner: job not submitted: ")


def test_generate_refuses_an_invalid_job_before_the_broker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--count", "0"]) == 2
    assert "invalid job" in capsys.readouterr().err


def test_status_prints_the_tracked_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    try:
        store.record(GenerationProgress(producer="t", correlation_id="j1", job_id="j1", event="accepted", requested=4))
        store.record(
            GenerationProgress(
                producer="t",
                correlation_id="j1",
                job_id="j1",
                event="part",
                first_index=0,
                requested=2,
                generated=1,
                rejected=1,
            )
        )
    finally:
        store.close()
    assert main(["status", "j1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "job j1:" in out
    assert "requested 4" in out
    assert "generated 1" in out
    assert "rejected 1" in out
    assert main(["status", "unknown-job", "--db", str(db)]) == 1
    assert "unknown" in capsys.readouterr().out


def test_status_without_a_tracker_database_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "j1", "--db", str(tmp_path / "none.sqlite3")]) == 2
    assert "no tracker database" in capsys.readouterr().err


def test_leakcheck_builds_a_reference_without_readable_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "real.jsonl"
    text = "the patient was admitted with chest pain and shortness of breath after a long walk home"
    notes.write_text(json.dumps({"id": "r1", "text": text}) + "\n", encoding="utf-8")
    out = tmp_path / "reference.npz"
    assert main(["leakcheck", "build-reference", str(notes), "--out", str(out)]) == 0
    assert "from 1 documents" in capsys.readouterr().out
    assert out.is_file()
    assert b"chest pain" not in out.read_bytes()


def test_leakcheck_with_a_missing_file_exits_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.jsonl"
    assert main(["leakcheck", "build-reference", str(missing), "--out", str(tmp_path / "r.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"synthner: {missing}: No such file or directory"]
    assert not (tmp_path / "r.npz").exists()
