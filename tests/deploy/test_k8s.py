"""Every overlay renders offline and is valid: strict Kubernetes schemas, KEDA CRD schemas, and the rules of issue 8.

Each check is also shown to fail on a deliberately broken copy of k8s/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.checks import (
    OVERLAYS,
    ROOT,
    example_secrets,
    job_template_errors,
    policy_errors,
    render_overlay,
    schema_errors,
)
from tests.deploy.conftest import edit
from tests.deploy.kustomize_lite import KustomizeError, Resource, load_documents, render


def errors_of(k8s: Path, overlay: str = "dev", schemas: bool = True) -> list[str]:
    rendered = render_overlay(k8s, overlay)
    found = policy_errors(rendered, example_secrets(k8s))
    return (schema_errors(rendered) if schemas else []) + found


def find(resources: list[Resource], kind: str, name: str) -> dict[str, Any]:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_passes_schemas_and_rules(overlay: str) -> None:
    assert errors_of(ROOT / "k8s", overlay) == []


def test_prod_runs_the_trainer_on_a_cpu_node_and_its_trainings_as_gpu_jobs_with_shared_model_store() -> None:
    rendered = render_overlay(ROOT / "k8s", "prod")
    pod = find(rendered, "Deployment", "trainer")["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "nvidia.com/gpu" not in str(pod)  # the service holds no GPU
    trainer = pod["containers"][0]
    assert {"name": "SYNTHNER_TRAINER_JOB_RUNNER", "value": "kubernetes"} in trainer["env"]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["automountServiceAccountToken"] is True
    # The Job template: the same image, on the GPU pool, one GPU, bounded, no token, no network.
    cronjob = find(rendered, "CronJob", "trainer-job")
    assert cronjob["spec"]["suspend"] is True
    job = cronjob["spec"]["jobTemplate"]["spec"]
    job_pod = job["template"]["spec"]
    assert job_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in job_pod["tolerations"]
    (container,) = job_pod["containers"]
    assert container["name"] == "job"
    assert container["command"] == ["python", "-m", "synthner_trainer.job"]
    assert container["image"] == trainer["image"]
    assert container["image"].endswith(":0.1.0-cuda")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "SYNTHNER_TRAINER_DEVICE", "value": "cuda"} in container["env"]
    assert job_pod["automountServiceAccountToken"] is False
    assert {"activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"} <= set(job)
    assert find(rendered, "NetworkPolicy", "trainer-job")["spec"]["egress"] == []
    role = find(rendered, "Role", "trainer-jobs")
    assert {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]} in (
        role["rules"]
    )
    for claim in ("synthner-models", "synthner-trainer-jobs"):
        assert find(rendered, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
    assert find(rendered, "PersistentVolumeClaim", "synthner-trainer-data")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert {r["metadata"]["namespace"] for r in rendered} == {"synthner"}
    assert not [r for r in rendered if r["kind"] == "Secret"], "prod Secrets come from the secret store, not git"


def test_a_job_made_from_the_prod_template_is_a_valid_hardened_job() -> None:
    """What the kubernetes runner sends to the API server, built from the rendered CronJob, passes the strict schema
    and the job rules."""
    from synthner_trainer.kubernetes import job_from_template  # noqa: PLC0415 - the trainer's code, here only

    rendered = render_overlay(ROOT / "k8s", "prod")
    cronjob = find(rendered, "CronJob", "trainer-job")
    job = job_from_template(cronjob, "synthner-train-0123456789abcdef01234567", Path("/var/lib/synthner/jobs/x"))
    job["metadata"]["namespace"] = "synthner"
    policies = [r for r in rendered if r["kind"] == "NetworkPolicy"]
    assert schema_errors([job]) == []
    assert job_template_errors([job, *policies]) == []


def test_broken_copy_job_template_that_runs_on_a_schedule_or_unbounded_fails(deploy_copy: Path) -> None:
    template = deploy_copy / "k8s/components/gpu-jobs/trainer-job.yaml"
    edit(template, "suspend: true", "suspend: false")
    edit(template, "activeDeadlineSeconds: 21600", "parallelism: 1")
    edit(template, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    errors = errors_of(deploy_copy / "k8s", "prod", schemas=False)
    assert any("CronJob/trainer-job" in e and "suspended" in e for e in errors)
    assert any("CronJob/trainer-job" in e and "activeDeadlineSeconds" in e for e in errors)
    assert any("CronJob/trainer-job" in e and "readOnlyRootFilesystem" in e for e in errors)


def test_broken_copy_job_pods_reaching_the_internet_fail(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/components/gpu-jobs/trainer-job.yaml",
        "  egress: []",
        "  egress:\n    - to:\n        - ipBlock: {cidr: 0.0.0.0/0}\n"
        "      ports:\n        - {protocol: TCP, port: 443}",
    )
    errors = errors_of(deploy_copy / "k8s", "prod", schemas=False)
    assert any("NetworkPolicy/trainer-job" in e and "egress" in e for e in errors)


def test_broken_copy_trainer_role_granting_more_than_jobs_fails(deploy_copy: Path) -> None:
    edit(deploy_copy / "k8s/components/gpu-jobs/rbac.yaml", "resources: [pods]", "resources: [pods, secrets]")
    errors = errors_of(deploy_copy / "k8s", "prod", schemas=False)
    assert any("Deployment/trainer" in e and "automountServiceAccountToken" in e for e in errors)


def test_dev_is_cpu_only_with_its_own_broker_and_llama_cpp() -> None:
    rendered = render_overlay(ROOT / "k8s", "dev")
    assert "nvidia.com/gpu" not in str(rendered)
    assert find(rendered, "StatefulSet", "rabbitmq")
    assert find(rendered, "Deployment", "llm")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "synthner/llama-cpp:0.3.36"
    )


def test_ner_api_replicas_get_their_instance_name_from_the_pod_name() -> None:
    for overlay in OVERLAYS:
        container = find(render_overlay(ROOT / "k8s", overlay), "Deployment", "ner-api")["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert {
            "name": "SYNTHNER_NER_API_INSTANCE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        } in container["env"]


# --- broken copies -------------------------------------------------------------------------------------------------


def test_broken_copy_unknown_field_fails_strict_kubernetes_schema(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/ner-api.yaml",
        "httpGet: {path: /readyz, port: http}",
        "httpGet: {paht: /readyz, port: http}",
    )
    assert any("Deployment/ner-api" in e and "paht" in e for e in errors_of(deploy_copy / "k8s"))


def test_broken_copy_wrong_type_fails_kubernetes_schema(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/trainer.yaml",
        "terminationGracePeriodSeconds: 60",
        "terminationGracePeriodSeconds: soon",
    )
    assert any(
        "Deployment/trainer" in e and "terminationGracePeriodSeconds" in e for e in errors_of(deploy_copy / "k8s")
    )


def test_broken_copy_unknown_field_fails_keda_crd_schema(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/annotator.yaml",
        "  scaleTargetRef:\n    name: annotator",
        "  scaleTargetRef:\n    nme: annotator",
    )
    errors = errors_of(deploy_copy / "k8s")
    assert any("ScaledObject/annotator" in e and "'name' is a required property" in e for e in errors)


def test_broken_copy_keda_over_amqp_fails(deploy_copy: Path) -> None:
    edit(deploy_copy / "k8s/base/annotator.yaml", "protocol: http", "protocol: amqp")
    assert any("protocol: http" in e for e in errors_of(deploy_copy / "k8s", schemas=False))


def test_broken_copy_queue_name_not_matching_broker_namespace_fails(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/common.yaml", "SYNTHNER_BROKER_NAMESPACE: synthner", "SYNTHNER_BROKER_NAMESPACE: other"
    )
    assert any("queueName" in e for e in errors_of(deploy_copy / "k8s", schemas=False))


def test_broken_copy_grace_period_shorter_than_shutdown_grace_fails(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/annotator.yaml",
        "terminationGracePeriodSeconds: 40",
        "terminationGracePeriodSeconds: 20",
    )
    assert any(
        "Deployment/annotator" in e and "must exceed" in e for e in errors_of(deploy_copy / "k8s", schemas=False)
    )


def test_broken_copy_writable_root_filesystem_fails(deploy_copy: Path) -> None:
    edit(deploy_copy / "k8s/base/generator.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    assert any(
        "generator" in e and "readOnlyRootFilesystem" in e for e in errors_of(deploy_copy / "k8s", schemas=False)
    )


def test_broken_copy_missing_readiness_probe_fails(deploy_copy: Path) -> None:
    edit(deploy_copy / "k8s/base/trainer.yaml", "readinessProbe:", "startupProbeX:")
    errors = errors_of(deploy_copy / "k8s", schemas=False)
    assert any("Deployment/trainer" in e and "no readinessProbe" in e for e in errors)


def test_broken_copy_ner_api_open_egress_fails(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/ner-api.yaml",
        "  egress:\n    - to:",
        "  egress:\n    - to:\n        - ipBlock: {cidr: 0.0.0.0/0}\n"
        "      ports:\n        - {protocol: TCP, port: 443}\n    - to:",
    )
    assert any("ner-api egress may reach only the broker" in e for e in errors_of(deploy_copy / "k8s", schemas=False))


def test_llm_model_fill_pod_is_valid_and_can_write_the_prod_model_volume() -> None:
    (pod,) = load_documents(ROOT / "k8s/overlays/prod/llm-model-fill.yaml")
    assert schema_errors([pod]) == []
    claim = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    assert not mount.get("readOnly")
    pvc = find(render_overlay(ROOT / "k8s", "prod"), "PersistentVolumeClaim", claim)
    # A pod can write a volume only through a read-write access mode.
    assert set(pvc["spec"]["accessModes"]) & {"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"}
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_ingress_component_publishes_the_api_over_tls_and_admits_the_controller() -> None:
    rendered = render_overlay(ROOT / "k8s", "prod-ingress")
    ingress = find(rendered, "Ingress", "ner-api")
    service = find(rendered, "Service", "ner-api")
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
    assert [rule["host"]] == ingress["spec"]["tls"][0]["hosts"]
    peers = find(rendered, "NetworkPolicy", "ner-api")["spec"]["ingress"][0]["from"]
    namespaces = [peer["namespaceSelector"]["matchLabels"] for peer in peers]
    # The controller is admitted and the client namespaces still are (api_keys mode: the API checks the keys).
    assert {"kubernetes.io/metadata.name": "ingress-nginx"} in namespaces
    assert {"synthner.io/ner-api-client": "true"} in namespaces


def test_broken_copy_broker_rule_without_the_operators_label_fails(deploy_copy: Path) -> None:
    # The RabbitMQ cluster operator names its pods' app.kubernetes.io/name after the cluster, not "rabbitmq".
    edit(deploy_copy / "k8s/base/trainer.yaml", "app.kubernetes.io/component: rabbitmq", "app.kubernetes.io/x: y")
    errors = errors_of(deploy_copy / "k8s", schemas=False)
    assert any("Deployment/trainer" in e and "no egress rule reaches a broker" in e for e in errors)


def test_broken_copy_peer_with_an_empty_label_match_fails(deploy_copy: Path) -> None:
    # An empty matchLabels under namespaceSelector {} admits every pod of the cluster: it must never pass as a rule.
    edit(deploy_copy / "k8s/base/tracker.yaml", "app.kubernetes.io/component: rabbitmq", "{}")
    edit(deploy_copy / "k8s/base/tracker.yaml", "matchLabels:\n              {}", "matchLabels: {}")
    errors = errors_of(deploy_copy / "k8s", schemas=False)
    assert any("NetworkPolicy/tracker" in e and "selects every pod of every namespace" in e for e in errors)


def test_broken_copy_secret_key_not_documented_fails(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/trainer.yaml",
        "secretKeyRef: {name: synthner-broker, key: AMQP_URL_TRAINER}",
        "secretKeyRef: {name: synthner-broker, key: URL}",
    )
    assert any("missing Secret key" in e for e in errors_of(deploy_copy / "k8s", "prod", schemas=False))


def test_broken_copy_replicas_on_an_autoscaled_deployment_fails(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "k8s/base/annotator.yaml", "  revisionHistoryLimit: 3", "  replicas: 2\n  revisionHistoryLimit: 3"
    )
    assert any("spec.replicas must be unset" in e for e in errors_of(deploy_copy / "k8s", schemas=False))


def test_broken_copy_patch_of_missing_resource_fails_to_render(deploy_copy: Path) -> None:
    edit(deploy_copy / "k8s/overlays/prod/trainer-gpu.yaml", "name: trainer", "name: trainr")
    with pytest.raises(KustomizeError, match="matches 0 resources"):
        render_overlay(deploy_copy / "k8s", "prod")


def test_example_secrets_hold_placeholders_only() -> None:
    documents = load_documents(ROOT / "k8s" / "secrets-example" / "secrets.yaml")
    assert documents
    for secret in documents:
        assert "data" not in secret, "examples use readable stringData"
        for key, value in secret["stringData"].items():
            assert key == "username" or "CHANGE-ME" in value, f"{secret['metadata']['name']}.{key} looks real"


def test_base_holds_no_secret() -> None:
    assert not [r for r in render(ROOT / "k8s" / "base") if r["kind"] == "Secret"]
