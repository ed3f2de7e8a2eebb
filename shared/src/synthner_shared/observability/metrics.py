"""Prometheus metrics of a service, served at ``/metrics`` (text format) beside its ``/livez`` and ``/readyz``.

Each consuming service has a registry of its own (:func:`service_registry`) holding

- its consumer runners' counters and handler durations, read from their :class:`ConsumerStats` at scrape time (the
  runner keeps plain counters; nothing here runs per message);
- whether it is connected and consuming (the readiness probe's answer) and how many deliveries are in flight;
- the process's memory, CPU and open files (``prometheus_client``'s process collector) and the Python version;
- the process-wide LLM-call metrics (:data:`LLM_REQUEST_SECONDS`, :data:`LLM_REQUEST_ERRORS`, recorded by
  :func:`synthner_shared.observability.llm.llm_call`) and the trainer's progress (:data:`TRAINING`).

Labels are queue names, outcomes, client names, error types and job ids: never note text, entity strings or secrets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from synthner_shared.messaging.service import Service

Exposition = Callable[[], tuple[bytes, str]]
"""What ``/metrics`` answers: the body and its content type."""

LLM_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

LLM_REQUEST_SECONDS = Histogram(
    "synthner_llm_request_seconds",
    "Duration of one LLM request (each attempt), by client (generator, annotator endpoint) and outcome (ok, error)",
    ["client", "outcome"],
    buckets=LLM_BUCKETS_S,
    registry=None,
)
LLM_REQUEST_ERRORS = Counter(
    "synthner_llm_request_errors",
    "Failed LLM requests by client and kind (an HTTP status such as 'http_429', or the error's type)",
    ["client", "kind"],
    registry=None,
)


class TrainingProgress:
    """The trainer's current job and its progress (step, epoch, tokens/s), labelled by job id; cleared between jobs.

    Set from the training thread, read by scrapes: the gauges are thread-safe and :meth:`start` and :meth:`finish`
    hold a lock so a scrape never sees two jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job: str | None = None
        self.running = Gauge(
            "synthner_training_running", "1 while a job (training or adaptation) runs", ["job", "kind"], registry=None
        )
        self.step = Gauge(
            "synthner_training_step", "Optimisation steps done in the current job", ["job"], registry=None
        )
        self.total_steps = Gauge(
            "synthner_training_total_steps", "Optimisation steps planned for the current job", ["job"], registry=None
        )
        self.epoch = Gauge(
            "synthner_training_epoch", "Epochs done (fractional) in the current job", ["job"], registry=None
        )
        self.tokens_per_second = Gauge(
            "synthner_training_tokens_per_second", "Training throughput of the current job", ["job"], registry=None
        )
        self.jobs = Counter(
            "synthner_training_jobs", "Jobs ended, by kind and outcome", ["kind", "outcome"], registry=None
        )

    def collectors(self) -> tuple[Collector, ...]:
        return (self.running, self.step, self.total_steps, self.epoch, self.tokens_per_second, self.jobs)

    def start(self, job: str, kind: str) -> None:
        with self._lock:
            self._clear()
            self._job = job
            self.running.labels(job=job, kind=kind).set(1)

    def progress(self, step: int, total_steps: int, epoch: float, tokens_per_second: float) -> None:
        with self._lock:
            if self._job is None:  # a training outside the service (the CLI, a study): nothing to show
                return
            self.step.labels(job=self._job).set(step)
            self.total_steps.labels(job=self._job).set(total_steps)
            self.epoch.labels(job=self._job).set(epoch)
            self.tokens_per_second.labels(job=self._job).set(tokens_per_second)

    def finish(self, kind: str, outcome: str) -> None:
        with self._lock:
            self._clear()
            self._job = None
            self.jobs.labels(kind=kind, outcome=outcome).inc()

    def _clear(self) -> None:
        for gauge in (self.running, self.step, self.total_steps, self.epoch, self.tokens_per_second):
            gauge.clear()


TRAINING = TrainingProgress()

PROCESS_WIDE: tuple[Collector, ...] = (LLM_REQUEST_SECONDS, LLM_REQUEST_ERRORS, *TRAINING.collectors())
"""Collectors every service registry includes (one process runs one service; they have no samples until used)."""


class ConsumerCollector(Collector):
    """A :class:`Service`'s consumer runners, read at scrape time. ``service`` may be a function that returns the
    service in use (None before the first one), for a component that makes a new :class:`Service` per connection
    attempt (the NER API's model events): its counters then start again with each, as a restarted process's do."""

    COUNTERS: tuple[tuple[str, str, str], ...] = (
        ("received", "synthner_messages_received", "Deliveries taken from the queue (redeliveries included)"),
        ("processed", "synthner_messages_processed", "Deliveries handled and acknowledged after their outputs"),
        ("failed", "synthner_messages_failed", "Handler failures (then retried or dead-lettered)"),
        ("retried", "synthner_messages_retried", "Deliveries parked in a retry queue for back-off"),
        ("dead_lettered", "synthner_messages_dead_lettered", "Deliveries moved to the dead-letter queue"),
        ("duplicates", "synthner_messages_duplicates", "Deliveries already processed, acknowledged unhandled"),
        ("requeued", "synthner_messages_requeued", "Deliveries handed back (broker unavailable, stopping)"),
        ("deadline_overruns", "synthner_handler_deadline_overruns", "Handler calls cancelled at their role's deadline"),
    )

    def __init__(self, service: Service | Callable[[], Service | None]) -> None:
        self._service = service

    def _current(self) -> Service | None:
        return self._service() if callable(self._service) else self._service

    def collect(self) -> Iterable[Metric]:
        service = self._current()
        runners = list(service.runners) if service is not None else []
        for field, name, documentation in self.COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["queue"])
            for runner in runners:
                family.add_metric([runner.queue_name], getattr(runner.stats, field))
            yield family
        published = CounterMetricFamily(
            "synthner_messages_published", "Outputs published (confirmed), by message type", labels=["queue", "type"]
        )
        for runner in runners:
            for message_type, count in sorted(runner.stats.published.items()):
                published.add_metric([runner.queue_name, message_type], count)
        yield published
        latency = HistogramMetricFamily(
            "synthner_handler_seconds", "Handler duration per delivery (until outputs are returned)", labels=["queue"]
        )
        in_flight = GaugeMetricFamily("synthner_messages_in_flight", "Deliveries being handled", labels=["queue"])
        for runner in runners:
            durations = runner.stats.handler_seconds
            latency.add_metric([runner.queue_name], durations.cumulative(), durations.total_s)
            in_flight.add_metric([runner.queue_name], runner.in_flight)
        yield latency
        yield in_flight
        health = service.health() if service is not None else None
        connected, ready = (health.connected, health.ready) if health is not None else (False, False)
        yield GaugeMetricFamily("synthner_broker_connected", "1 while connected to the broker", value=connected)
        yield GaugeMetricFamily(
            "synthner_consumer_ready", "1 while connected and consuming every queue (/readyz)", value=ready
        )


def service_registry(service: Service | None = None, extra: Sequence[Collector] = ()) -> CollectorRegistry:
    """A registry for one service: its consumers (if any), process metrics, the process-wide ones and ``extra``."""
    registry = CollectorRegistry(auto_describe=True)
    add_process_metrics(registry)
    for collector in PROCESS_WIDE:
        registry.register(collector)
    if service is not None:
        registry.register(ConsumerCollector(service))
    for collector in extra:
        registry.register(collector)
    return registry


def add_process_metrics(registry: CollectorRegistry) -> None:
    """Resident and virtual memory, CPU seconds, open files and start time (``process_*``), and the Python version."""
    ProcessCollector(registry=registry)
    registry.register(PLATFORM_COLLECTOR)


def exposition(registry: CollectorRegistry) -> Exposition:
    """``/metrics``'s answer for ``registry``, computed at each scrape."""
    return lambda: (generate_latest(registry), CONTENT_TYPE_LATEST)
