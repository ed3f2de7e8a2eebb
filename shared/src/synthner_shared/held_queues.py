"""The bound on the queues where messages wait for an operator: every ``<ns>.<role>.dlq`` and ``<ns>.quarantine``.

It is a RabbitMQ policy, not queue arguments: a policy applies to queues that already exist, so an existing deployment
adopts it without redeclaring a durable queue (changed arguments fail with PRECONDITION_FAILED). ``synthner ops policy``
prints or applies it; :meth:`HeldQueuePolicy.definition` is its entry in a definitions file (``policies: [...]``).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

DEFAULT_HELD_MAX_LENGTH = 50_000
DEFAULT_HELD_MAX_BYTES = 1024**3


@dataclass(frozen=True)
class HeldQueuePolicy:
    """The RabbitMQ policy that bounds every ``<ns>.<role>.dlq`` and ``<ns>.quarantine`` queue.

    ``overflow: reject-publish``: a full queue refuses new messages instead of dropping old ones. A consumer's
    dead-lettering is then refused (its message goes back to the work queue and is retried until the work queue's
    delivery limit), and the broker's own at-least-once dead-lettering keeps the message in the work queue until the
    DLQ has room again; a quarantined note that cannot be stored fails its generation part (retried, then
    dead-lettered in ``<ns>.generator.dlq``). Nothing is lost; the DLQ-growth alert is what tells ops to act.

    A policy, not queue arguments: it applies to queues that already exist, so an existing deployment adopts it
    without redeclaring a durable queue (changed arguments fail with PRECONDITION_FAILED).
    """

    namespace: str
    max_length: int = DEFAULT_HELD_MAX_LENGTH
    max_length_bytes: int = DEFAULT_HELD_MAX_BYTES
    priority: int = 10
    """Above the default 0 of broader policies, e.g. one matching ``^synthner\\.ner-api\\.`` (which also matches
    ``synthner.ner-api.dlq``); RabbitMQ applies only the highest-priority policy that matches a queue."""

    @property
    def name(self) -> str:
        # A dot, not a dash: deploy/rabbitmq/setup-users.sh takes each "synthner-..." name of the definitions as a user.
        return f"{self.namespace}.held-queues"

    @property
    def pattern(self) -> str:
        ns = re.escape(self.namespace)
        return rf"^{ns}\.([a-z0-9-]+\.dlq|quarantine)$"

    @property
    def definition_body(self) -> dict[str, object]:
        return {
            "max-length": self.max_length,
            "max-length-bytes": self.max_length_bytes,
            "overflow": "reject-publish",
        }

    def definition(self, vhost: str) -> dict[str, object]:
        """The policy as an entry of a RabbitMQ definitions file (``policies: [...]``)."""
        return {
            "vhost": vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": "queues",
            "priority": self.priority,
            "definition": self.definition_body,
        }

    def rabbitmqctl_arguments(self, vhost: str) -> list[str]:
        return [
            "set_policy",
            "-p",
            vhost,
            "--apply-to",
            "queues",
            "--priority",
            str(self.priority),
            self.name,
            self.pattern,
            json.dumps(self.definition_body),
        ]

    def rabbitmqctl(self, vhost: str) -> str:
        return "rabbitmqctl " + " ".join(shlex.quote(argument) for argument in self.rabbitmqctl_arguments(vhost))
