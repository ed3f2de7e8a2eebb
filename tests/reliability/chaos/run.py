"""The chaos run's phases (a SIGTERM drain, then the flow under SIGKILLs and broker outages, then the model) and
:func:`run_chaos`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from tests.reliability.chaos.monkey import POLL_S, ChaosMonkey
from tests.reliability.chaos.records import Drain, Outage, OutageKind, RecordLog, analyse, read_records
from tests.reliability.chaos.result import ChaosFailed, ChaosOptions, ChaosResult
from tests.reliability.chaos.services import (
    API_KEY_NAME,
    broker_settings,
    generation_job,
    process_specs,
    records_dir,
)
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


@dataclass(frozen=True)
class Snapshot:
    stored: int
    """Planned notes in the trainer's store."""
    dead: int
    """Messages in the dead-letter, failure and quarantine queues; -1 while the broker is down."""
    queued: int
    """Messages ready in the work queues and waiting in their retry queues; -1 while the broker is down."""


async def _progress_snapshot(options: ChaosOptions, probe: Broker, job_id: str) -> Snapshot:
    """Cheap polling of the flow's progress; the exact accounting comes at the end."""
    topology = probe.topology
    planned = set(planned_note_ids(_dedup_db(options), job_id).values())
    stored = sum(1 for note_id in stored_note_ids(_store_db(options)) if note_id in planned)
    work = [topology.queue_name(role) for role in (GENERATOR, ANNOTATOR, TRAINER)]
    retries = [
        topology.retry_queue_name(q, delay) for q in work for delay in sorted(set(probe.settings.retry_delays_ms))
    ]
    dead = queued = 0
    try:
        async with asyncio.timeout(10):
            await probe.connection.ready()
            channel = await probe.connection.channel()
            try:
                for name in dead_letter_queues(topology):
                    dead += (await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0
                for name in work + retries:
                    queued += (await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0
            finally:
                await channel.close()
    except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError):
        return Snapshot(stored, -1, -1)  # the broker is restarting
    return Snapshot(stored, dead, queued)


def _in_flight_anywhere(supervisor: Supervisor, records: RecordLog) -> int:
    """Handlings the live processes hold in flight, from their records."""
    records.refresh()
    live = [p.pid for p in supervisor.processes.values() if p.returncode is None]
    return sum(len(records.in_flight(pid)) for pid in live)


async def _wait_for(condition: Callable[[], Value | None], what: str, timeout_s: float, pause_s: float = 1.0) -> Value:
    """Poll durable state another process writes (SQLite, HTTP) until ``condition()`` returns a value (not None)."""
    try:
        async with asyncio.timeout(timeout_s):
            while (value := condition()) is None:  # noqa: ASYNC110 - state other processes write; no event to await
                await asyncio.sleep(pause_s)
            return value
    except TimeoutError:
        raise ChaosFailed(f"{what} did not happen within {timeout_s:g} s") from None


def _broker_events(options: ChaosOptions) -> list[OutageKind]:
    """The flow's broker outages in order: the graceful restarts and the crashes, alternating."""
    restarts: list[OutageKind] = ["restart"] * options.broker_restarts
    crashes: list[OutageKind] = ["crash"] * options.broker_crashes
    events: list[OutageKind] = []
    for pair in itertools.zip_longest(restarts, crashes):
        events.extend(kind for kind in pair if kind is not None)
    return events


async def _drain(supervisor: Supervisor, monkey: ChaosMonkey, result: ChaosResult) -> None:
    """SIGTERM an annotator while it holds notes (no SIGKILL meanwhile) and wait for it to exit; the records tell at
    the end whether it finished them all and whether any was handled again (:func:`.records.analyse`)."""
    annotators = [name for name in monkey.victims if name.startswith("annotator")]
    async with monkey.lock:
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            monkey.records.refresh()
            victim = next((name for name in annotators if monkey.holding(name) > 0), None)
            if victim is None:
                await asyncio.sleep(POLL_S)  # other processes append to the records; no event tells
        victim = victim or annotators[0]
        process = supervisor.processes[victim]
        monkey.records.refresh()
        held, at = monkey.holding(victim), time.time()
        supervisor.kill(victim, signal.SIGTERM)
        try:
            async with asyncio.timeout(120):
                code: int | None = await process.wait()
        except TimeoutError:
            code = None
        result.drains.append(Drain(victim, process.pid, at, held, code))
        print(f"  SIGTERM {victim} (pid {process.pid}) holding {held} handlings: exit code {code}", flush=True)


async def _outage(node: PrivateRabbitMQ, kind: OutageKind, result: ChaosResult) -> None:
    began = time.time()
    if kind == "restart":
        await node.restart()
        result.broker_restarts += 1
    else:
        await node.crash()
        await node.start()
        result.broker_crashes += 1
    result.outages.append(Outage(kind, began, time.time()))


async def _flow(
    *,
    options: ChaosOptions,
    node: PrivateRabbitMQ,
    probe: Broker,
    monkey: ChaosMonkey,
    result: ChaosResult,
    job: GenerationRequested,
) -> None:
    """Phase 1: a SIGTERM drain first, then until every planned note is stored or dead-lettered (or nothing is
    queued or in flight any more), every broker outage was done and every victim was killed; or a stall."""
    events = _broker_events(options)
    if options.sigterm_drain:
        await _drain(monkey.supervisor, monkey, result)
    last: Snapshot | None = None
    last_change = time.monotonic()
    quiet_since: float | None = None
    next_report = 0.0
    while True:
        snapshot = await _progress_snapshot(options, probe, job.job_id)
        in_flight = _in_flight_anywhere(monkey.supervisor, monkey.records)
        now = time.monotonic()
        if snapshot != last:
            last, last_change = snapshot, now
        if now >= next_report:
            print(
                f"  stored {snapshot.stored}/{options.notes}, dead letters {snapshot.dead}, queued {snapshot.queued}, "
                f"in flight {in_flight}",
                flush=True,
            )
            next_report = now + 10
        done = len(result.outages)
        if done < len(events) and snapshot.stored >= options.notes * (done + 1) / (len(events) + 1):
            kind = events[done]
            print(f"  broker {kind} (stored {snapshot.stored}/{options.notes}) ...", flush=True)
            async with monkey.lock:  # no kill meanwhile: every service must come back by reconnecting alone
                # A process still starting (after a kill) would fail its start-up, which is not what this checks.
                await _all_up(monkey, f"before the broker {kind}")
                before = dict(monkey.supervisor.restarts)
                await _outage(node, kind, result)
                print(f"  RabbitMQ back ({kind} {done + 1} of {len(events)})", flush=True)
                await _resumed(options, monkey, job, snapshot.stored)
                ended = sorted(n for n, count in monkey.supervisor.restarts.items() if count != before.get(n))
                if ended:
                    raise ChaosFailed(f"{', '.join(ended)} ended after the broker {kind} instead of reconnecting")
            last_change, quiet_since = time.monotonic(), None
            continue
        quiet = snapshot.queued == 0 and in_flight == 0
        quiet_since = (quiet_since or now) if quiet else None
        accounted = snapshot.dead >= 0 and snapshot.stored + snapshot.dead >= options.notes
        settled = quiet_since is not None and now - quiet_since >= options.settle_s
        killed = options.kill_interval_s is None or monkey.each_killed
        if (accounted or settled) and done >= len(events) and killed:
            if not accounted:
                print(f"  nothing queued or in flight for {options.settle_s:g} s: accounting what there is", flush=True)
            return
        if now - last_change > options.stall_s:
            print(f"  no progress for {options.stall_s:g} s: accounting what there is", flush=True)
            return
        await asyncio.sleep(1.0)


async def _all_up(monkey: ChaosMonkey, when: str) -> None:
    """Wait until every service reports ready, or raise :class:`ChaosFailed` naming the first that did not."""
    async with httpx.AsyncClient(timeout=5) as client:
        for name in monkey.victims:
            if not await monkey.until_up(client, name, timeout_s=120):
                raise ChaosFailed(f"{name} was not ready within 120 s {when}")


async def _resumed(options: ChaosOptions, monkey: ChaosMonkey, job: GenerationRequested, stored_before: int) -> None:
    """After a broker outage, with no process killed: every service reports ready again and the store grows (when
    work is left), or :class:`ChaosFailed` names what did not resume."""
    await _all_up(monkey, "of the broker coming back (it was not killed)")

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
    """Phase 2 (unless the run does not train): train (killing the trainer once mid-training), publish, kill the NER
    API once, ask it."""
    if not options.train:
        return
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
    """Run the chaos run; the result holds the counts and :meth:`~ChaosResult.problems` (``failure`` if the run
    stopped early).

    Cancelling it (SIGTERM or SIGINT to a program that runs it through :func:`synthner_shared.stopping.run_stoppable`,
    as ``benchmarks/chaos.py`` does) runs the same clean-up as a normal end: the service processes get SIGTERM, then
    SIGKILL after the supervisor's grace period, and the private RabbitMQ node is stopped (killed if still starting).
    """
    started = time.monotonic()
    result = ChaosResult(planned=options, allowed_dead_letters=options.allowed_dead_letters)
    options.workdir.mkdir(parents=True, exist_ok=True)
    for leftover in ("generator", "trainer", "logs", "ner-api", "rabbitmq", "records", "tracker.sqlite3"):
        path = options.workdir / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    job = generation_job(options)
    key = write_api_key(options.workdir / "ner-api", API_KEY_NAME)
    api_port = free_port()
    supervisor = Supervisor(options.workdir / "logs", grace_s=15)
    records = RecordLog(records_dir(options))
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
                planted = f" (planted fault: {options.plant_fault})" if options.plant_fault else ""
                print(
                    f"started {', '.join(supervisor.processes)}; publishing a job of {options.notes} notes{planted}",
                    flush=True,
                )
                monkey = ChaosMonkey(
                    supervisor,
                    {s.name: s.ready_url or "" for s in specs},
                    options.kill_interval_s or 0.0,
                    options.seed,
                    records=records,
                    in_flight_wait_s=options.in_flight_wait_s,
                )
                try:
                    async with asyncio.timeout(options.deadline_s - (time.monotonic() - started)):
                        await _publish(probe, job)
                        monkey_task = asyncio.create_task(_after_drain(monkey, options, result))
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
                    result.kills, result.kill_log = monkey.kills, monkey.log
                    await supervisor.stop()
                    result.restarts = dict(supervisor.restarts)
                await probe.close()
                if not node.running:
                    await node.start()
                dead = await drain_dead_letters(node.url, Topology.from_settings(broker), job.job_id)
    finally:
        await supervisor.stop()
        node.kill_now()
    result.analysis = analyse(read_records(records_dir(options)), result.kill_log, result.outages, result.drains)
    planned = planned_note_ids(_dedup_db(options), job.job_id)
    stored = stored_note_ids(_store_db(options))
    account(result, planned, stored, dead, options.notes)
    result.seconds = time.monotonic() - started
    return result


async def _after_drain(monkey: ChaosMonkey, options: ChaosOptions, result: ChaosResult) -> None:
    """The chaos monkey (unless the run kills nothing), once the SIGTERM drain (if any) is over: its SIGKILLs would
    blur what the drain shows."""
    if options.kill_interval_s is None:
        return
    if options.sigterm_drain:
        while not result.drains:  # noqa: ASYNC110 - set by the flow; a few polls at most
            await asyncio.sleep(0.2)
    await monkey.run()
