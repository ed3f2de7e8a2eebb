"""The generator and the job tracker against the real RabbitMQ, with the local LLM server as the endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from synthner.main import main
from synthner_generator.app import build
from synthner_generator.service import tracker_service
from synthner_generator.testing import local_llm_server, sample_job, settings_for
from synthner_generator.tracker import JobStore
from synthner_shared.contracts import (
    Envelope,
    GenerationFailed,
    GenerationProgress,
    GenerationRequested,
    NoteGenerated,
    decode_message,
)
from synthner_shared.messaging import ANNOTATOR, FAILURES, GENERATOR, JOB_PROGRESS, REASON_HEADER, BrokerSettings
from synthner_shared.testing import BrokerProbe, publish_once, running_app, running_service

pytestmark = pytest.mark.rabbitmq


class WatchedStore(JobStore):
    """A job store that sets an event once a job is finished or refused (the test waits on it, not on time)."""

    def __init__(self, path: Path, job_id: str) -> None:
        super().__init__(path)
        self.job_id = job_id
        self.settled = asyncio.Event()

    def record(self, event: GenerationProgress) -> None:
        super().record(event)
        if self.status(self.job_id).state in ("done", "refused"):
            self.settled.set()


async def messages(probe: BrokerProbe, queue: str, count: int) -> Sequence[Envelope]:
    return [decode_message((await probe.get(queue)).body) for _ in range(count)]


async def test_a_job_in_gives_notes_out_and_the_tracker_counts_them(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, tmp_path: Path
) -> None:
    topology = broker_probe.topology
    async with local_llm_server() as server:
        settings = settings_for(server.url, tmp_path, part_size=4)
        store = WatchedStore(settings.tracker_db, "job-1")
        async with (
            running_app(await build(settings, broker_settings)),
            running_service(tracker_service(broker_settings, settings, store)),
        ):
            await publish_once(broker_settings, sample_job(count=6))  # split into parts of 4 and 2
            notes = await messages(broker_probe, topology.queue_name(ANNOTATOR), 6)
            async with asyncio.timeout(30):
                await store.settled.wait()
    assert all(isinstance(n, NoteGenerated) and n.correlation_id == "job-1" for n in notes)
    indices = sorted(n.generation.attributes["note_index"] for n in notes if isinstance(n, NoteGenerated))
    assert indices == [0, 1, 2, 3, 4, 5]
    status = store.status("job-1")
    assert (status.state, status.requested, status.generated, status.failed) == ("done", 6, 6, 0)
    assert len(server.requests) == 6


async def test_a_failing_llm_ends_as_generation_failed_messages(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, tmp_path: Path
) -> None:
    async with local_llm_server(fail_next=[500] * 100) as server:
        settings = settings_for(server.url, tmp_path)
        async with running_app(await build(settings, broker_settings)):
            await publish_once(broker_settings, sample_job(count=2))
            failures = await messages(broker_probe, broker_probe.topology.queue_name(FAILURES), 2)
            progress = await messages(broker_probe, broker_probe.topology.queue_name(JOB_PROGRESS), 2)
    assert sorted(f.note_index or 0 for f in failures if isinstance(f, GenerationFailed)) == [0, 1]
    part = [p for p in progress if isinstance(p, GenerationProgress) and p.event == "part"]
    assert part[0].failed == 2


async def test_invalid_jobs_are_refused_with_a_reason_before_any_llm_call(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, tmp_path: Path
) -> None:
    topology = broker_probe.topology
    async with local_llm_server() as server:
        settings = settings_for(server.url, tmp_path)
        async with running_app(await build(settings, broker_settings)):
            await publish_once(
                broker_settings, sample_job(language="xx"), sample_job(job_id="job-2", entity_labels=["Spaceship"])
            )
            body = json.loads(sample_job(job_id="job-3").model_dump_json())
            await broker_probe.publish_raw(json.dumps({**body, "count": 0}).encode(), GENERATOR.routing_keys[0])
            failures = await messages(broker_probe, topology.queue_name(FAILURES), 2)
            progress = await messages(broker_probe, topology.queue_name(JOB_PROGRESS), 2)
            dead = await broker_probe.get(topology.dead_letter_queue_name(GENERATOR))
    reasons = sorted(f.reason for f in failures if isinstance(f, GenerationFailed))
    assert any("no language 'xx'" in r for r in reasons)
    assert any("unknown entity label(s) ['Spaceship']" in r for r in reasons)
    assert all(p.event == "refused" for p in progress if isinstance(p, GenerationProgress))
    assert "count: Input should be greater than or equal to 1" in str((dead.headers or {})[REASON_HEADER])
    assert server.requests == []


async def test_synthner_generate_submits_the_job_to_the_generator_queue(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTHNER_BROKER_NAMESPACE", broker_settings.namespace)
    # The CLI declares the topology too, so its queue arguments must match the test namespace's.
    monkeypatch.setenv("SYNTHNER_BROKER_DELIVERY_LIMIT", str(broker_settings.delivery_limit))
    monkeypatch.setenv("SYNTHNER_BROKER_RETRY_DELAYS_MS", json.dumps(list(broker_settings.retry_delays_ms)))
    arguments = ["generate", "--count", "5", "--language", "es", "--labels", "Disease,Drug", "--job-id", "cli-job"]
    code = await asyncio.to_thread(main, [*arguments, "--mode", "label_conditioned", "--seed", "9"])
    assert code == 0
    request = decode_message((await broker_probe.get(broker_probe.topology.queue_name(GENERATOR))).body)
    assert isinstance(request, GenerationRequested)
    assert (request.job_id, request.count, request.language, request.seed) == ("cli-job", 5, "es", 9)
    assert request.entity_labels == ["Disease", "Drug"]
    assert request.mode == "label_conditioned"
