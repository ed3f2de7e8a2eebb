"""The optional monitoring component (``k8s/components/monitoring``): monitors, alert rules and the NetworkPolicies
that admit Prometheus, rendered into prod (``k8s/overlays/prod-monitoring``) and validated offline; its rules read only
metrics that exist, and every alert has its runbook entry in docs/operations.md. The optional tracing component
(``k8s/components/tracing``, in the same overlay): the OTLP endpoint for every service and egress to the collector's
ports only.

Each check is also shown to fail on a deliberately broken copy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from synthner_ner_api.metrics import Metrics
from synthner_shared.messaging import BrokerSettings, Service
from synthner_shared.observability.metrics import service_registry
from synthner_shared.testing import echo_annotator
from tests.deploy.checks import (
    ROOT,
    SYNTHNER_SERVICES,
    example_secrets,
    policy_errors,
    render_overlay,
    schema_errors,
)
from tests.deploy.conftest import edit
from tests.deploy.kustomize_lite import Resource

MONITORED = "prod-monitoring"
CONSUMERS = ("generator", "tracker", "annotator", "trainer")
COMPONENT = "k8s/components/monitoring"
TRACING = "k8s/components/tracing"
EXTERNAL_METRICS = frozenset(
    {
        "up",  # Prometheus, per target
        "rabbitmq_detailed_queue_messages",  # RabbitMQ's plugin: /metrics/detailed?family=queue_coarse_metrics
        "container_memory_working_set_bytes",  # cAdvisor (kubelet)
        "kube_pod_container_resource_limits",  # kube-state-metrics
    }
)
PROMQL_WORDS = frozenset({"max", "sum", "count", "or", "rate", "increase", "delta"})


def errors_of(k8s: Path, overlay: str = MONITORED) -> list[str]:
    rendered = render_overlay(k8s, overlay)
    return schema_errors(rendered) + policy_errors(rendered, example_secrets(k8s))


def of_kind(resources: list[Resource], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def alerts(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    (rule,) = of_kind(resources, "PrometheusRule").values()
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_the_component_adds_monitors_rules_and_prometheus_access_to_prod() -> None:
    rendered = render_overlay(ROOT / "k8s", MONITORED)
    (service_monitor,) = of_kind(rendered, "ServiceMonitor").values()
    assert service_monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "ner-api"}}
    assert [(e["port"], e["path"]) for e in service_monitor["spec"]["endpoints"]] == [("http", "/metrics")]
    (pod_monitor,) = of_kind(rendered, "PodMonitor").values()
    (expression,) = pod_monitor["spec"]["selector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(CONSUMERS)
    assert [(e["port"], e["path"]) for e in pod_monitor["spec"]["podMetricsEndpoints"]] == [("health", "/metrics")]
    assert {r["metadata"]["namespace"] for r in rendered} == {"synthner"}
    assert {
        "SynthnerConsumerNotReady",
        "SynthnerDeadLettering",
        "SynthnerDeadLetterQueueGrowing",
        "SynthnerQuarantineShareHigh",
        "SynthnerMemoryNearLimit",
        "SynthnerNerApiModelFallback",
    } <= set(alerts(rendered))
    policies = of_kind(rendered, "NetworkPolicy")
    for name in CONSUMERS:
        assert policies[f"{name}-metrics"]["spec"]["ingress"] == [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                "ports": [{"protocol": "TCP", "port": 8080}],
            }
        ]


def test_prod_without_the_component_has_no_monitoring_and_consumers_take_no_ingress() -> None:
    rendered = render_overlay(ROOT / "k8s", "prod")
    assert not [r for r in rendered if r["apiVersion"].startswith("monitoring.coreos.com/")]
    policies = [r for r in rendered if r["kind"] == "NetworkPolicy"]
    for name in CONSUMERS:
        selected = [
            p for p in policies if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": name}}
        ]
        assert selected
        assert all(not p["spec"].get("ingress") for p in selected)


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry exposes (``_total``, ``_bucket``, ... included)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers without label matchers, grouping clauses, ranges,
    functions and keywords."""
    for pattern in (r"\{[^}]*\}", r"\b(?:by|on)\s*\([^)]*\)", r"\[[^\]]*\]"):
        expression = re.sub(pattern, " ", expression)
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expression)) - PROMQL_WORDS


def test_the_rules_read_only_metrics_the_services_expose_or_the_documented_sources() -> None:
    service = Service(BrokerSettings(), "tests", [echo_annotator([])])
    known = exposed_names(service_registry(service)) | exposed_names(Metrics().registry) | EXTERNAL_METRICS
    assert metric_names('sum by (queue) (rate(x_total{a="b"}[5m])) / max(y) or up == 0') == {"x_total", "y", "up"}
    for name, rule in alerts(render_overlay(ROOT / "k8s", MONITORED)).items():
        used = metric_names(rule["expr"])
        assert used, name
        assert used <= known, f"{name} reads unknown metrics {sorted(used - known)}"


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    headings = {line.removeprefix("### ").strip() for line in runbook.splitlines() if line.startswith("### ")}
    for name, rule in alerts(render_overlay(ROOT / "k8s", MONITORED)).items():
        assert name in headings, f"docs/operations.md has no '### {name}'"
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"


# --- broken copies -------------------------------------------------------------------------------------------------


def test_broken_copy_unknown_monitor_field_fails_the_vendored_crd_schema(deploy_copy: Path) -> None:
    edit(deploy_copy / COMPONENT / "monitors.yaml", "podMetricsEndpoints:", "podMetricEndpoints:")
    assert any(
        "PodMonitor/synthner-consumers" in e and "podMetricEndpoints" in e for e in errors_of(deploy_copy / "k8s")
    )


def test_broken_copy_bad_alert_duration_fails_the_vendored_crd_schema(deploy_copy: Path) -> None:
    edit(deploy_copy / COMPONENT / "rules.yaml", "for: 5m", "for: 5 minutes")
    assert any("PrometheusRule/synthner" in e and "5 minutes" in e for e in errors_of(deploy_copy / "k8s"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("kubernetes.io/metadata.name: monitoring", "kubernetes.io/metadata.name: default"),  # another namespace
        ("- {protocol: TCP, port: 8080}", "- {protocol: TCP, port: 5672}"),  # another port
        ("- namespaceSelector:\n            matchLabels:\n", "- namespaceSelector: {}\n          podSelector:\n"),
    ],
    ids=["namespace", "port", "any-namespace"],
)
def test_broken_copy_consumer_ingress_beyond_prometheus_on_the_health_port_fails(
    deploy_copy: Path, old: str, new: str
) -> None:
    edit(deploy_copy / COMPONENT / "network.yaml", old, new)
    found = errors_of(deploy_copy / "k8s")
    assert any("generator takes ingress only from the monitoring namespace on its health port" in e for e in found)


def test_broken_copy_component_listed_as_a_resource_is_refused(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/overlays/prod-monitoring/kustomization.yaml",
        "resources:\n  - ../prod\ncomponents:\n  - ../../components/monitoring",
        "resources:\n  - ../prod\n  - ../../components/monitoring",
    )
    with pytest.raises(Exception, match="kind 'Component' where a Kustomization is listed"):
        render_overlay(deploy_copy / "k8s", MONITORED)


def test_the_tracing_component_sets_the_collector_endpoint_and_opens_only_its_ports() -> None:
    rendered = render_overlay(ROOT / "k8s", MONITORED)
    broker = of_kind(rendered, "ConfigMap")["synthner-broker"]["data"]
    assert broker["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    policy = of_kind(rendered, "NetworkPolicy")["otlp-egress"]["spec"]
    (expression,) = policy["podSelector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(SYNTHNER_SERVICES)
    assert policy["policyTypes"] == ["Egress"]
    assert policy["egress"] == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": 4317}, {"protocol": "TCP", "port": 4318}],
        }
    ]
    # Without the component nothing is traced: no endpoint, so no exporter is created.
    plain = of_kind(render_overlay(ROOT / "k8s", "prod"), "ConfigMap")["synthner-broker"]["data"]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in plain


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("{protocol: TCP, port: 4318}", "{protocol: TCP, port: 5432}"),
        ("{protocol: TCP, port: 4318}", "{protocol: TCP, port: 4318, endPort: 65535}"),
        ("kubernetes.io/metadata.name: monitoring", "kubernetes.io/metadata.name: default"),
    ],
    ids=["port", "port-range", "namespace"],
)
def test_broken_copy_tracing_egress_beyond_the_collector_fails(deploy_copy: Path, old: str, new: str) -> None:
    edit(deploy_copy / TRACING / "network.yaml", old, new)
    found = errors_of(deploy_copy / "k8s")
    assert any("ner-api egress may reach only the broker" in e for e in found)
    assert any("generator egress rule" in e and "reaches beyond broker/LLM" in e for e in found)
