"""A single-writer lease held on the broker: an exclusive queue on a connection of its own.

RabbitMQ lets one connection at a time declare an exclusive queue of a given name; any other connection that tries is
refused (``RESOURCE_LOCKED``), and the broker deletes the queue as soon as its connection closes: when the holder
stops, crashes (the kernel closes its socket) or goes silent (missed heartbeats). So whoever declared
``<ns>.lease.<name>`` holds the lease; everyone else waits and tries again.

It guards work that must have one writer, such as the trainer's (one dataset store, one model registry, one training
at a time; two trainers would split the documents between two stores, train one request twice and remove each other's
half-written model folders). The lease queue is a new, separate queue: nothing about the role's work queue changes, so
an existing deployment needs no migration.

The holder learns of a loss through :attr:`BrokerLease.lost` (its connection closed: a broker restart, a network cut);
it may try :meth:`BrokerLease.reacquire`, which gives up at once when another holder has the lease by then. Like any
lease without fencing tokens it cannot stop a holder that is cut off from the broker but still working: such a holder
notices the loss within the heartbeat interval and must stop its work then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import ChannelAccessRefused, ChannelLockedResource

from synthner_shared.messaging.errors import BrokerUnavailable
from synthner_shared.messaging.settings import BrokerSettings

log = logging.getLogger(__name__)


class LeaseHeldElsewhere(Exception):
    """Another connection holds the lease."""


class LeaseRefused(Exception):
    """The broker user may not declare the lease queue (its configure permission does not cover it): a configuration
    error, not something to wait out."""


class BrokerLease:
    """``<ns>.lease.<name>``, held by at most one process at a time; see the module docstring.

    ``await lease.acquire(until=stop_requested)`` waits until this process holds it (False if ``until`` came first);
    ``lease.lost`` is set when the holding connection closes; ``await lease.release()`` gives it up.
    """

    def __init__(self, settings: BrokerSettings, name: str, holder: str, retry_interval_s: float | None = None) -> None:
        self._settings = settings
        self.name = name
        self.holder = holder
        self.queue_name = f"{settings.namespace}.lease.{name}"
        self._retry_interval_s = settings.reconnect_interval_s if retry_interval_s is None else retry_interval_s
        self._connection: AbstractConnection | None = None
        self.lost = asyncio.Event()
        """Set when the connection holding the lease closed without :meth:`release` (the broker dropped the lease)."""
        self.waiting = asyncio.Event()
        """Set once :meth:`acquire` found the lease held by another connection (this replica waits for it)."""
        self.acquisitions = 0
        """How many times this process took the lease (a re-acquisition after a broker restart counts again)."""
        self._acquired = asyncio.Event()

    @property
    def held(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and not self.lost.is_set()

    async def _try_once(self) -> None:
        """Declare the lease queue on a new connection; raises :class:`LeaseHeldElsewhere` or a connection error."""
        connection = await aio_pika.connect(
            self._settings.url.get_secret_value(),
            timeout=self._settings.connect_timeout_s,
            client_properties={"connection_name": f"{self.holder} (lease {self.name})"},
        )
        try:
            channel = await connection.channel()
            await channel.declare_queue(
                self.queue_name,
                durable=False,
                exclusive=True,
                arguments={"x-queue-type": "classic"},  # exclusive queues are classic, whatever the vhost's default
            )
        except ChannelLockedResource:
            await connection.close()
            raise LeaseHeldElsewhere(f"lease {self.queue_name} is held by another connection") from None
        except ChannelAccessRefused:
            await connection.close()
            raise LeaseRefused(
                f"the broker user may not declare the lease queue {self.queue_name}: give it the configure permission"
            ) from None
        except BaseException:
            await connection.close()
            raise
        self.lost.clear()
        self._connection = connection
        connection.close_callbacks.add(self._on_close)
        self.acquisitions += 1
        acquired, self._acquired = self._acquired, asyncio.Event()
        acquired.set()

    async def wait_acquisitions(self, count: int) -> None:
        """Return once this process has taken the lease ``count`` times in all."""
        while self.acquisitions < count:
            await self._acquired.wait()

    def _on_close(self, _sender: Any, _exc: BaseException | None = None) -> None:
        if self._connection is not None:
            self._connection = None
            self.lost.set()

    async def acquire(self, until: Callable[[], Awaitable[Any]] | None = None) -> bool:
        """Wait until this process holds the lease: True; False when ``until`` (e.g. a stop request) returns first.

        Waits as long as another replica holds it; raises :class:`BrokerUnavailable` when the broker stays unreachable
        for ``connect_timeout_s`` (as a service's first connection does) and :class:`LeaseRefused` when the broker user
        may not declare the lease queue."""
        loop = asyncio.get_running_loop()
        stop = asyncio.ensure_future(until()) if until is not None else None
        unreachable_since: float | None = None
        try:
            while True:
                try:
                    await self._try_once()
                    log.info("holding lease %s as %s", self.queue_name, self.holder)
                    return True
                except LeaseHeldElsewhere:
                    unreachable_since = None
                    if not self.waiting.is_set():
                        log.warning("lease %s is held by another replica; waiting for it", self.queue_name)
                        self.waiting.set()
                except (*CONNECTION_EXCEPTIONS, OSError, TimeoutError) as exc:
                    unreachable_since = loop.time() if unreachable_since is None else unreachable_since
                    if loop.time() - unreachable_since >= self._settings.connect_timeout_s:
                        raise BrokerUnavailable(
                            f"lease {self.queue_name}: broker {self._settings.redacted_url} not reachable within "
                            f"{self._settings.connect_timeout_s:g}s: {type(exc).__name__}"
                        ) from None
                    log.warning("lease %s: broker not reachable (%s); retrying", self.queue_name, type(exc).__name__)
                if stop is None:
                    await asyncio.sleep(self._retry_interval_s)
                else:
                    done, _ = await asyncio.wait({stop}, timeout=self._retry_interval_s)
                    if done:
                        return False
        finally:
            if stop is not None:
                stop.cancel()

    async def reacquire(self, timeout_s: float) -> bool:
        """After :attr:`lost`: take the lease again if nobody else has it. False when another holder has it (at once) or
        the broker stays unreachable for ``timeout_s``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                await self._try_once()
                log.warning("lease %s taken again after its connection closed", self.queue_name)
                return True
            except LeaseHeldElsewhere:
                return False
            except (*CONNECTION_EXCEPTIONS, OSError, TimeoutError) as exc:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return False
                log.info("lease %s: broker not reachable yet (%s)", self.queue_name, type(exc).__name__)
                await asyncio.sleep(min(self._retry_interval_s, remaining))

    async def release(self) -> None:
        """Give the lease up (closing its connection makes the broker delete the queue)."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()
