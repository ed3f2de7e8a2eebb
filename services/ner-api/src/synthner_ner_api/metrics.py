"""The API's Prometheus metrics, in a registry of their own (served at ``/metrics``), with the process's memory, CPU
and open files (``process_*``: resident memory after a model swap is what to watch) and the Python version."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from synthner_ner_api.models import Fallback
from synthner_shared.observability.metrics import add_process_metrics


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        add_process_metrics(self.registry)
        self.requests = Counter(
            "synthner_ner_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "synthner_ner_request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_texts = Histogram(
            "synthner_ner_batch_texts",
            "Texts per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.model_version = Gauge(
            "synthner_ner_model_info", "The model version being served (value 1)", ["version"], registry=self.registry
        )
        self.errors = Counter("synthner_ner_errors", "Errors answered", ["kind"], registry=self.registry)
        self.dropped_texts = Counter(
            "synthner_ner_dropped_texts",
            "Queued texts never sent to the model: their request timed out or its client disconnected",
            registry=self.registry,
        )
        self.queued_texts = Gauge(
            "synthner_ner_queued_texts",
            "Texts waiting for the model (the queue's bound: 503 above it)",
            registry=self.registry,
        )
        self.fallback = Gauge(
            "synthner_ner_model_fallback",
            "1 while the replica serves another version because the one it wanted did not load",
            ["wanted"],
            registry=self.registry,
        )

    def serving(self, version: str, fallback: Fallback | None = None) -> None:
        self.model_version.clear()
        self.model_version.labels(version=version).set(1)
        self.fallback.clear()
        if fallback is not None:
            self.fallback.labels(wanted=fallback.wanted).set(1)
