"""The chaos run's phases (flow under SIGKILLs and broker restarts, then the model) and :func:`run_chaos`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aio_pika
import httpx

from synthner.processes import write_api_key
from synthner.supervisor import ProcessFailed, Supervisor
from synthner_generator.testing import local_llm_server
from synthner_shared.broker_node import PrivateRabbitMQ
from synthner_shared.contracts import (
    DatasetSelection,
    Envelope,
    GenerationRequested,
    HyperParameters,
    TrainingRequested,
)
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import ANNOTATOR, GENERATOR, TRAINER, Broker, Topology
from synthner_trainer.registry import ModelRegistry
from synthner_trainer.store import RequestStatus
from tests.reliability.chaos.monkey import ChaosMonkey
from tests.reliability.chaos.result import ChaosFailed, ChaosOptions, ChaosResult
from tests.reliability.chaos.services import API_KEY_NAME, broker_settings, generation_job, process_specs
from tests.reliability.chaos.state import (
    account,
    dead_letter_queues,
    drain_dead_letters,
    planned_note_ids,
    request_status,
    stored_note_ids,
)

log = logging.getLogger(__name__)

SAMPLE_TEXT = "The patient has a history of asthma and heart failure."
Value = TypeVar("Value")


def _dedup_db(options: ChaosOptions) -> Path:
    return options.workdir / "generator" / "dedup.sqlite3"


def _store_db(options: ChaosOptions) -> Path:
    return options.workdir / "trainer" / "store.sqlite3"


async def _progress_snapshot(
    options: ChaosOptions, topology: Topology, probe: Broker, job_id: str
) -> tuple[int, int, int]:
    """(planned notes stored, messages in the dead-letter queues, messages ready in the work queues): cheap polling;
    the exact accounting comes at the end."""
    planned = set(planned_note_ids(_dedup_db(options), job_id).values())
    stored = sum(1 for note_id in stored_note_ids(_store_db(options)) if note_id in planned)
    dead = ready = 0
    try:
        async with asyncio.timeout(10):
            await probe.connection.ready()
            channel = await probe.connection.channel()
            try:
                for name in dead_letter_queues(topology):
                    dead += (await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0
                for role in (GENERATOR, ANNOTATOR, TRAINER):
                    queue = await channel.declare_queue(topology.queue_name(role), passive=True)
                    ready += queue.declaration_result.message_count or 0
            finally:
                await channel.close()
    except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError):
        return stored, -1, -1  # the broker is restarting
    return stored, dead, ready


async def _wait_for(condition: Callable[[], Value | None], what: str, timeout_s: float, pause_s: float = 1.0) -> Value:
    """Poll durable state another process writes (SQLite, HTTP) until ``condition()`` returns a value (not None)."""
    try:
        async with asyncio.timeout(timeout_s):
            while (value := condition()) is None:  # noqa: ASYNC110 - state other processes write; no event to await
                await asyncio.sleep(pause_s)
            return value
    except TimeoutError:
        raise ChaosFailed(f"{what} did not happen within {timeout_s:g} s") from None


async def _flow(
    *,
    options: ChaosOptions,
    node: PrivateRabbitMQ,
    probe: Broker,
    monkey: ChaosMonkey,
    result: ChaosResult,
    job: GenerationRequested,
) -> None:
    """Phase 1: until every planned note is stored or dead-lettered and every victim was killed, or a stall."""
    topology = probe.topology
    last: tuple[int, int, int] | None = None
    last_change = time.monotonic()
    next_report = 0.0
    while True:
        stored, dead, ready = await _progress_snapshot(options, topology, probe, job.job_id)
        now = time.monotonic()
        if (stored, dead, ready) != last:
            last, last_change = (stored, dead, ready), now
        if now >= next_report:
            print(f"  stored {stored}/{options.notes}, dead letters {dead}, ready in work queues {ready}", flush=True)
            next_report = now + 10
        if result.broker_restarts < options.broker_restarts and stored >= options.notes * (
            result.broker_restarts + 1
        ) / (options.broker_restarts + 2):
            print(f"  restarting RabbitMQ (stored {stored}/{options.notes}) ...", flush=True)
            async with monkey.lock:  # no kill meanwhile: every service must come back by reconnecting alone
                before = dict(monkey.supervisor.restarts)
                await node.restart()
                result.broker_restarts += 1
                print(f"  RabbitMQ back (restart {result.broker_restarts})", flush=True)
                await _resumed(options, monkey, job, stored)
                ended = sorted(n for n, count in monkey.supervisor.restarts.items() if count != before.get(n))
                if ended:
                    raise ChaosFailed(f"{', '.join(ended)} ended after the broker restart instead of reconnecting")
            last_change = time.monotonic()
            continue
        accounted = dead >= 0 and stored + dead >= options.notes
        if accounted and result.broker_restarts >= options.broker_restarts and monkey.each_killed:
            return
        if now - last_change > options.stall_s:
            print(f"  no progress for {options.stall_s:g} s: accounting what there is", flush=True)
            return
        await asyncio.sleep(1.0)


async def _resumed(options: ChaosOptions, monkey: ChaosMonkey, job: GenerationRequested, stored_before: int) -> None:
    """After a broker restart, with no process killed: every service reports ready again and the store grows (when
    work is left), or :class:`ChaosFailed` names what did not resume."""
    async with httpx.AsyncClient(timeout=5) as client:
        for name in monkey.victims:
            if not await monkey.until_up(client, name, timeout_s=120):
                raise ChaosFailed(f"{name} was not ready within 120 s of the broker restart (it was not killed)")

    def moved() -> bool | None:
        planned = set(planned_note_ids(_dedup_db(options), job.job_id).values())
        stored = sum(1 for note_id in stored_note_ids(_store_db(options)) if note_id in planned)
        return True if stored > stored_before or stored >= options.notes else None

    await _wait_for(moved, "storing a note after the broker restart (no process killed)", 120)


async def _model(
    *,
    options: ChaosOptions,
    supervisor: Supervisor,
    probe: Broker,
    monkey: ChaosMonkey,
    result: ChaosResult,
    key: str,
    api_port: int,
    job: GenerationRequested,
) -> None:
    """Phase 2: train (killing the trainer once mid-training), publish, kill the NER API once, ask it."""
    store_db = _store_db(options)
    request = TrainingRequested(
        correlation_id=job.job_id,
        producer="synthner-chaos",
        dataset=DatasetSelection(max_documents=options.train_documents),
        hyperparameters=HyperParameters(epochs=options.epochs),
    )
    await _publish(probe, request)
    print(f"training requested ({options.train_documents} documents at most, {options.epochs:g} epoch)", flush=True)
    request_id = str(request.message_id)

    def status_in(*states: RequestStatus) -> tuple[RequestStatus, str | None] | None:
        status = request_status(store_db, request_id)
        return status if status is not None and status[0] in states else None

    started = "the trainer starting the training"
    await _wait_for(lambda: status_in("running", "done", "failed"), started, options.deadline_s)
    if status_in("running") is not None:
        monkey.kill("trainer", " while it trains")
    status, detail = await _wait_for(lambda: status_in("done", "failed"), "the training", options.deadline_s, 2.0)
    if status == "failed" or not (detail or "").startswith("published"):
        raise ChaosFailed(f"training ended {status}: {detail} (see {supervisor.log_path('trainer')})")
    current = ModelRegistry(options.workdir / "trainer" / "models").current()
    result.model_version = current.name if current is not None else None
    print(f"model {result.model_version} published", flush=True)
    monkey.kill("ner-api", " after the model was published")
    result.answered_by = await _ask(api_port, key, result.model_version, options.deadline_s)
    print(f"NER API answered /v1/ner with model {result.answered_by}", flush=True)


async def _publish(probe: Broker, message: Envelope) -> None:
    """Publish with confirms, retrying while the broker or this connection is coming back."""
    async with asyncio.timeout(180):
        while True:
            try:
                await probe.wait_connected(60)
                await probe.publisher.publish(message)
                return
            except Exception as exc:  # noqa: BLE001 - the broker may be restarting; try again
                log.warning("publishing %s failed (%s); retrying", message.type, type(exc).__name__)
                await asyncio.sleep(1.0)


async def _ask(api_port: int, key: str, version: str | None, timeout_s: float) -> str | None:
    """POST /v1/ner until the NER API answers 200 with ``version`` (it may be restarting or loading)."""
    base = f"http://127.0.0.1:{api_port}"
    answered: str | None = None
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        response = await client.post(
                            "/v1/ner", json={"text": SAMPLE_TEXT}, headers={"Authorization": f"Bearer {key}"}
                        )
                        if response.status_code == 200:
                            answered = str(response.json().get("model_version"))
                            if answered == version:
                                return answered
                    await asyncio.sleep(1.0)
        except TimeoutError:
            return answered


async def run_chaos(options: ChaosOptions) -> ChaosResult:  # one run, easier to follow in one piece
    """Run the chaos run; the result holds the counts (and ``failure`` if the run stopped early).

    Cancelling it (SIGTERM or SIGINT to a program that runs it through :func:`synthner_shared.stopping.run_stoppable`,
    as ``benchmarks/chaos.py`` does) runs the same clean-up as a normal end: the service processes get SIGTERM, then
    SIGKILL after the supervisor's grace period, and the private RabbitMQ node is stopped (killed if still starting).
    """
    started = time.monotonic()
    result = ChaosResult()
    options.workdir.mkdir(parents=True, exist_ok=True)
    for leftover in ("generator", "trainer", "logs", "ner-api", "rabbitmq", "tracker.sqlite3"):
        path = options.workdir / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    job = generation_job(options)
    key = write_api_key(options.workdir / "ner-api", API_KEY_NAME)
    api_port = free_port()
    supervisor = Supervisor(options.workdir / "logs", grace_s=15)
    monkey_task: asyncio.Task[None] | None = None
    node = PrivateRabbitMQ(options.workdir / "rabbitmq")
    result.broker_node = node.node
    try:
        async with node, local_llm_server(latency_s=options.llm_latency_s) as llm:
            print(
                f"private RabbitMQ node {node.node} on 127.0.0.1:{node.port}; logs in {supervisor.log_dir}", flush=True
            )
            broker = broker_settings(node.url)
            specs = process_specs(options, broker, llm.url, key.key_file, api_port)
            async with Broker(broker, "synthner-chaos") as probe:
                for spec in specs:
                    await supervisor.start(spec)
                for spec in specs:
                    assert spec.ready_url is not None
                    await supervisor.wait_ready(spec.name, spec.ready_url, 300)
                print(
                    f"started {', '.join(supervisor.processes)}; publishing a job of {options.notes} notes", flush=True
                )
                monkey = ChaosMonkey(
                    supervisor, {s.name: s.ready_url or "" for s in specs}, options.kill_interval_s, options.seed
                )
                try:
                    async with asyncio.timeout(options.deadline_s - (time.monotonic() - started)):
                        await _publish(probe, job)
                        monkey_task = asyncio.create_task(monkey.run())
                        await supervisor.guard(
                            _flow(options=options, node=node, probe=probe, monkey=monkey, result=result, job=job)
                        )
                        monkey_task.cancel()
                        await _model(
                            options=options,
                            supervisor=supervisor,
                            probe=probe,
                            monkey=monkey,
                            result=result,
                            key=key.key,
                            api_port=api_port,
                            job=job,
                        )
                except TimeoutError:
                    result.failure = f"the run did not finish within --deadline {options.deadline_s:g} s"
                except (ChaosFailed, ProcessFailed) as exc:
                    result.failure = str(exc)
                finally:
                    if monkey_task is not None:
                        monkey_task.cancel()
                        await asyncio.gather(monkey_task, return_exceptions=True)
                    result.kills = monkey.kills
                    await supervisor.stop()
                    result.restarts = dict(supervisor.restarts)
                await probe.close()
                if not node.running:
                    await node.start()
                dead = await drain_dead_letters(node.url, Topology.from_settings(broker), job.job_id)
    finally:
        await supervisor.stop()
        node.kill_now()
    planned = planned_note_ids(_dedup_db(options), job.job_id)
    stored = stored_note_ids(_store_db(options))
    account(result, planned, stored, dead, options.notes)
    for reason, count in dead.other.items():
        result.dead_letter_reasons[f"(not a note) {reason}"] += count
    result.seconds = time.monotonic() - started
    return result
