"""One broker user per service, allowed to publish only its own message types.

Each service connects as its own RabbitMQ user (its own ``AMQP_URL``). What a user may do, in RabbitMQ's terms:

- **configure** every queue and exchange of the namespace: each service declares the shared topology at start-up
  (:meth:`~synthner_shared.messaging.topology.Topology.declare_shared`), and a non-passive declare needs it;
- **write** the namespace's queues (a binding needs write on the queue), its topic exchange, its dead-letter exchange
  (the consumer runner dead-letters poison messages there) and its retry exchange ``<ns>.retry`` (the runner parks a
  message in its retry queue through it; declaring a retry queue, which dead-letters back through it, needs it too).
  Not the default exchange: only the operator's user may write it (``synthner ops dlq replay`` moves a dead letter
  back to the work queue its header names, and puts a kept one back at the end of the queue it swept — any held or
  work queue of the namespace, by name);
- **read** every queue and exchange of the namespace: a binding needs read on the exchange, consuming needs it on the
  queue, and declaring a queue with a dead-letter exchange needs read on the queue (and write on that exchange) — and
  every service declares every shared queue, with its dead-letter exchange, at start-up;
- **topic permissions** on the topic exchange: *write* only the routing keys of the message types it publishes (the
  routing key is the message type, e.g. ``note.generated``), *read* every key (``declare_shared`` binds them all);
  on the retry exchange (a topic exchange too, routing by queue name): *write* only the names of its own role's
  retry queues, *read* every key.

So the NER API's user is refused when it publishes ``NoteGenerated``, and when it puts a message into the annotator's
queue by name: the broker closes the channel with ACCESS_REFUSED. What topic permissions cannot cover: the
dead-letter exchange ``<ns>.dlx`` is a direct exchange (and an exchange's type cannot change on a redeclare), so any
service's user could put a message into another role's dead-letter queue — held for a person, never consumed
automatically (docs/deploy.md, "Broker users").

The deployment files do not hold this table: ``deploy/rabbitmq/definitions.json`` (RabbitMQ's definitions format)
does, and the dev manifests, compose and the tests load that file. :func:`definitions` renders it from the code here,
so a new message type or consumer shows up as a difference (``tests/deploy/test_broker_users.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthner_shared.contracts import Envelope
from synthner_shared.contracts import messages as m
from synthner_shared.held_queues import HeldQueuePolicy
from synthner_shared.messaging.topology import (
    ANNOTATOR,
    GENERATOR,
    JOB_PROGRESS,
    NER_API,
    TRAINER,
    QueueRole,
    Topology,
)

DEFAULT_NAMESPACE = "synthner"
DEFAULT_VHOST = "synthner"
DEFINITIONS_FILE = Path("deploy/rabbitmq/definitions.json")
"""Where the definitions live, relative to the repository root."""


@dataclass(frozen=True)
class ServiceUser:
    """A service's broker user: the roles whose queues it consumes and the message types it publishes."""

    name: str
    consumes: tuple[QueueRole, ...]
    publishes: tuple[type[Envelope], ...]

    @property
    def routing_keys(self) -> tuple[str, ...]:
        return tuple(sorted({message.routing_key for message in self.publishes}))


SERVICE_USERS: tuple[ServiceUser, ...] = (
    ServiceUser(
        "synthner-generator",
        (GENERATOR,),
        # A large job is split into parts, each re-published as a GenerationRequested.
        (m.GenerationRequested, m.NoteGenerated, m.NoteQuarantined, m.GenerationFailed, m.GenerationProgress),
    ),
    ServiceUser("synthner-tracker", (JOB_PROGRESS,), ()),
    ServiceUser("synthner-annotator", (ANNOTATOR,), (m.DocumentAnnotated, m.AnnotationFailed)),
    ServiceUser(
        "synthner-trainer",
        (TRAINER,),
        # TrainingRequested: the trainer's own automatic training after enough new documents.
        (m.ModelPublished, m.ModelRolledBack, m.GeneratorAdapted, m.TrainingRequested),
    ),
    # The admin rollback endpoints ask the trainer (the model store's one writer) to roll back or release the pin.
    ServiceUser("synthner-ner-api", (NER_API,), (m.ModelRollbackRequested, m.ModelPinReleaseRequested)),
    # The CLI of an operator: the commands, and the dead-letter and quarantine queues it inspects and replays.
    ServiceUser(
        "synthner-operator",
        (),
        (
            m.GenerationRequested,
            m.TrainingRequested,
            m.AdaptationRequested,
            m.ModelRollbackRequested,
            m.ModelPinReleaseRequested,
        ),
    ),
)


def user_for(name: str) -> ServiceUser:
    """The user called ``name`` (``synthner-annotator`` or just ``annotator``)."""
    for user in SERVICE_USERS:
        if name in (user.name, user.name.removeprefix("synthner-")):
            return user
    raise KeyError(f"no broker user {name!r} (known: {[u.name for u in SERVICE_USERS]})")


def _alternatives(names: list[str]) -> str:
    return "|".join(names)


def _escape(name: str) -> str:
    """A name as a literal in a RabbitMQ (PCRE) regex; '-' needs no escape outside a class."""
    return re.escape(name).replace(r"\-", "-")


OPERATOR = "synthner-operator"
"""The one user that may write the default exchange (its sweeps move messages between queues by name)."""

NO_KEY = "(?!)"
"""A topic-permission regex that matches no routing key at all."""


def permissions(user: ServiceUser, namespace: str = DEFAULT_NAMESPACE) -> dict[str, str]:
    """The ``configure``, ``write`` and ``read`` regexes of ``user`` in the namespace's virtual host: the same for
    every service (what tells them apart is the topic permissions); the operator may write the default exchange too."""
    ns = _escape(namespace)
    write = rf"^{ns}(\..+)?$"
    if user.name == OPERATOR:
        write += r"|^amq\.default$"
    return {"configure": rf"^{ns}(\..+)?$", "write": write, "read": rf"^{ns}(\..+)?$"}


def retry_queue_pattern(role: QueueRole, namespace: str = DEFAULT_NAMESPACE) -> str:
    """A regex of the names of ``role``'s retry queues (``Topology.retry_queue_name``), every replica's for a role
    with a queue per instance."""
    queue = _escape(f"{namespace}.{role.name}") + (r"\..+" if role.per_instance else "")
    return rf"{queue}\.retry\.[0-9]+ms"


def topic_permissions(user: ServiceUser, namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, str]]:
    """The topic permissions of ``user``: on the namespace's topic exchange ``write`` its own routing keys only; on
    the retry exchange (routing by queue name) ``write`` the names of its own role's retry queues only."""
    keys = [_escape(key) for key in user.routing_keys]
    retry_queues = [retry_queue_pattern(role, namespace) for role in user.consumes]
    return [
        {"exchange": namespace, "write": _only(keys), "read": ".*"},
        {"exchange": Topology(namespace, 1, ()).retry_exchange, "write": _only(retry_queues), "read": ".*"},
    ]


def _only(patterns: list[str]) -> str:
    # NO_KEY for a user that publishes nothing there (the tracker on the topic exchange, the operator on retries).
    return rf"^({_alternatives(patterns)})$" if patterns else NO_KEY


def definitions(namespace: str = DEFAULT_NAMESPACE, vhost: str = DEFAULT_VHOST) -> dict[str, Any]:
    """RabbitMQ definitions (``rabbitmqctl import_definitions``) of the virtual host and every service's user.

    The users have no password (an empty hash refuses every login) until one is set with ``rabbitmqctl
    change_password``: secrets stay out of the file."""
    users = sorted(SERVICE_USERS, key=lambda u: u.name)
    return {
        "vhosts": [{"name": vhost}],
        # The bound on the dead-letter and quarantine queues (synthner_shared.held_queues; docs/deploy.md).
        "policies": [HeldQueuePolicy(namespace).definition(vhost)],
        "users": [
            {"name": u.name, "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
            for u in users
        ],
        "permissions": [{"user": u.name, "vhost": vhost, **permissions(u, namespace)} for u in users],
        "topic_permissions": [
            {"user": u.name, "vhost": vhost, **entry} for u in users for entry in topic_permissions(u, namespace)
        ],
    }


def rabbitmqctl_commands(data: dict[str, Any]) -> list[str]:
    """The ``rabbitmqctl`` commands that create what the definitions ``data`` hold (passwords as variables)."""
    commands = [f"rabbitmqctl add_vhost {v['name']}" for v in data["vhosts"]]
    for user in data["users"]:
        variable = user["name"].upper().replace("-", "_") + "_PASSWORD"
        commands.append(f'rabbitmqctl add_user {user["name"]} "${variable}"')
    for p in data["permissions"]:
        commands.append(
            f"rabbitmqctl set_permissions -p {p['vhost']} {p['user']} '{p['configure']}' '{p['write']}' '{p['read']}'"
        )
    for t in data["topic_permissions"]:
        commands.append(
            f"rabbitmqctl set_topic_permissions -p {t['vhost']} {t['user']} {t['exchange']} '{t['write']}' "
            f"'{t['read']}'"
        )
    for policy in data.get("policies", []):
        commands.append(
            f"rabbitmqctl set_policy -p {policy['vhost']} --apply-to {policy['apply-to']} --priority "
            f"{policy['priority']} {policy['name']} '{policy['pattern']}' '{json.dumps(policy['definition'])}'"
        )
    return commands


__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_VHOST",
    "DEFINITIONS_FILE",
    "NO_KEY",
    "OPERATOR",
    "SERVICE_USERS",
    "ServiceUser",
    "definitions",
    "permissions",
    "rabbitmqctl_commands",
    "retry_queue_pattern",
    "topic_permissions",
    "user_for",
]
