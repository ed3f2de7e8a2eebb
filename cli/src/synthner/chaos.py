"""The chaos run: notes through generator -> annotators -> trainer -> NER API while processes are SIGKILLed and the
broker restarts; at the end every note must be accounted for exactly once, from durable state.

Everything runs on this machine, each service as its own OS process through its production entry point (as
``synthner demo --processes``), under a :class:`~synthner.supervisor.Supervisor` that restarts whatever ends. The
broker is a private RabbitMQ node (:class:`~synthner_shared.broker_node.PrivateRabbitMQ`), never the shared one, so
it can be stopped and started mid-run. The generator talks to the wire-compatible local LLM test server and the
annotators are lexicon annotators: the run tests the plumbing under faults, not the quality.

1. **Flow**: one generation job of ``notes`` notes is published; while it flows, a random service process (generator,
   each annotator, trainer, NER API) is SIGKILLed every ``kill_interval_s`` (each in turn, in a seeded random
   order), and the broker is restarted ``broker_restarts`` times as the store fills; around each broker restart no
   process is killed, and every service must report ready again and the store grow without any process having
   ended (a consumer that does not resume after a restart fails the run). The phase ends once every note
   is in the dataset store or a dead-letter queue (and every process was killed at least once), or when nothing has
   moved for ``stall_s`` (then some notes are lost, and the counts say how many).
2. **Model**: a training request; the trainer is killed once while it trains (the request runs again after the
   restart), the NER API once after the model is published (it must come back serving it); then ``POST /v1/ner``
   must answer with the published version.
3. **Accounting**, from durable state only: the generator's dedup database (which note id each planned note index
   became), the trainer's dataset store (note ids stored, and how often), and every dead-letter queue and the
   failure/quarantine queues, drained and counted by reason. ``sent`` is the number of planned notes,
   ``duplicated`` counts note ids stored more than once plus stored notes that no planned index owns (a note
   regenerated as different text after a crash), ``lost = sent - stored - dead_lettered``.

No note text is printed or logged here: counts, ids' prefixes and reasons only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from synthner.supervisor import ProcessFailed, ProcessSpec, Supervisor, module_argv, settings_env
from synthner_annotator.backends.lexicon import LexiconSettings
from synthner_annotator.settings import AnnotatorSettings
from synthner_generator.testing import local_llm_server, settings_for
from synthner_ner_api.auth import hash_key, new_key
from synthner_shared.broker_node import PrivateRabbitMQ
from synthner_shared.contracts import (
    AnnotationFailed,
    DatasetSelection,
    DocumentAnnotated,
    GenerationFailed,
    GenerationRequested,
    HyperParameters,
    Mention,
    NoteGenerated,
    NoteQuarantined,
    PromptRef,
    SamplingParameters,
    TrainingRequested,
    decode_message,
)
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import (
    ANNOTATOR,
    FAILURES,
    GENERATOR,
    JOB_PROGRESS,
    NER_API,
    QUARANTINE,
    REASON_HEADER,
    TRAINER,
    Broker,
    BrokerSettings,
    Topology,
)
from synthner_trainer.registry import ModelRegistry
from synthner_trainer.settings import TrainerSettings, TrainingConfig

log = logging.getLogger(__name__)

LABEL = "Disease"
DISEASES = (
    "hypertension",
    "type 2 diabetes",
    "asthma",
    "atrial fibrillation",
    "pneumonia",
    "migraine",
    "heart failure",
    "chronic kidney disease",
    "rheumatoid arthritis",
    "colorectal cancer",
    "epilepsy",
    "cystic fibrosis",
)
"""The seed lexicon of the notes and the lexicon annotator's terms: the run needs no data files."""
SAMPLE_TEXT = "The patient has a history of asthma and heart failure."
NER_API_INSTANCE = "chaos"


class ChaosFailed(RuntimeError):
    """The run could not be carried out (not: it found lost notes; those are in the result)."""


@dataclass(frozen=True)
class ChaosOptions:
    workdir: Path
    notes: int = 1000
    seed: int = 7
    kill_interval_s: float = 4.0
    broker_restarts: int = 1
    annotators: int = 2
    part_size: int = 10
    llm_latency_s: float = 0.1
    llm_concurrency: int = 4
    train_documents: int = 200
    epochs: float = 1.0
    deadline_s: float = 1500.0
    stall_s: float = 120.0
    base_model: Path | None = None


@dataclass
class ChaosResult:
    sent: int = 0
    stored: int = 0
    dead_lettered: int = 0
    duplicated: int = 0
    lost: int = 0
    seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    restarts: dict[str, int] = field(default_factory=dict)
    broker_restarts: int = 0
    broker_node: str = ""
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    dead_lettered_but_stored: int = 0
    model_version: str | None = None
    answered_by: str | None = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.failure is None
            and self.lost == 0
            and self.duplicated == 0
            and self.model_version is not None
            and self.answered_by == self.model_version
        )

    def line(self) -> str:
        return (
            f"sent={self.sent} stored={self.stored} dead_lettered={self.dead_lettered} duplicated={self.duplicated} "
            f"lost={self.lost} seconds={self.seconds:.0f}"
        )


# --- the services' settings ------------------------------------------------------------------------------------------


def broker_settings(url: str) -> BrokerSettings:
    """Production limits, with back-off and reconnection short enough for a run of minutes; start-up keeps trying
    through a broker restart."""
    return BrokerSettings(
        url=url,
        namespace="chaos",
        retry_delays_ms=(200, 1_000, 5_000),
        publish_timeout_s=15,
        connect_timeout_s=180,
        reconnect_interval_s=0.5,
        shutdown_grace_s=5,
    )


def process_specs(
    options: ChaosOptions, broker: BrokerSettings, llm_url: str, key_file: Path, api_port: int
) -> list[ProcessSpec]:

    common = {
        "AMQP_URL": broker.url.get_secret_value(),
        "SYNTHNER_BROKER_NAMESPACE": broker.namespace,
        **settings_env("SYNTHNER_BROKER_", broker, exclude=("url", "namespace")),
    }
    generator = settings_for(
        llm_url,
        options.workdir,
        labels=[LABEL],
        part_size=options.part_size,
        concurrency=options.llm_concurrency,
        entities_per_label=2,
        instance="chaos",
    )
    trainer = TrainerSettings(
        data_dir=options.workdir / "trainer",
        labels=[LABEL],
        base_model=options.base_model,
        dev_fraction=0.2,
        patience=0,
        device="cpu",
        training=TrainingConfig(epochs=options.epochs, batch_size=16, max_length=128, stride=32, learning_rate=3e-4),
    )
    specs = [
        ProcessSpec(
            "generator",
            module_argv("synthner_generator"),
            {
                **common,
                **settings_env("SYNTHNER_GENERATOR_", generator),
                "SYNTHNER_GENERATOR_HEALTH_PORT": str(free_port()),
            },
            restart=True,
        )
    ]
    for number in range(1, options.annotators + 1):
        annotator = AnnotatorSettings(
            labels=[LABEL],
            annotator=LexiconSettings(terms={LABEL: list(DISEASES)}),
            producer=f"annotator-{number}",
        )
        specs.append(
            ProcessSpec(
                f"annotator-{number}",
                module_argv("synthner_annotator"),
                {
                    **common,
                    **settings_env("SYNTHNER_ANNOTATOR_", annotator),
                    "SYNTHNER_ANNOTATOR_HEALTH_HOST": "127.0.0.1",
                    "SYNTHNER_ANNOTATOR_HEALTH_PORT": str(free_port()),
                },
                restart=True,
            )
        )
    specs.append(
        ProcessSpec(
            "trainer",
            module_argv("synthner_trainer"),
            {**common, **settings_env("SYNTHNER_TRAINER_", trainer), "SYNTHNER_TRAINER_HEALTH_PORT": str(free_port())},
            restart=True,
        )
    )
    specs.append(
        ProcessSpec(
            "ner-api",
            module_argv("synthner_ner_api"),
            {
                **common,
                "SYNTHNER_NER_API_AUTH_MODE": "api_keys",
                "SYNTHNER_NER_API_API_KEYS_FILE": str(key_file),
                "SYNTHNER_NER_API_MODEL_STORE": str(trainer.models_dir),
                "SYNTHNER_NER_API_LISTEN_FOR_MODELS": "true",
                "SYNTHNER_NER_API_INSTANCE": NER_API_INSTANCE,
                "SYNTHNER_NER_API_HOST": "127.0.0.1",
                "SYNTHNER_NER_API_PORT": str(api_port),
                "SYNTHNER_NER_API_TORCH_THREADS": "1",
            },
            restart=True,
        )
    )
    return [_with_ready_url(spec, api_port) for spec in specs]


def _with_ready_url(spec: ProcessSpec, api_port: int) -> ProcessSpec:
    if spec.name == "ner-api":  # live first; ready only once a model is loaded
        url = f"http://127.0.0.1:{api_port}/livez"
    else:
        port = next(v for k, v in spec.env.items() if k.endswith("_HEALTH_PORT"))
        url = f"http://127.0.0.1:{port}/readyz"
    return ProcessSpec(spec.name, spec.argv, spec.env, url, spec.restart)


def generation_job(options: ChaosOptions) -> GenerationRequested:
    return GenerationRequested(
        job_id=f"chaos-{options.seed}",
        producer="synthner-chaos",
        count=options.notes,
        language="en",
        note_types=["discharge_summary", "progress_note"],
        entity_labels=[LABEL],
        mode="label_conditioned",
        seed=options.seed,
        sampling=SamplingParameters(temperature=0.8, top_p=0.95, max_new_tokens=200),
        prompt=PromptRef(name="clinical_note_brief", version="v1"),
        seed_lexicon=[Mention(label=LABEL, text=d) for d in DISEASES],
    )


# --- durable state ---------------------------------------------------------------------------------------------------


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def planned_note_ids(dedup_db: Path, job_id: str) -> dict[int, str]:
    """Note index -> note id, as the generator recorded each planned note it accepted (its dedup database)."""
    if not dedup_db.is_file():
        return {}
    db = _read_only(dedup_db)
    try:
        rows = db.execute("SELECT owner, note_id FROM notes WHERE owner LIKE ?", (f"{job_id}:%",)).fetchall()
    finally:
        db.close()
    return {int(owner.rsplit(":", 1)[1]): note_id for owner, note_id in rows}


def stored_note_ids(store_db: Path) -> Counter[str]:
    """Each note id in the trainer's dataset store, with how many rows hold it."""
    if not store_db.is_file():
        return Counter()
    db = _read_only(store_db)
    try:
        rows = db.execute("SELECT note_id, COUNT(*) FROM documents GROUP BY note_id").fetchall()
    except sqlite3.OperationalError:  # the trainer has not created its tables yet
        return Counter()
    finally:
        db.close()
    return Counter({note_id: int(count) for note_id, count in rows})


def request_status(store_db: Path, request_id: str) -> tuple[str, str | None] | None:
    if not store_db.is_file():
        return None
    db = _read_only(store_db)
    try:
        row = db.execute("SELECT status, detail FROM training_requests WHERE request_id = ?", (request_id,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return (row[0], row[1]) if row else None


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
        return
    if isinstance(decoded, GenerationRequested) and decoded.job_id == job_id:
        for index in range(decoded.first_index, decoded.first_index + decoded.count):
            found.indices.setdefault(index, f"generation part: {reason}")
    elif isinstance(decoded, GenerationFailed) and decoded.job_id == job_id and decoded.note_index is not None:
        found.indices.setdefault(decoded.note_index, f"GenerationFailed: {decoded.reason[:80]}")
    elif isinstance(decoded, NoteGenerated | DocumentAnnotated | NoteQuarantined):
        found.note_ids.setdefault(decoded.note_id, f"{decoded.type}: {reason}")
    elif isinstance(decoded, AnnotationFailed):
        found.note_ids.setdefault(decoded.note_id, f"AnnotationFailed: {decoded.reason[:80]}")
    else:
        found.other[f"{decoded.type}: {reason}"] += 1


def account(result: ChaosResult, planned: dict[int, str], stored: Counter[str], dead: DeadLetters, notes: int) -> None:
    """Fill the counts: every planned note index is stored, dead-lettered (with a reason) or lost."""
    result.sent = notes
    result.stored = result.dead_lettered = result.lost = result.dead_lettered_but_stored = 0
    result.dead_letter_reasons = Counter()
    for index in range(notes):
        note_id = planned.get(index)
        reason = dead.indices.get(index) or (dead.note_ids.get(note_id) if note_id else None)
        if note_id is not None and note_id in stored:
            result.stored += 1
            if reason is not None:
                result.dead_lettered_but_stored += 1  # a copy died, another got through: accounted once
        elif reason is not None:
            result.dead_lettered += 1
            result.dead_letter_reasons[reason] += 1
        else:
            result.lost += 1
    owned = set(planned.values())
    result.duplicated = sum(count - 1 for count in stored.values() if count > 1) + sum(
        1 for note_id in stored if note_id not in owned
    )


# --- the run ---------------------------------------------------------------------------------------------------------


def write_api_key(folder: Path) -> tuple[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key = new_key()
    key_file = folder / "api-keys"
    key_file.write_text(f"chaos:user:{hash_key(key)}\n", encoding="utf-8")
    return key, key_file


class ChaosMonkey:
    """Kills the supervised processes, one every ``interval_s`` (jittered), each in turn in a seeded random order.

    A victim is killed once it is up again (its health URL answers 200): killing a process still starting would, at
    short intervals, keep a slow starter (the trainer imports torch) from ever working, which tests nothing.
    """

    def __init__(self, supervisor: Supervisor, victims: Mapping[str, str], interval_s: float, seed: int) -> None:
        self.supervisor = supervisor
        self.victims = list(victims)
        self.health_urls = dict(victims)
        self.interval_s = interval_s
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not security
        self.kills: Counter[str] = Counter()
        self.lock = asyncio.Lock()
        """Held while killing; a broker restart holds it to keep kills out of its check."""
        self._round: list[str] = []

    @property
    def each_killed(self) -> bool:
        return all(self.kills[name] > 0 for name in self.victims)

    def kill(self, name: str, why: str = "") -> None:
        pid = self.supervisor.kill(name, signal.SIGKILL)
        self.kills[name] += 1
        print(f"  SIGKILL {name} (pid {pid}){why}", flush=True)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                await asyncio.sleep(self.interval_s * self.rng.uniform(0.5, 1.5))
                if not self._round:
                    self._round = self.rng.sample(self.victims, len(self.victims))
                victim = self._round.pop()
                await self.until_up(client, victim)
                async with self.lock:
                    self.kill(victim)

    async def until_up(self, client: httpx.AsyncClient, name: str, timeout_s: float = 120.0) -> bool:
        """Wait until the process's health URL answers 200; False if it did not within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(self.health_urls[name])).status_code == 200:
                            return True
                    await asyncio.sleep(0.5)  # a health endpoint has no push notification
        except TimeoutError:
            return False


async def _progress_snapshot(
    options: ChaosOptions, topology: Topology, probe: Broker, job_id: str
) -> tuple[int, int, int]:
    """(planned notes stored, messages in the dead-letter queues, messages ready in the work queues): cheap polling;
    the exact accounting comes at the end."""
    planned = set(planned_note_ids(options.workdir / "generator" / "dedup.sqlite3", job_id).values())
    stored = sum(1 for note_id in stored_note_ids(options.workdir / "trainer" / "store.sqlite3") if note_id in planned)
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


async def _wait_for(condition: Callable[[], Any], what: str, timeout_s: float, pause_s: float = 1.0) -> Any:
    """Poll durable state another process writes (SQLite, HTTP) until ``condition()`` is truthy."""
    try:
        async with asyncio.timeout(timeout_s):
            while not (value := condition()):  # noqa: ASYNC110 - state other processes write; no event to await
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
                await _resumed(options, probe, monkey, job, stored)
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


async def _resumed(
    options: ChaosOptions, probe: Broker, monkey: ChaosMonkey, job: GenerationRequested, stored_before: int
) -> None:
    """After a broker restart, with no process killed: every service reports ready again and the store grows (when
    work is left), or :class:`ChaosFailed` names what did not resume."""
    async with httpx.AsyncClient(timeout=5) as client:
        for name in monkey.victims:
            if not await monkey.until_up(client, name, timeout_s=120):
                raise ChaosFailed(f"{name} was not ready within 120 s of the broker restart (it was not killed)")

    def moved() -> bool:
        planned = set(planned_note_ids(options.workdir / "generator" / "dedup.sqlite3", job.job_id).values())
        store = stored_note_ids(options.workdir / "trainer" / "store.sqlite3")
        stored = sum(1 for note_id in store if note_id in planned)
        return stored > stored_before or stored >= options.notes

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
    store_db = options.workdir / "trainer" / "store.sqlite3"
    request = TrainingRequested(
        correlation_id=job.job_id,
        producer="synthner-chaos",
        dataset=DatasetSelection(max_documents=options.train_documents),
        hyperparameters=HyperParameters(epochs=options.epochs),
    )
    await _publish(probe, request)
    print(f"training requested ({options.train_documents} documents at most, {options.epochs:g} epoch)", flush=True)
    request_id = str(request.message_id)

    def running() -> bool:
        status = request_status(store_db, request_id)
        return status is not None and status[0] in ("running", "done", "failed")

    await _wait_for(running, "the trainer starting the training", options.deadline_s)
    if (request_status(store_db, request_id) or ("",))[0] == "running":
        monkey.kill("trainer", " while it trains")

    def finished() -> tuple[str, str | None] | None:
        status = request_status(store_db, request_id)
        return status if status is not None and status[0] in ("done", "failed") else None

    status, detail = await _wait_for(finished, "the training", options.deadline_s, pause_s=2.0)
    if status == "failed" or not (detail or "").startswith("published"):
        raise ChaosFailed(f"training ended {status}: {detail} (see {supervisor.log_path('trainer')})")
    current = ModelRegistry(options.workdir / "trainer" / "models").current()
    result.model_version = current.name if current is not None else None
    print(f"model {result.model_version} published", flush=True)
    monkey.kill("ner-api", " after the model was published")
    result.answered_by = await _ask(api_port, key, result.model_version, options.deadline_s)
    print(f"NER API answered /v1/ner with model {result.answered_by}", flush=True)


async def _publish(probe: Broker, message: Any) -> None:
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


async def run_chaos(options: ChaosOptions) -> ChaosResult:  # noqa: PLR0915 - one run, easier to follow in one piece
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
    key, key_file = write_api_key(options.workdir / "ner-api")
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
            specs = process_specs(options, broker, llm.url, key_file, api_port)
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
                            key=key,
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
    planned = planned_note_ids(options.workdir / "generator" / "dedup.sqlite3", job.job_id)
    stored = stored_note_ids(options.workdir / "trainer" / "store.sqlite3")
    account(result, planned, stored, dead, options.notes)
    for reason, count in dead.other.items():
        result.dead_letter_reasons[f"(not a note) {reason}"] += count
    result.seconds = time.monotonic() - started
    return result


def describe(result: ChaosResult) -> list[str]:
    """Human-readable lines about a finished run (the last line is :meth:`ChaosResult.line`)."""
    lines = [
        f"kills: {dict(sorted(result.kills.items()))}; supervisor restarts: {result.restarts}; "
        f"broker restarts: {result.broker_restarts}",
        f"dead letters by reason: {json.dumps(dict(result.dead_letter_reasons))}",
        f"notes with a dead-lettered copy that was also stored (accounted once, as stored): "
        f"{result.dead_lettered_but_stored}",
        f"model published: {result.model_version}; NER API answered with: {result.answered_by}",
    ]
    if result.failure:
        lines.append(f"run stopped early: {result.failure} (notes still on their way count as lost below)")
    return lines
