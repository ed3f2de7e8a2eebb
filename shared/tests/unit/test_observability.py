"""Metrics and tracing parts without a broker: the runner's histogram, the registries, and tracing that stays off (and
needs no SDK) unless an endpoint is configured."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from synthner_shared.logs import JsonFormatter
from synthner_shared.observability import tracing
from synthner_shared.observability.durations import Durations
from synthner_shared.observability.llm import llm_call
from synthner_shared.observability.metrics import (
    LLM_REQUEST_ERRORS,
    LLM_REQUEST_SECONDS,
    TRAINING,
    ConsumerCollector,
    service_registry,
)


def test_durations_count_each_observation_in_its_bucket_cumulatively() -> None:
    durations = Durations(bounds=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        durations.observe(seconds)
    assert durations.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert durations.count == 4
    assert durations.total_s == pytest.approx(3.65)


def test_durations_refuse_unordered_bounds() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Durations(bounds=(1.0, 0.1))


def names(registry_text: bytes) -> set[str]:
    return {family.name for family in text_string_to_metric_families(registry_text.decode())}


def test_a_service_registry_without_consumers_has_process_and_process_wide_metrics() -> None:
    found = names(generate_latest(service_registry()))
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "python_info"} <= found
    assert {"synthner_llm_request_seconds", "synthner_llm_request_errors", "synthner_training_step"} <= found
    assert "synthner_messages_received" not in found


def test_a_consumer_collector_before_its_first_service_reports_it_disconnected_with_no_queues() -> None:
    # The NER API makes a Service per connection attempt; before the first one, /metrics still answers.
    registry = CollectorRegistry()
    registry.register(ConsumerCollector(lambda: None))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert [s.value for s in families["synthner_broker_connected"].samples] == [0.0]
    assert [s.value for s in families["synthner_consumer_ready"].samples] == [0.0]
    assert families["synthner_messages_processed"].samples == []


async def test_llm_calls_are_timed_and_their_errors_counted_by_kind() -> None:
    async with llm_call("unit", "chat"):
        pass
    with pytest.raises(TimeoutError):
        async with llm_call("unit", "chat"):
            raise TimeoutError
    async with llm_call("unit", "chat") as call:
        call.failed("http_429")
    text = generate_latest(service_registry()).decode()
    assert 'synthner_llm_request_seconds_count{client="unit",outcome="ok"} 1.0' in text
    assert 'synthner_llm_request_errors_total{client="unit",kind="TimeoutError"} 1.0' in text
    assert 'synthner_llm_request_errors_total{client="unit",kind="http_429"} 1.0' in text
    assert 'synthner_llm_request_seconds_count{client="unit",outcome="error"} 2.0' in text
    LLM_REQUEST_ERRORS.remove("unit", "TimeoutError")
    LLM_REQUEST_ERRORS.remove("unit", "http_429")
    LLM_REQUEST_SECONDS.remove("unit", "ok")
    LLM_REQUEST_SECONDS.remove("unit", "error")


def test_training_progress_shows_only_the_current_job() -> None:
    TRAINING.progress(5, 10, 0.5, 100.0)  # outside a job (the CLI): nothing
    assert "synthner_training_step{" not in generate_latest(service_registry()).decode()
    TRAINING.start("job-1", "training")
    TRAINING.progress(5, 10, 0.5, 1234.0)
    text = generate_latest(service_registry()).decode()
    assert 'synthner_training_step{job="job-1"} 5.0' in text
    assert 'synthner_training_tokens_per_second{job="job-1"} 1234.0' in text
    assert 'synthner_training_running{job="job-1",kind="training"} 1.0' in text
    TRAINING.finish("training", "done")
    text = generate_latest(service_registry()).decode()
    assert 'job="job-1"' not in text
    assert 'synthner_training_jobs_total{kind="training",outcome="done"}' in text


def test_tracing_is_off_without_an_endpoint() -> None:
    assert not tracing.configure_tracing("synthner-test", environ={})
    assert not tracing.tracing_enabled()
    headers: dict[str, object] = {}
    with tracing.publish_span("ex", "key", "NoteGenerated", "id"):
        tracing.inject(headers)
    assert headers == {}
    assert tracing.current_trace_id() is None


WITHOUT_SDK = textwrap.dedent(
    """
    import importlib.abc, logging, sys

    class NoSdk(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
                raise ModuleNotFoundError(name)
            return None

    sys.meta_path.insert(0, NoSdk())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import synthner_shared.app, synthner_shared.messaging
    from synthner_shared.observability import tracing

    assert not tracing.configure_tracing("synthner-test", environ={})
    assert not tracing.configure_tracing("synthner-test", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert not tracing.tracing_enabled()
    assert not any(name.startswith("opentelemetry.sdk") for name in sys.modules)
    print("OK")
    """
)


def test_services_run_without_the_sdk_and_an_endpoint_without_it_only_warns() -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_SDK], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"
    assert "OpenTelemetry SDK is not installed" in done.stderr


WITH_ENDPOINT = textwrap.dedent(
    """
    from synthner_shared.observability import tracing

    assert tracing.configure_tracing("synthner-test", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert tracing.tracing_enabled()
    headers = {}
    with tracing.publish_span("ex", "key", "NoteGenerated", "id"):
        tracing.inject(headers)
        trace_id = tracing.current_trace_id()
    assert headers["traceparent"].split("-")[1] == trace_id
    print("OK")
    """
)


def test_an_endpoint_turns_tracing_on_with_the_sdk() -> None:
    # A subprocess: the SDK's global tracer provider can be set once per process. Nothing listens on the endpoint;
    # the exporter's failure to deliver at exit must not fail the process.
    done = subprocess.run(
        [sys.executable, "-c", WITH_ENDPOINT + "tracing.shutdown_tracing()\n"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"OTEL_BSP_EXPORT_TIMEOUT": "1000", "OTEL_EXPORTER_OTLP_TIMEOUT": "1", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"


def test_json_log_lines_inside_a_span_carry_its_trace_id() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    formatter = JsonFormatter()
    record = logging.LogRecord("synthner.test", logging.INFO, __file__, 1, "handled %s", ("id-1",), None)
    assert "trace_id" not in json.loads(formatter.format(record))
    tracing.enable_tracing(provider)
    try:
        with tracing.consume_span("q", None, "id-1"):
            inside = json.loads(formatter.format(record))
    finally:
        tracing.disable_tracing()
    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert inside["trace_id"] == format(span.context.trace_id, "032x")
    assert inside["message"] == "handled id-1"
