"""Two trainers on the real RabbitMQ: only the holder of the trainer lease consumes and trains; the other waits, not
consuming, and takes over when the first goes away (stopped, or killed)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from synthner_shared.broker_node import PrivateRabbitMQ
from synthner_shared.contracts import DocumentAnnotated
from synthner_shared.messaging import BrokerSettings
from synthner_shared.testing import BrokerProbe, publish_once, running_app, sample_annotated
from synthner_trainer.app import TrainerApp
from synthner_trainer.service import TrainerService
from synthner_trainer.settings import TrainerSettings

pytestmark = pytest.mark.rabbitmq


def settings_for(folder: Path) -> TrainerSettings:
    return TrainerSettings(data_dir=folder)


def docs(*seeds: int) -> list[DocumentAnnotated]:
    return [sample_annotated(seed=s, target_chars=300, spans=3) for s in seeds]


class Stored:
    """An event per document a trainer stored."""

    def __init__(self, trainer: TrainerService) -> None:
        self.note_ids: asyncio.Queue[str] = asyncio.Queue()
        original = trainer.store_document

        async def recording(message: DocumentAnnotated) -> None:
            await original(message)
            await self.note_ids.put(message.note_id)

        trainer.store_document = recording  # type: ignore[method-assign]

    async def next(self, timeout_s: float = 20.0) -> str:
        return await asyncio.wait_for(self.note_ids.get(), timeout_s)


@asynccontextmanager
async def waiting_trainer(trainer: TrainerService) -> AsyncIterator[asyncio.Task[bool]]:
    """Run a trainer that is expected to wait for the lease first; stop it (and close its store) after the block."""
    run = asyncio.create_task(trainer.run(install_signal_handlers=False))
    try:
        yield run
    finally:
        trainer.request_stop()
        try:
            await asyncio.wait_for(run, 30)
        finally:
            trainer.close()


async def test_a_second_trainer_waits_for_the_lease_and_takes_over_when_the_first_stops(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    first = TrainerService(settings_for(tmp_path / "first"), broker_settings)
    second = TrainerService(settings_for(tmp_path / "second"), broker_settings)
    first_stored, second_stored = Stored(first), Stored(second)
    async with waiting_trainer(first) as first_run:
        await asyncio.wait_for(first.service.wait_started(), 30)
        assert first.lease.held
        async with waiting_trainer(second) as second_run:
            await asyncio.wait_for(second.lease.waiting.wait(), 30)
            before = docs(1, 2, 3)
            await publish_once(broker_settings, *before)
            assert sorted([await first_stored.next() for _ in before]) == sorted(d.note_id for d in before)
            assert second.service.runners == []  # the waiting trainer consumes nothing
            assert not second.service.health().ready
            assert first.store.count() == 3

            first.request_stop()
            assert await asyncio.wait_for(first_run, 30) is True
            await asyncio.wait_for(second.service.wait_started(), 30)
            assert second.lease.held
            after = docs(4)
            await publish_once(broker_settings, *after)
            assert await second_stored.next() == after[0].note_id
            assert second.store.count() == 1
            assert first.store.count() == 3  # the first trainer handled nothing after it stopped
            assert not second_run.done()
        assert await second_run is True
    assert second_stored.note_ids.empty()
    assert first_stored.note_ids.empty()


async def test_a_trainer_asked_to_stop_while_waiting_for_the_lease_returns_without_consuming(
    tmp_path: Path, broker_settings: BrokerSettings
) -> None:
    first = TrainerService(settings_for(tmp_path / "first"), broker_settings)
    second = TrainerService(settings_for(tmp_path / "second"), broker_settings)
    async with running_app(TrainerApp(first, health_address=None)):
        async with waiting_trainer(second) as second_run:
            await asyncio.wait_for(second.lease.waiting.wait(), 30)
        assert second_run.result() is True
        assert second.service.runners == []
        assert first.lease.held


class TrainerProcess:
    """``python -m synthner_trainer`` as deployed, configured through the environment; its log lines are collected (so
    its stderr never fills up) and :attr:`holding` is set once it logged that it holds the lease."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.holding = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, folder: Path, broker_settings: BrokerSettings) -> TrainerProcess:
        env = {
            **os.environ,
            "AMQP_URL": broker_settings.url.get_secret_value(),
            "SYNTHNER_BROKER_NAMESPACE": broker_settings.namespace,
            # The queues' arguments as the test declared them (a redeclaration with others fails).
            "SYNTHNER_BROKER_DELIVERY_LIMIT": str(broker_settings.delivery_limit),
            "SYNTHNER_BROKER_RETRY_DELAYS_MS": json.dumps(list(broker_settings.retry_delays_ms)),
            "SYNTHNER_TRAINER_DATA_DIR": str(folder),
            "SYNTHNER_TRAINER_DEVICE": "cpu",
            "SYNTHNER_LOG_LEVEL": "INFO",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "synthner_trainer",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := (await self.process.stderr.readline()).decode("utf-8", "replace"):
            self.lines.append(line.rstrip())
            if "holding lease" in line:
                self.holding.set()

    async def wait_holding(self, timeout_s: float = 120.0) -> None:
        await asyncio.wait({self._reader, asyncio.ensure_future(self.holding.wait())}, timeout=timeout_s)
        assert self.holding.is_set(), f"the trainer process did not take the lease: {self.lines[-20:]}"

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)  # no clean-up: the broker drops the lease when its socket closes
        await asyncio.wait_for(self.process.wait(), 30)
        await asyncio.wait_for(self._reader, 30)


@pytest.mark.slow  # starts the trainer as a process of its own (its imports take most of the time)
async def test_a_waiting_trainer_takes_over_when_the_holder_is_killed(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    holder = await TrainerProcess.start(tmp_path / "holder", broker_settings)
    try:
        await holder.wait_holding()
        successor = TrainerService(settings_for(tmp_path / "successor"), broker_settings)
        stored = Stored(successor)
        async with waiting_trainer(successor):
            await asyncio.wait_for(successor.lease.waiting.wait(), 30)
            assert successor.service.runners == []
            await holder.kill()
            await asyncio.wait_for(successor.service.wait_started(), 60)
            after = docs(7)
            await publish_once(broker_settings, *after)
            assert await stored.next() == after[0].note_id
    except BaseException:
        print("\n".join(holder.lines))
        raise
    finally:
        await holder.kill()


@pytest.mark.broker_restart
async def test_the_holder_keeps_the_lease_and_its_work_across_a_broker_restart(
    tmp_path: Path, broker_settings: BrokerSettings, private_rabbitmq: PrivateRabbitMQ
) -> None:
    """A broker restart closes the lease's connection; nobody else holds the lease when the broker is back, so the
    holder takes it again and goes on (it does not exit, which the chaos run would count as a failure)."""
    settings = broker_settings.model_copy(update={"url": SecretStr(private_rabbitmq.url), "connect_timeout_s": 180.0})
    trainer = TrainerService(settings_for(tmp_path / "trainer"), settings)
    stored = Stored(trainer)
    async with running_app(TrainerApp(trainer, health_address=None)) as app:
        await publish_once(settings, *docs(1))
        await stored.next()
        await private_rabbitmq.restart()
        await asyncio.wait_for(trainer.lease.wait_acquisitions(2), 180)
        after = docs(2)
        await publish_once(settings, *after)
        assert await stored.next(timeout_s=120) == after[0].note_id
        assert trainer.lease.held
        assert app.health().ready
        assert trainer.store.count() == 2
