"""Operator control of a running deployment over the broker: dead-letter and quarantine queues, training requests.

What a held message shows is read from its AMQP properties and headers, never from its body (bodies carry notes):
the message id, its type, its job (correlation id), the queue it was dead-lettered from and the reason the consumer
put into ``x-synthner-dead-letter-reason`` (or the broker's ``x-death`` record when the broker dead-lettered it, e.g.
at the delivery limit). The one exception is a quarantined note, whose leak-check reasons (detector names and counts,
never matched text, by contract) are read from the parsed body; its text is never shown.

Every move of a message is a confirmed copy first and an ack of the original after, so a failure at any point leaves
the message where it was (at worst twice, which the idempotent consumers absorb):

- ``peek`` copies each message it shows to the back of its queue, then acks the original. It never hands a message
  back with a nack or a closed channel: RabbitMQ 4.x quorum queues count such returns toward a default delivery
  limit of 20 and drop a message past it (a DLQ has no dead-letter exchange of its own).
- ``replay`` copies a message to the work queue its ``x-synthner-queue`` header (or the broker's ``x-death``) names,
  without the dead-letter headers, so it gets its retries anew, then acks it in the DLQ.
- ``purge`` deletes the ready messages of one queue (all, or those picked by id or reason).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelClosed
from pydantic import ValidationError

from synthner_shared.contracts import NoteQuarantined
from synthner_shared.contracts.registry import REGISTRY
from synthner_shared.held_queues import HeldQueuePolicy
from synthner_shared.messaging import (
    LAST_ERROR_HEADER,
    NER_API,
    QUARANTINE,
    QUEUE_HEADER,
    REASON_HEADER,
    RETRIES_HEADER,
    BrokerRefused,
    BrokerSettings,
    BrokerUnavailable,
    PublishError,
    Topology,
)
from synthner_shared.messaging.consumer import bounded_reason, persistent_copy, safe_id
from synthner_shared.messaging.publisher import send_confirmed
from synthner_shared.messaging.topology import SHARED_ROLES, QueueRole

REPLAYED_HEADER = "x-synthner-replayed"
"""How often an operator replayed the message from a dead-letter queue (kept across replays)."""
BROKER_DEATH_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)
DROPPED_ON_REPLAY = (REASON_HEADER, QUEUE_HEADER, RETRIES_HEADER, LAST_ERROR_HEADER, *BROKER_DEATH_HEADERS)
"""Headers a replayed copy goes without: it starts in its work queue as a new delivery, with its retries anew."""
_KNOWN_TYPES = frozenset(name for name, _ in REGISTRY)
DEAD_LETTER_ROLES: tuple[QueueRole, ...] = (*SHARED_ROLES, NER_API)
"""Every role has a dead-letter queue ``<ns>.<role>.dlq``."""
MAX_HANDED_BACK = 1_000
"""A pass over a full queue holds at most this many refused messages unacked before it stops."""


class OperationError(Exception):
    """An operation that cannot be done as asked (no such queue, a replay target outside the namespace, ...)."""


@dataclass(frozen=True)
class HeldMessage:
    """What an operator may see of a message held in a dead-letter or quarantine queue: no body text."""

    message_id: str
    type: str
    correlation_id: str
    source_queue: str | None
    reason: str
    size: int
    replayed: int = 0

    def line(self) -> str:
        source = f" from {self.source_queue}" if self.source_queue else ""
        again = f" (replayed {self.replayed}x before)" if self.replayed else ""
        where = f"{self.message_id}  {self.type}  job {self.correlation_id}  {self.size} bytes{source}{again}"
        return f"{where}: {self.reason}"


@dataclass
class SweepReport:
    """What a pass over a queue did: messages looked at, moved (replayed), kept, dropped, and the ones that stayed
    because their move was refused (with why)."""

    seen: int = 0
    moved: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    dropped: int = 0
    refused: list[str] = field(default_factory=list)
    shown: list[HeldMessage] = field(default_factory=list)
    handed_back: int = 0
    """Kept messages whose copy the full queue refused: handed back to its head instead (RabbitMQ 4.0-4.2 count that
    as a delivery toward a quorum queue's default delivery limit of 20)."""
    stopped: str | None = None


# --- reading what a message may show ---------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _plain(value: str | None, limit: int = 200) -> str:
    """A sender-chosen property (job id) for display: printable, bounded."""
    if value is None:
        return "<none>"
    return bounded_reason(value, limit)


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[-1], Mapping):
        # x-death is newest first; the oldest entry is where the message first died
        return deaths[-1]
    return None


def source_queue(headers: Mapping[str, Any]) -> str | None:
    """The work queue a dead-lettered message came from: the consumer's ``x-synthner-queue`` header, else the queue
    of the broker's first ``x-death`` record (dead-lettered by the broker, e.g. at the delivery limit)."""
    named = _text(headers.get(QUEUE_HEADER))
    if named:
        return named
    death = _first_death(headers)
    return _text(death.get("queue")) if death is not None else _text(headers.get("x-first-death-queue"))


def dead_letter_reason(headers: Mapping[str, Any]) -> str:
    """Why a message was dead-lettered, from its headers only."""
    reason = _text(headers.get(REASON_HEADER))
    if reason:
        return bounded_reason(reason)
    death = _first_death(headers)
    broker_reason = _text(death.get("reason")) if death is not None else _text(headers.get("x-first-death-reason"))
    if broker_reason is None:
        return "no reason recorded"
    count = death.get("count") if death is not None else None
    explained = {
        "delivery_limit": "its consumers failed to settle it (crashed or handed it back) until the delivery limit",
        "rejected": "rejected by a consumer",
        "expired": "expired",
        "maxlen": "dropped at the queue's length limit",
    }.get(broker_reason, broker_reason)
    times = f", {count} time(s)" if isinstance(count, int) else ""
    return bounded_reason(f"dead-lettered by the broker: {explained}{times}")


def held_message(message: AbstractIncomingMessage, reason: str | None = None) -> HeldMessage:
    headers = message.headers or {}
    type_name = message.type if message.type in _KNOWN_TYPES else f"<unknown type {safe_id(message.type)}>"
    replayed = headers.get(REPLAYED_HEADER, 0)
    return HeldMessage(
        message_id=safe_id(message.message_id),
        type=type_name,
        correlation_id=_plain(message.correlation_id),
        source_queue=source_queue(headers),
        reason=reason if reason is not None else dead_letter_reason(headers),
        size=len(message.body),
        replayed=replayed if isinstance(replayed, int) else 0,
    )


def quarantine_reason(message: AbstractIncomingMessage) -> str:
    """A quarantined note's leak-check reasons (detector names and counts by contract); never its text."""
    try:
        note = NoteQuarantined.model_validate_json(message.body)
    except ValidationError:
        return "not a valid NoteQuarantined (its reasons cannot be read)"
    reasons = "; ".join(note.leak_check.reasons) or "no reason given"
    overlap = note.leak_check.max_ngram_overlap
    detail = f", n-gram overlap {overlap:.2f}" if overlap is not None else ""
    return bounded_reason(f"note {note.note_index} ({note.note_id[:12]}){detail}: {reasons}")


# --- picking and copying ---------------------------------------------------------------------------------------------

Action = Literal["move", "keep", "drop"]


@dataclass(frozen=True)
class Selection:
    """Which messages an operation applies to: all, or those whose id is listed / whose reason contains a text."""

    ids: Collection[str] = ()
    reason_contains: str | None = None

    @property
    def everything(self) -> bool:
        return not self.ids and self.reason_contains is None

    def picks(self, message: AbstractIncomingMessage) -> bool:
        if self.ids and message.message_id not in self.ids:
            return False
        if self.reason_contains is not None:
            return self.reason_contains.lower() in dead_letter_reason(message.headers or {}).lower()
        return True


def kept_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The copy that goes to the back of its own queue: everything as it was, but the broker's delivery count (a new
    message starts at 0)."""
    return persistent_copy(message, {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"})


def replay_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The copy that goes back to the work queue: no dead-letter headers, the replay counted."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in DROPPED_ON_REPLAY}
    replayed = headers.get(REPLAYED_HEADER, 0)
    headers[REPLAYED_HEADER] = (replayed if isinstance(replayed, int) else 0) + 1
    return persistent_copy(message, headers)


# --- the broker side -------------------------------------------------------------------------------------------------


class QueueOperations:
    """Operations on the held messages of one namespace, on one connection (use ``async with``)."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> QueueOperations:
        self._connection = await aio_pika.connect(
            self.settings.url.get_secret_value(),
            timeout=self.settings.connect_timeout_s,
            client_properties={"connection_name": "synthner-ops"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    @asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        assert self._connection is not None, "use QueueOperations in 'async with'"
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    # names

    def dead_letter_queue(self, role_name: str) -> str:
        for role in DEAD_LETTER_ROLES:
            if role.name == role_name:
                return self.topology.dead_letter_queue_name(role)
        known = ", ".join(role.name for role in DEAD_LETTER_ROLES)
        raise OperationError(f"no role {role_name!r}; the dead-letter queues are those of: {known}")

    @property
    def quarantine_queue(self) -> str:
        return self.topology.queue_name(QUARANTINE)

    def held_queues(self) -> list[str]:
        """Every queue where messages wait for an operator: each role's DLQ and the quarantine."""
        return [*(self.topology.dead_letter_queue_name(role) for role in DEAD_LETTER_ROLES), self.quarantine_queue]

    async def _queue(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        try:
            return await channel.declare_queue(name, passive=True)
        except ChannelClosed as exc:
            raise OperationError(f"no queue {name} on the broker (namespace {self.settings.namespace!r})") from exc

    # operations

    async def count(self, names: list[str]) -> dict[str, int | None]:
        """Ready messages per queue; None for a queue that does not exist (yet)."""
        counts: dict[str, int | None] = {}
        for name in names:
            async with self._channel() as channel:
                try:
                    queue = await self._queue(channel, name)
                except OperationError:
                    counts[name] = None
                    continue
                counts[name] = queue.declaration_result.message_count
        return counts

    async def peek(
        self, name: str, limit: int, describe: Callable[[AbstractIncomingMessage], str] | None = None
    ) -> SweepReport:
        """The first ``limit`` messages of a queue, as :class:`HeldMessage` (no body); each goes to the back of the
        queue (a confirmed copy, then the original is acked)."""
        return await self._sweep(name, lambda _: "keep", limit=limit, describe=describe)

    async def replay(self, name: str, selection: Selection) -> SweepReport:
        """Move the selected messages of a dead-letter queue back to the work queues they came from."""
        return await self._sweep(name, lambda m: "move" if selection.picks(m) else "keep")

    async def purge(self, name: str, selection: Selection) -> SweepReport:
        """Delete the selected ready messages of a queue (all of them at once when nothing is selected)."""
        if selection.everything:
            async with self._channel() as channel:
                queue = await self._queue(channel, name)
                result = await queue.purge()
                return SweepReport(seen=result.message_count or 0, dropped=result.message_count or 0)
        return await self._sweep(name, lambda m: "drop" if selection.picks(m) else "keep")

    def _replay_target(self, message: AbstractIncomingMessage) -> str:
        target = source_queue(message.headers or {})
        if target is None:
            raise OperationError("it names no work queue (no x-synthner-queue header, no x-death record)")
        prefix = f"{self.settings.namespace}."
        held = target.endswith(".dlq") or ".retry." in target or target == self.quarantine_queue
        if not target.startswith(prefix) or held:
            raise OperationError(f"its source {safe_id(target)} is not a work queue of namespace {prefix[:-1]!r}")
        return target

    async def _sweep(
        self,
        name: str,
        decide: Callable[[AbstractIncomingMessage], Action],
        limit: int | None = None,
        describe: Callable[[AbstractIncomingMessage], str] | None = None,
    ) -> SweepReport:
        """One pass over the messages ready in a queue now (not over those that arrive or are put back meanwhile):
        each is moved, kept (copied to the back) or dropped, and acked only after its copy is confirmed.

        A queue at its bound refuses the copy of a kept message: that one stays unacked and is handed back (to the
        head of the queue) when the pass ends; after ``MAX_HANDED_BACK`` of them the pass stops."""
        report = SweepReport()
        handed_back: list[AbstractIncomingMessage] = []
        async with self._channel() as channel:
            queue = await self._queue(channel, name)
            ready = queue.declaration_result.message_count or 0
            total = ready if limit is None else min(ready, limit)
            exchange = channel.default_exchange
            try:
                for _ in range(total):
                    message = await queue.get(no_ack=False, fail=False)
                    if message is None:
                        break
                    report.seen += 1
                    report.shown.append(held_message(message, describe(message) if describe else None))
                    if await self._settle(exchange, name, message, decide(message), report):
                        continue
                    handed_back.append(message)  # the queue is full: the original stays, unacked
                    if len(handed_back) >= MAX_HANDED_BACK:
                        report.stopped = (
                            f"{name} is at its bound and refused {len(handed_back)} copies; the pass stopped "
                            "(replay or purge without a selection empties it without copies)"
                        )
                        break
            finally:
                for message in handed_back:
                    if not channel.is_closed:
                        await message.nack(requeue=True)
                report.handed_back = len(handed_back)
        return report

    async def _settle(
        self,
        exchange: AbstractExchange,
        name: str,
        message: AbstractIncomingMessage,
        action: Action,
        report: SweepReport,
    ) -> bool:
        """Move, keep or drop one message, then ack it; False (and no ack) when its queue, full, refused the copy."""
        timeout = self.settings.publish_timeout_s
        if action == "move":
            try:
                target = self._replay_target(message)
                await send_confirmed(exchange, replay_copy(message), target, timeout)
            except (OperationError, PublishError) as exc:
                report.refused.append(f"{safe_id(message.message_id)} stays: {exc}")
                action = "keep"
            else:
                report.moved[target] = report.moved.get(target, 0) + 1
        if action == "keep":
            try:
                await send_confirmed(exchange, kept_copy(message), name, timeout)
            except BrokerRefused:
                return False
            except BrokerUnavailable as exc:  # unacked, the message goes back when the channel is gone
                raise OperationError(
                    f"the broker stopped answering while {safe_id(message.message_id)} was put back at the end of "
                    f"{name} ({exc}); what was not done stays in the queue"
                ) from exc
            report.kept += 1
        elif action == "drop":
            report.dropped += 1
        await message.ack()
        return True


# --- the bound on held queues, set through the management API ---------------------------------------------------


@dataclass(frozen=True)
class ManagementEndpoint:
    """RabbitMQ's management HTTP API: ``http(s)://user:password@host:15672[/vhost]`` (the form of the KEDA secret's
    ``host``; the user needs the ``policymaker`` or ``administrator`` tag to set policies)."""

    base: str
    username: str
    password: str
    vhost: str | None

    @classmethod
    def parse(cls, url: str) -> ManagementEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise OperationError("the management URL must be http(s)://user:password@host:port[/vhost]")
        if not parts.username or parts.password is None:
            raise OperationError("the management URL must carry a user and password (user:password@host)")
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        vhost = unquote(parts.path.strip("/")) or None
        return cls(f"{parts.scheme}://{netloc}", unquote(parts.username), unquote(parts.password), vhost)

    def put(self, path: str, body: Mapping[str, object], timeout_s: float = 30.0) -> None:
        credentials = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in parse()
            self.base + path,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", errors="replace")
            raise OperationError(f"{self.base} answered {exc.code} to PUT {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise OperationError(f"management API at {self.base} not reachable: {exc}") from None


def apply_policy(policy: HeldQueuePolicy, endpoint: ManagementEndpoint, vhost: str) -> None:
    """Set (or replace) the policy in ``vhost`` through the management API; it applies to existing queues at once."""
    body = {key: value for key, value in policy.definition(vhost).items() if key not in {"vhost", "name"}}
    endpoint.put(f"/api/policies/{quote(vhost, safe='')}/{quote(policy.name, safe='')}", body)
