"""The RabbitMQ messaging layer every service uses (aio-pika, quorum queues, confirms, retries, dead-lettering)."""

from synthner_shared.messaging.broker import Broker
from synthner_shared.messaging.consumer import (
    LAST_ERROR_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    RETRIES_HEADER,
    Consumer,
    ConsumerRunner,
    Handler,
)
from synthner_shared.messaging.errors import (
    BrokerRefused,
    BrokerUnavailable,
    DeadlineExceeded,
    HandlerError,
    PoisonMessageError,
    PublishError,
    RetryableError,
)
from synthner_shared.messaging.lease import BrokerLease, LeaseHeldElsewhere, LeaseRefused
from synthner_shared.messaging.publisher import Publisher, to_amqp
from synthner_shared.messaging.service import Health, Service, serve_health
from synthner_shared.messaging.settings import BrokerSettings
from synthner_shared.messaging.topology import (
    ANNOTATOR,
    FAILURES,
    GENERATOR,
    JOB_PROGRESS,
    NER_API,
    QUARANTINE,
    TRAINER,
    QueueRole,
    Topology,
)

__all__ = [
    "ANNOTATOR",
    "FAILURES",
    "GENERATOR",
    "JOB_PROGRESS",
    "LAST_ERROR_HEADER",
    "NER_API",
    "QUARANTINE",
    "QUEUE_HEADER",
    "REASON_HEADER",
    "RETRIES_HEADER",
    "TRAINER",
    "Broker",
    "BrokerLease",
    "BrokerRefused",
    "BrokerSettings",
    "BrokerUnavailable",
    "Consumer",
    "ConsumerRunner",
    "DeadlineExceeded",
    "Handler",
    "HandlerError",
    "Health",
    "LeaseHeldElsewhere",
    "LeaseRefused",
    "PoisonMessageError",
    "PublishError",
    "Publisher",
    "QueueRole",
    "RetryableError",
    "Service",
    "Topology",
    "serve_health",
    "to_amqp",
]
