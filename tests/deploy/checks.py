"""Offline checks of the deployment files: each returns a list of problems (empty = fine), so the tests can show both
that the real files pass and that a deliberately broken copy fails.

``python -m tests.deploy.checks`` (from the repository root) runs them all and prints what it finds.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.kustomize_lite import KustomizeError, Resource, load_documents, render, split_image

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
OVERLAYS = ("dev", "prod", "prod-monitoring", "prod-ingress")
"""``prod-monitoring``: prod with the optional monitoring and tracing components (``k8s/components/monitoring``,
``k8s/components/tracing``)."""
# Kubernetes versions the rendered manifests must be valid for: an older one hospitals still run, and the newest
# that kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
KEDA_SCHEMAS = {
    "ScaledObject": "keda-scaledobject-v1alpha1.json",
    "TriggerAuthentication": "keda-triggerauthentication-v1alpha1.json",
}
MONITORING_SCHEMAS = {
    "ServiceMonitor": "prometheus-servicemonitor-v1.json",
    "PodMonitor": "prometheus-podmonitor-v1.json",
    "PrometheusRule": "prometheus-prometheusrule-v1.json",
}
# Custom resources validated against vendored CRD schemas, by API group.
CRD_SCHEMAS = {"keda.sh": KEDA_SCHEMAS, "monitoring.coreos.com": MONITORING_SCHEMAS}
MONITORING_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
"""The one peer a consumer admits: Prometheus, in the namespace "monitoring" (k8s/components/monitoring)."""
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# Containers allowed a writable root filesystem, and why.
WRITABLE_ROOT = {"rabbitmq": "dev-only broker: the image's entrypoint writes its configuration under /etc/rabbitmq"}
SYNTHNER_SERVICES = ("generator", "tracker", "annotator", "trainer", "ner-api")
API_CLIENTS: dict[str, tuple[str, dict[tuple[str, str], set[str]]]] = {
    "trainer": (
        "trainer",
        {
            ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
            ("batch", "cronjobs"): {"get"},
            ("", "pods"): {"get", "list"},
        },
    )
}
"""The workloads that may talk to the API server (name -> their service account, and the most their Roles may grant
per (API group, resource)): the trainer's kubernetes job runner (k8s/components/gpu-jobs)."""
API_SERVER_PORTS = {443, 6443}
KEDA_SCALED = ("generator", "annotator")
BROKER_PORTS = {5672, 5671}
LLM_PORTS = {8000, 8080, 443}
OTLP_PORTS = {4317, 4318}
"""The OpenTelemetry collector's OTLP ports (gRPC, HTTP), reachable only in the monitoring namespace
(k8s/components/tracing)."""
DOCKERFILES = (
    "services/generator/Dockerfile",
    "services/annotator/Dockerfile",
    "services/trainer/Dockerfile",
    "services/trainer/Dockerfile.cuda",
    "services/ner-api/Dockerfile",
    "deploy/llama-cpp/Dockerfile",
)
LIGHT_DOCKERFILES = ("services/generator/Dockerfile", "services/annotator/Dockerfile")
TORCH_FREE_DOCKERFILES = ("services/ner-api/Dockerfile",)
"""Images that must never install torch: the NER API serves the ONNX shipped in each model folder."""
TORCH_VERSION = "2.13.0"


# --- Kubernetes ----------------------------------------------------------------------------------------------------


def render_overlay(k8s_dir: Path, overlay: str) -> list[Resource]:
    return render(k8s_dir / "overlays" / overlay)


@cache
def _crd_schema(file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / file).read_text(encoding="utf-8"))
    return loaded


def _name(resource: Resource) -> str:
    return f"{resource.get('kind')}/{(resource.get('metadata') or {}).get('name')}"


def schema_errors(resources: list[Resource]) -> list[str]:
    """Strict schema validation: built-in kinds with kubernetes-validate, KEDA and Prometheus Operator kinds with the
    vendored CRD schemas."""
    errors: list[str] = []
    for resource in resources:
        api_version = str(resource.get("apiVersion", ""))
        group = api_version.rpartition("/")[0]
        if group in CRD_SCHEMAS:
            kind = str(resource.get("kind"))
            if kind not in CRD_SCHEMAS[group]:
                errors.append(f"{_name(resource)}: no vendored schema for {group} kind {kind}")
                continue
            validator = jsonschema.Draft7Validator(_crd_schema(CRD_SCHEMAS[group][kind]))
            errors.extend(
                f"{_name(resource)}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(resource)
            )
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(map(str, error.path)) or "<root>"
                errors.append(f"{_name(resource)} (Kubernetes {version}): {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{_name(resource)}: unknown kind/apiVersion {api_version} for Kubernetes {version}")
    return errors


def example_secrets(k8s_dir: Path) -> dict[str, set[str]]:
    """Secret name -> keys, as documented by k8s/secrets-example (what an operator must create)."""
    secrets: dict[str, set[str]] = {}
    for document in load_documents(k8s_dir / "secrets-example" / "secrets.yaml"):
        if document.get("kind") == "Secret":
            keys = set(document.get("stringData") or {}) | set(document.get("data") or {})
            secrets[str(document["metadata"]["name"])] = keys
    return secrets


def _pod_spec(resource: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = ((resource.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec


def _template_labels(resource: Resource) -> dict[str, str]:
    labels: dict[str, str] = (((resource.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (``matchLabels`` and ``matchExpressions``) selects pods with ``labels``; a policy whose
    selector could not be read would escape every check, so an unknown key or operator raises."""
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ValueError(f"label selector with {sorted(unknown)}: not understood by the checks")
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], set(expression.get("values") or [])
        if operator == "In":
            matched = labels.get(key) in values
        elif operator == "NotIn":
            matched = labels.get(key) not in values
        elif operator == "Exists":
            matched = key in labels
        elif operator == "DoesNotExist":
            matched = key not in labels
        else:
            raise ValueError(f"label selector operator {operator!r}: not understood by the checks")
        if not matched:
            return False
    return True


def _by_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {str(r["metadata"]["name"]): r for r in resources if r.get("kind") == kind}


def policy_errors(resources: list[Resource], secrets_outside: dict[str, set[str]]) -> list[str]:  # noqa: PLR0912
    """Rules the schemas cannot express: probes, hardening, grace periods, references, autoscaling, network policy.

    ``secrets_outside``: Secrets created outside the render (name -> keys), i.e. the documented examples.
    """
    errors: list[str] = []
    config_maps = _by_kind(resources, "ConfigMap")
    secrets = {
        name: set(r.get("stringData") or {}) | set(r.get("data") or {})
        for name, r in _by_kind(resources, "Secret").items()
    }
    all_secrets = {**secrets_outside, **secrets}
    claims = _by_kind(resources, "PersistentVolumeClaim")
    workloads = [r for r in resources if r.get("kind") in WORKLOAD_KINDS]
    deployments = _by_kind(resources, "Deployment")
    broker = config_maps.get("synthner-broker", {}).get("data") or {}
    grace = int(broker.get("SYNTHNER_BROKER_SHUTDOWN_GRACE_S", "0"))
    namespace = str(broker.get("SYNTHNER_BROKER_NAMESPACE", ""))

    for name in SYNTHNER_SERVICES:
        if name not in deployments:
            errors.append(f"Deployment/{name} is missing")

    for workload in workloads:
        where = _name(workload)
        pod = _pod_spec(workload)
        selector = (workload.get("spec") or {}).get("selector") or {}
        if not _selects(selector, _template_labels(workload)):
            errors.append(f"{where}: spec.selector does not select its own pod template")
        pod_security = pod.get("securityContext") or {}
        if pod_security.get("runAsNonRoot") is not True:
            errors.append(f"{where}: pod securityContext.runAsNonRoot must be true")
        if pod.get("automountServiceAccountToken") is not False and not _api_client(workload, resources):
            errors.append(
                f"{where}: automountServiceAccountToken must be false (only {sorted(API_CLIENTS)} talk to the API"
                " server, each with its own service account bound to a narrow Role)"
            )
        uses_broker = False
        for container in pod.get("containers") or []:
            cwhere = f"{where} container {container.get('name')}"
            image = str(container.get("image", ""))
            _, tag, digest = split_image(image)
            if digest is None and (tag is None or tag == "latest"):
                errors.append(f"{cwhere}: image {image!r} needs an immutable tag or digest")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    errors.append(f"{cwhere}: no {probe}")
            if container.get("livenessProbe") and container.get("livenessProbe") == container.get("readinessProbe"):
                errors.append(f"{cwhere}: liveness and readiness probes are identical")
            resources_spec = container.get("resources") or {}
            for bound in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources_spec.get(bound) or {}):
                    errors.append(f"{cwhere}: resources.{bound} needs cpu and memory")
            security = container.get("securityContext") or {}
            if security.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cwhere}: allowPrivilegeEscalation must be false")
            if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{cwhere}: capabilities must drop ALL")
            if security.get("readOnlyRootFilesystem") is not True and container.get("name") not in WRITABLE_ROOT:
                errors.append(f"{cwhere}: readOnlyRootFilesystem must be true")
            for source in container.get("envFrom") or []:
                ref = source.get("configMapRef") or {}
                if ref and ref.get("name") not in config_maps:
                    errors.append(f"{cwhere}: envFrom ConfigMap {ref.get('name')!r} does not exist")
                if ref.get("name") == "synthner-broker":
                    uses_broker = True
                sref = source.get("secretRef") or {}
                if sref and sref.get("name") not in all_secrets:
                    errors.append(f"{cwhere}: envFrom Secret {sref.get('name')!r} does not exist")
            for variable in container.get("env") or []:
                value_from = variable.get("valueFrom") or {}
                sref = value_from.get("secretKeyRef")
                if sref and sref.get("key") not in all_secrets.get(str(sref.get("name")), set()):
                    errors.append(f"{cwhere}: env {variable.get('name')} uses missing Secret key {sref}")
                cref = value_from.get("configMapKeyRef")
                if cref and cref.get("key") not in (config_maps.get(str(cref.get("name")), {}).get("data") or {}):
                    errors.append(f"{cwhere}: env {variable.get('name')} uses missing ConfigMap key {cref}")
            volume_names = {v.get("name") for v in pod.get("volumes") or []}
            template_claims = {
                t["metadata"]["name"] for t in (workload.get("spec") or {}).get("volumeClaimTemplates") or []
            }
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in volume_names | template_claims:
                    errors.append(f"{cwhere}: volumeMount {mount.get('name')!r} has no volume")
        for volume in pod.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is not None and claim not in claims:
                errors.append(f"{where}: volume {volume.get('name')} uses missing PVC {claim!r}")
            secret = (volume.get("secret") or {}).get("secretName")
            if secret is not None and secret not in all_secrets:
                errors.append(f"{where}: volume {volume.get('name')} uses missing Secret {secret!r}")
            for item in (volume.get("secret") or {}).get("items") or []:
                if secret in all_secrets and item.get("key") not in all_secrets[secret]:
                    errors.append(f"{where}: volume {volume.get('name')} uses missing Secret key {item.get('key')!r}")
        termination = pod.get("terminationGracePeriodSeconds", 30)
        if uses_broker and (not isinstance(termination, int) or termination <= grace):
            errors.append(
                f"{where}: terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} must exceed "
                f"SYNTHNER_BROKER_SHUTDOWN_GRACE_S {grace}"
            )

    errors.extend(_service_errors(resources, workloads))
    errors.extend(_scaling_errors(resources, deployments, all_secrets, namespace))
    errors.extend(_network_errors(resources, workloads))
    errors.extend(job_template_errors(resources))
    return errors


def _api_client(workload: Resource, resources: list[Resource]) -> bool:
    """Whether a workload may mount its service-account token: it is one of :data:`API_CLIENTS`, runs as its own
    service account, and that account is bound only to Roles that grant what :data:`API_CLIENTS` allows."""
    name = str(workload["metadata"]["name"])
    account = _pod_spec(workload).get("serviceAccountName")
    if name not in API_CLIENTS or account != API_CLIENTS[name][0]:
        return False
    roles = _by_kind(resources, "Role")
    bound = [
        roles.get(str(binding["roleRef"]["name"]))
        for binding in _by_kind(resources, "RoleBinding").values()
        if binding["roleRef"].get("kind") == "Role"
        and any(s.get("kind") == "ServiceAccount" and s.get("name") == account for s in binding.get("subjects") or [])
    ]
    if not bound or any(role is None for role in bound):
        return False
    allowed = API_CLIENTS[name][1]
    for role in bound:
        assert role is not None
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or []:
                for kind in rule.get("resources") or []:
                    if not set(rule.get("verbs") or []) <= allowed.get((group, kind), set()):
                        return False
    return True


def _job_pod_specs(resources: list[Resource]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, Job spec, pod template) of every CronJob (a Job template) and Job in the render."""
    for resource in resources:
        if resource.get("kind") == "CronJob":
            job = ((resource.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
        elif resource.get("kind") == "Job":
            job = resource.get("spec") or {}
        else:
            continue
        yield _name(resource), job, job.get("template") or {}


def job_template_errors(resources: list[Resource]) -> list[str]:  # noqa: PLR0912
    """Jobs and Job templates (the trainer's suspended CronJob): bounded (deadline, retries, clean-up), hardened like
    the services' pods, isolated by a NetworkPolicy of their own; a CronJob used as a template never runs by itself."""
    errors: list[str] = []
    policies = list(_by_kind(resources, "NetworkPolicy").values())
    for resource in resources:
        if resource.get("kind") == "CronJob" and (resource.get("spec") or {}).get("suspend") is not True:
            errors.append(f"{_name(resource)}: a CronJob here is a Job template and must be suspended")
    for where, job, template in _job_pod_specs(resources):
        for field in ("activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
            if not isinstance(job.get(field), int):
                errors.append(f"{where}: the Job needs {field}")
        pod = template.get("spec") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append(f"{where}: restartPolicy must be Never or OnFailure")
        if pod.get("automountServiceAccountToken") is not False:
            errors.append(f"{where}: automountServiceAccountToken must be false")
        security = pod.get("securityContext") or {}
        if security.get("runAsNonRoot") is not True:
            errors.append(f"{where}: pod securityContext.runAsNonRoot must be true")
        if (security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errors.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        for container in pod.get("containers") or []:
            cwhere = f"{where} container {container.get('name')}"
            _, tag, digest = split_image(str(container.get("image", "")))
            if digest is None and (tag is None or tag == "latest"):
                errors.append(f"{cwhere}: image needs an immutable tag or digest")
            csec = container.get("securityContext") or {}
            if csec.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cwhere}: allowPrivilegeEscalation must be false")
            if "ALL" not in ((csec.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{cwhere}: capabilities must drop ALL")
            if csec.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cwhere}: readOnlyRootFilesystem must be true")
            bounds = container.get("resources") or {}
            for bound in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(bounds.get(bound) or {}):
                    errors.append(f"{cwhere}: resources.{bound} needs cpu and memory")
        own = [
            p
            for p in policies
            if (p.get("spec") or {}).get("podSelector") and _selects(p["spec"]["podSelector"], labels)
        ]
        if not own:
            errors.append(f"{where}: no NetworkPolicy selects its pods specifically")
        for policy in own:
            for rule in (policy.get("spec") or {}).get("egress") or []:
                if not rule.get("to") or not _rule_ports(rule) or not _rule_ports(rule) <= BROKER_PORTS:
                    errors.append(f"{_name(policy)}: a job's egress may reach only the broker, not {rule}")
    return errors


def _service_errors(resources: list[Resource], workloads: list[Resource]) -> list[str]:
    errors: list[str] = []
    for service in _by_kind(resources, "Service").values():
        selector = (service.get("spec") or {}).get("selector") or {}
        matched = [w for w in workloads if _selects({"matchLabels": selector}, _template_labels(w))]
        if not matched:
            errors.append(f"{_name(service)}: selector {selector} matches no workload")
            continue
        port_names = {
            p.get("name") for w in matched for c in _pod_spec(w).get("containers") or [] for p in c.get("ports") or []
        }
        port_numbers = {
            p.get("containerPort")
            for w in matched
            for c in _pod_spec(w).get("containers") or []
            for p in c.get("ports") or []
        }
        for port in (service.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if target not in port_names | port_numbers:
                errors.append(f"{_name(service)}: targetPort {target!r} is not a container port of its pods")
    return errors


def _scaling_errors(  # noqa: PLR0912
    resources: list[Resource], deployments: dict[str, Resource], all_secrets: dict[str, set[str]], namespace: str
) -> list[str]:
    errors: list[str] = []
    scaled_objects = _by_kind(resources, "ScaledObject")
    auths = _by_kind(resources, "TriggerAuthentication")
    hpas = _by_kind(resources, "HorizontalPodAutoscaler")
    budgets = _by_kind(resources, "PodDisruptionBudget")
    keda_targets: set[str] = set()
    for name in KEDA_SCALED:
        if not any(
            (s.get("spec") or {}).get("scaleTargetRef", {}).get("name") == name for s in scaled_objects.values()
        ):
            errors.append(f"Deployment/{name} has no KEDA ScaledObject")
    for scaled in scaled_objects.values():
        spec = scaled.get("spec") or {}
        target = str((spec.get("scaleTargetRef") or {}).get("name"))
        keda_targets.add(target)
        if target not in deployments:
            errors.append(f"{_name(scaled)}: scaleTargetRef {target!r} is not a Deployment")
        for trigger in spec.get("triggers") or []:
            if trigger.get("type") != "rabbitmq":
                continue
            metadata = trigger.get("metadata") or {}
            # Over AMQP KEDA sees only ready messages and would scale a replica away mid-document.
            if metadata.get("protocol") != "http":
                errors.append(f"{_name(scaled)}: the rabbitmq trigger must use protocol: http (unacked messages count)")
            if metadata.get("mode") != "QueueLength":
                errors.append(f"{_name(scaled)}: the rabbitmq trigger must use mode: QueueLength")
            if metadata.get("queueName") != f"{namespace}.{target}":
                errors.append(
                    f"{_name(scaled)}: queueName {metadata.get('queueName')!r} is not {namespace}.{target} "
                    "(SYNTHNER_BROKER_NAMESPACE + role)"
                )
            if "host" in metadata or "hostFromEnv" in metadata:
                errors.append(f"{_name(scaled)}: the management URL belongs in the TriggerAuthentication's Secret")
            auth_name = str((trigger.get("authenticationRef") or {}).get("name"))
            if auth_name not in auths:
                errors.append(f"{_name(scaled)}: TriggerAuthentication {auth_name!r} does not exist")
    for auth in auths.values():
        for ref in (auth.get("spec") or {}).get("secretTargetRef") or []:
            if ref.get("key") not in all_secrets.get(str(ref.get("name")), set()):
                errors.append(f"{_name(auth)}: Secret {ref.get('name')!r} key {ref.get('key')!r} does not exist")
    hpa_targets = {str(((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name")) for h in hpas.values()}
    for name in sorted((keda_targets | hpa_targets) & set(deployments)):
        if "replicas" in (deployments[name].get("spec") or {}):
            errors.append(f"Deployment/{name}: autoscaled, so spec.replicas must be unset (each apply would reset it)")
    for hpa in hpas.values():
        target = str(((hpa.get("spec") or {}).get("scaleTargetRef") or {}).get("name"))
        if target in keda_targets:
            errors.append(f"{_name(hpa)}: {target} is already scaled by KEDA; two autoscalers would fight")
        if target not in deployments:
            errors.append(f"{_name(hpa)}: scaleTargetRef {target!r} is not a Deployment")
    if not any(((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == "ner-api" for h in hpas.values()):
        errors.append("Deployment/ner-api has no HorizontalPodAutoscaler")
    for name in ("generator", "annotator", "ner-api"):
        deployment = deployments.get(name)
        if deployment is None:
            continue
        if not any(
            _selects((b.get("spec") or {}).get("selector") or {}, _template_labels(deployment))
            for b in budgets.values()
        ):
            errors.append(f"Deployment/{name} has no PodDisruptionBudget")
    return errors


# How the common RabbitMQ installs label the broker's pods: the cluster operator (its name label is the cluster's own
# name, here an example one) and the dev overlay's StatefulSet / the Bitnami chart. Every service must reach both.
BROKER_POD_LABELS = (
    {
        "app.kubernetes.io/name": "hospital-mq",
        "app.kubernetes.io/component": "rabbitmq",
        "app.kubernetes.io/part-of": "rabbitmq",
    },
    {"app.kubernetes.io/name": "rabbitmq"},
)


def _egress_reaches(policy: Resource, pod_labels: dict[str, str], ports: set[int]) -> bool:
    """Whether one of the policy's egress rules admits pods with ``pod_labels`` (in any namespace) on ``ports``."""
    for rule in (policy.get("spec") or {}).get("egress") or []:
        if not _rule_ports(rule) & ports:
            continue
        for peer in rule.get("to") or []:
            selector = peer.get("podSelector")
            if selector is not None and peer.get("namespaceSelector") == {} and _selects(selector, pod_labels):
                return True
    return False


def _rule_ports(rule: dict[str, Any]) -> set[int]:
    return {int(p["port"]) for p in rule.get("ports") or [] if "port" in p}


def _health_ports(workload: Resource) -> set[int]:
    """The container ports named ``health`` (probes and ``/metrics``) of a workload's pods."""
    return {
        int(p["containerPort"])
        for c in _pod_spec(workload).get("containers") or []
        for p in c.get("ports") or []
        if p.get("name") == "health"
    }


def _to_collector(rule: dict[str, Any]) -> bool:
    """An egress rule to the OTLP ports in the monitoring namespace and nowhere else (k8s/components/tracing)."""
    ports = rule.get("ports") or []
    return (
        rule.get("to") == [MONITORING_PEER]
        and bool(_rule_ports(rule))
        and _rule_ports(rule) <= OTLP_PORTS
        and not any("endPort" in p for p in ports)
    )


def _network_errors(resources: list[Resource], workloads: list[Resource]) -> list[str]:  # noqa: PLR0912
    errors: list[str] = []
    policies = list(_by_kind(resources, "NetworkPolicy").values())
    default_deny = [
        p
        for p in policies
        if (p.get("spec") or {}).get("podSelector") == {}
        and set((p.get("spec") or {}).get("policyTypes") or []) == {"Ingress", "Egress"}
        and not (p.get("spec") or {}).get("ingress")
        and not (p.get("spec") or {}).get("egress")
    ]
    if not default_deny:
        errors.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for policy in policies:
        spec = policy.get("spec") or {}
        for direction, side in (("egress", "to"), ("ingress", "from")):
            for rule in spec.get(direction) or []:
                for peer in rule.get(side) or []:
                    selector = peer.get("podSelector") or {}
                    if peer.get("namespaceSelector") == {} and not (
                        selector.get("matchLabels") or selector.get("matchExpressions")
                    ):
                        errors.append(f"{_name(policy)}: an {direction} peer selects every pod of every namespace")
    for workload in workloads:
        labels = _template_labels(workload)
        own = [
            p
            for p in policies
            if (p.get("spec") or {}).get("podSelector")
            and _selects((p.get("spec") or {}).get("podSelector") or {}, labels)
        ]
        if not own:
            errors.append(f"{_name(workload)}: no NetworkPolicy selects its pods specifically")
        name = str(workload["metadata"]["name"])
        if name in SYNTHNER_SERVICES:
            for broker_labels in BROKER_POD_LABELS:
                if not any(_egress_reaches(policy, broker_labels, BROKER_PORTS) for policy in own):
                    errors.append(f"{_name(workload)}: no egress rule reaches a broker pod labelled {broker_labels}")
        for policy in own:
            spec = policy.get("spec") or {}
            if name == "ner-api":
                for rule in spec.get("ingress") or []:
                    peers = rule.get("from") or []
                    if not peers or any(set(peer) != {"namespaceSelector"} for peer in peers):
                        errors.append(f"{_name(policy)}: ner-api ingress must come only from selected namespaces")
                    if not _rule_ports(rule):
                        errors.append(f"{_name(policy)}: ner-api ingress must name its ports")
                for rule in spec.get("egress") or []:
                    if _to_collector(rule):
                        continue
                    if not _rule_ports(rule) or not _rule_ports(rule) <= BROKER_PORTS or not rule.get("to"):
                        errors.append(f"{_name(policy)}: ner-api egress may reach only the broker (and DNS)")
            if name in ("annotator", "generator", "trainer", "tracker"):
                allowed = BROKER_PORTS if name in ("trainer", "tracker") else BROKER_PORTS | LLM_PORTS
                if name in API_CLIENTS and _api_client(workload, resources):
                    allowed = allowed | API_SERVER_PORTS  # to the API server's address (an ipBlock), checked below
                health = _health_ports(workload)
                for rule in spec.get("ingress") or []:
                    # The one ingress a consumer takes: Prometheus on its health port (k8s/components/monitoring).
                    ports = rule.get("ports") or []
                    if (
                        rule.get("from") != [MONITORING_PEER]
                        or not ports
                        or any(p.get("port") not in health or p.get("protocol", "TCP") != "TCP" for p in ports)
                        or any("endPort" in p for p in ports)
                    ):
                        errors.append(
                            f"{_name(policy)}: {name} takes ingress only from the monitoring namespace on its health "
                            f"port {sorted(health)}, not {rule}"
                        )
                for rule in spec.get("egress") or []:
                    if _to_collector(rule):
                        continue
                    if not rule.get("to") or not _rule_ports(rule) or not _rule_ports(rule) <= allowed:
                        errors.append(f"{_name(policy)}: {name} egress rule {rule} reaches beyond broker/LLM")
                    for peer in rule.get("to") or []:
                        cidr = (peer.get("ipBlock") or {}).get("cidr")
                        if cidr in ("0.0.0.0/0", "::/0"):
                            errors.append(f"{_name(policy)}: {name} egress to the whole internet")
    return errors


# --- compose -------------------------------------------------------------------------------------------------------

INTERPOLATION = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)[^}]*\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
SCALED_COMPOSE_SERVICES = ("annotator",)


def compose_schema_errors(compose_file: Path) -> list[str]:
    """compose-spec JSON schema, as vendored in check-jsonschema (``--builtin-schema vendor.compose-spec``)."""
    executable = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(executable), "--builtin-schema", "vendor.compose-spec", str(compose_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [] if result.returncode == 0 else [(result.stdout + result.stderr).strip()]


def env_example_keys(env_file: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in env_file.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key, _, value = stripped.partition("=")
            values[key.strip()] = value.strip()
    return values


def _duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def compose_reference_errors(compose_file: Path, env_file: Path, root: Path) -> list[str]:  # noqa: PLR0912
    """Every depends_on, volume, secret, build file and ${VAR} referenced exists; scaled services can scale."""
    errors: list[str] = []
    text = compose_file.read_text(encoding="utf-8").replace("$$", "")
    compose: dict[str, Any] = yaml.safe_load(text)
    env = env_example_keys(env_file)
    used = {m.group("braced") or m.group("plain") for m in INTERPOLATION.finditer(text)}
    for variable in sorted(used - set(env)):
        errors.append(f"${{{variable}}} is used in {compose_file.name} but not set in {env_file.name}")
    for variable in sorted(set(env) - used - {"COMPOSE_PROFILES"}):
        errors.append(f"{env_file.name} sets {variable}, which {compose_file.name} never uses")
    services: dict[str, Any] = compose.get("services") or {}
    volumes = set(compose.get("volumes") or {})
    secrets = set(compose.get("secrets") or {})
    profiles = {p for s in services.values() for p in s.get("profiles") or []}
    for profile in filter(None, env.get("COMPOSE_PROFILES", "").split(",")):
        if profile not in profiles:
            errors.append(f"COMPOSE_PROFILES names {profile!r}, which no service has")
    grace_default = float(re.sub(r"\D", "", env.get("SYNTHNER_BROKER_SHUTDOWN_GRACE_S", "0")) or 0)
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dependency, condition in depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends):
            if dependency not in services:
                errors.append(f"{name}: depends_on {dependency!r}, which is not a service")
                continue
            if (condition or {}).get("condition") == "service_healthy" and "healthcheck" not in services[dependency]:
                errors.append(f"{name}: waits for {dependency} to be healthy, but {dependency} has no healthcheck")
        if "healthcheck" not in service:
            errors.append(f"{name}: no healthcheck")
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else str(mount.get("source", ""))
            if source and not source.startswith((".", "/", "~", "$")) and source not in volumes:
                errors.append(f"{name}: volume {source!r} is not declared under top-level volumes")
        for secret in service.get("secrets") or []:
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            if secret_name not in secrets:
                errors.append(f"{name}: secret {secret_name!r} is not declared under top-level secrets")
        build = service.get("build")
        if isinstance(build, dict):
            context = root / str(build.get("context", "."))
            if not (context / str(build.get("dockerfile", "Dockerfile"))).is_file():
                errors.append(f"{name}: build file {build.get('dockerfile')} does not exist in {build.get('context')}")
        if "container_name" in service:
            errors.append(f"{name}: container_name prevents scaling and parallel projects")
        if "build" in service or str(service.get("image", "")).startswith("${SYNTHNER_REGISTRY"):
            if service.get("read_only") is not True or "ALL" not in (service.get("cap_drop") or []):
                errors.append(f"{name}: synthner containers run read_only with cap_drop ALL")
            environment = service.get("environment") or {}
            if "AMQP_URL" in environment and _duration_s(str(service.get("stop_grace_period", "10s"))) <= grace_default:
                errors.append(f"{name}: stop_grace_period must exceed SYNTHNER_BROKER_SHUTDOWN_GRACE_S")
        if not ((service.get("deploy") or {}).get("resources")):
            errors.append(f"{name}: no resource hints (deploy.resources)")
    for name in SCALED_COMPOSE_SERVICES:
        service = services.get(name, {})
        for port in service.get("ports") or []:
            published = str(port).count(":") >= 1 if isinstance(port, str | int) else "published" in port
            if published:
                errors.append(f"{name}: a fixed host port ({port}) breaks --scale {name}=N")
        if any(isinstance(m, str) and m.split(":", 1)[0] in volumes for m in service.get("volumes") or []):
            errors.append(f"{name}: a named volume would be shared by every scaled replica")
    if re.search(r"\bguest\b", text):
        errors.append("compose file mentions the default guest credentials")
    return errors


# --- Dockerfiles ---------------------------------------------------------------------------------------------------


def hadolint_errors(dockerfile: Path, config: Path) -> list[str]:
    executable = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(executable), "--no-color", "--config", str(config), str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [] if result.returncode == 0 else [line for line in result.stdout.splitlines() if line.strip()]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    buffer = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") and not buffer:
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            joined.append(buffer.strip())
        buffer = ""
    pairs: list[tuple[str, str]] = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _stages(pairs: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    stage: list[tuple[str, str]] = []
    for pair in pairs:
        if pair[0] == "FROM" and stage:
            yield stage
            stage = []
        stage.append(pair)
    if stage:
        yield stage


def _env_pairs(arguments: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for token in shlex.split(arguments):
        key, sep, value = token.partition("=")
        if sep:
            values[key] = value
    return values


def _exec_form(arguments: str) -> bool:
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return False
    return isinstance(parsed, list) and bool(parsed) and all(isinstance(p, str) for p in parsed)


def dockerfile_rule_errors(  # noqa: PLR0912
    dockerfile: Path, root: Path, light: bool, torch_free: bool = False
) -> list[str]:
    """The rules of issue 8 item 1, checked directly (hadolint covers general good practice)."""
    errors: list[str] = []
    pairs = instructions(dockerfile)
    first_from = next((i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM"), len(pairs))
    args = {}  # global ARGs (before the first FROM): their defaults name the base images
    for keyword, arguments in pairs[:first_from]:
        if keyword == "ARG":
            key, _, value = arguments.partition("=")
            args[key] = value.strip('"')
    stages = list(_stages(pairs[first_from:]))
    if len(stages) < 2:
        errors.append("not multi-stage (build and runtime stages)")
    stage_names: set[str] = set()
    for stage in stages:
        words = stage[0][1].split()
        words = [w for w in words if not w.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
        if len(words) >= 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
        if image in stage_names:
            continue
        _, tag, digest = split_image(image)
        if not tag or tag == "latest" or not re.search(r"\d+\.\d+", tag):
            errors.append(f"base image {image!r} is not pinned to a version tag")
        if not digest or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            errors.append(f"base image {image!r} is not pinned by digest")
    final = stages[-1] if stages else []
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    if not users:
        errors.append("the final stage sets no USER")
    elif users[-1].split(":")[0] in ("root", "0"):
        errors.append("the final stage runs as root")
    env: dict[str, str] = {}
    for keyword, arguments in final:
        if keyword == "ENV":
            env.update(_env_pairs(arguments))
    if env.get("PYTHONUNBUFFERED") != "1":
        errors.append("the final stage does not set PYTHONUNBUFFERED=1")
    entries = [(k, a) for k, a in final if k in ("CMD", "ENTRYPOINT")]
    if not entries:
        errors.append("no CMD or ENTRYPOINT")
    for keyword, arguments in entries:
        if not _exec_form(arguments):
            errors.append(f"{keyword} is not in exec form (JSON array): {arguments}")
    checks = [a for k, a in final if k == "HEALTHCHECK"]
    if not checks or checks[-1].upper() == "NONE":
        errors.append("no HEALTHCHECK")
    elif "CMD" in checks[-1] and not _exec_form(checks[-1].split("CMD", 1)[1].strip()):
        errors.append("HEALTHCHECK CMD is not in exec form")
    for keyword, arguments in pairs:
        if keyword in ("COPY", "ADD") and "--from" not in arguments:
            sources = [w for w in arguments.split() if not w.startswith("--")][:-1]
            for source in sources:
                if not (root / source).exists():
                    errors.append(f"{keyword} source {source!r} does not exist in the build context")
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            if torch_free and "pip install" in command and re.search(r"\[[^\]]*\bmodel\b[^\]]*\]", command):
                errors.append(f"a torch-free image installs the model extra (torch): {command.strip()}")
            if "pip install" not in command or not re.search(r"(?<![\w-])torch(?![\w-])", command):
                continue
            if torch_free:
                errors.append(f"a torch-free image installs torch: {command.strip()}")
            if not re.search(rf"(?<![\w-])torch=={re.escape(TORCH_VERSION)}(?![\w.])", command):
                errors.append(f"torch is installed without the pinned version {TORCH_VERSION}: {command.strip()}")
            if light and not command.strip().startswith("then "):
                errors.append("a light image (no model backend) installs torch unconditionally")
    return errors


def _pattern_inside(pattern: str, folder: str) -> bool:
    """Whether ``pattern`` names something inside ``folder`` (its leading segments match the folder's)."""
    pattern_parts, folder_parts = pattern.split("/"), folder.split("/")
    return len(pattern_parts) > len(folder_parts) and all(
        fnmatch.fnmatch(part, glob) for part, glob in zip(folder_parts, pattern_parts, strict=False)
    )


def dockerignore_errors(dockerfile: Path, dockerignore: Path) -> list[str]:
    """Every COPY source of the Dockerfile is let back in by a ``!`` pattern and not excluded again after it.

    The build context is the repository root; .dockerignore excludes everything first (``*``) so data and models never
    reach a layer, then re-includes the sources (a folder counts as included when something inside it is). Matching is
    by path prefix and ``fnmatch``, enough for these patterns.
    """
    patterns = [
        line.strip()
        for line in dockerignore.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    errors: list[str] = []
    for keyword, arguments in instructions(dockerfile):
        if keyword not in ("COPY", "ADD") or "--from" in arguments:
            continue
        for source in [w for w in arguments.split() if not w.startswith("--")][:-1]:
            included = False
            for pattern in patterns:
                negated = pattern.startswith("!")
                body = pattern.lstrip("!").rstrip("/")
                path = source.rstrip("/")
                if negated:  # a re-inclusion of the source, of something inside it, or of a folder holding it
                    if fnmatch.fnmatch(path, body) or path.startswith(body + "/") or _pattern_inside(body, path):
                        included = True
                elif fnmatch.fnmatch(path, body) or path.startswith(body + "/"):
                    included = False
            if not included:
                errors.append(f"{keyword} source {source!r} is excluded by .dockerignore")
    return errors


# --- all together --------------------------------------------------------------------------------------------------


def all_errors(root: Path = ROOT) -> list[str]:
    errors: list[str] = []
    k8s = root / "k8s"
    outside = example_secrets(k8s)
    for overlay in OVERLAYS:
        try:
            rendered = render_overlay(k8s, overlay)
        except KustomizeError as error:
            errors.append(f"k8s {overlay}: {error}")
            continue
        errors += [f"k8s {overlay}: {e}" for e in schema_errors(rendered) + policy_errors(rendered, outside)]
    errors += [f"compose: {e}" for e in compose_schema_errors(root / "compose.yaml")]
    errors += [f"compose: {e}" for e in compose_reference_errors(root / "compose.yaml", root / ".env.example", root)]
    for relative in DOCKERFILES:
        dockerfile = root / relative
        errors += [f"{relative}: {e}" for e in hadolint_errors(dockerfile, root / ".hadolint.yaml")]
        light, torch_free = relative in LIGHT_DOCKERFILES, relative in TORCH_FREE_DOCKERFILES
        errors += [f"{relative}: {e}" for e in dockerfile_rule_errors(dockerfile, root, light, torch_free)]
        errors += [f"{relative}: {e}" for e in dockerignore_errors(dockerfile, root / ".dockerignore")]
    return errors


if __name__ == "__main__":
    problems = all_errors()
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)
