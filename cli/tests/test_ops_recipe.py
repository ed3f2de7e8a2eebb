"""The in-cluster recipe for ``synthner ops`` (docs/deploy.md): ``kubectl run`` with the generator image and
``k8s/ops/synthner-ops-overrides.json``. Validated offline, as the manifests are: the pod kubectl would create is a
valid, hardened Pod, everything it names exists in the base, and the ops NetworkPolicy selects it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ROOT / "k8s/ops/synthner-ops-overrides.json"


def base_resources() -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for path in sorted((ROOT / "k8s/base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return resources


def named(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert matches, f"no {kind}/{name} in k8s/base"
    return matches[0]


def pod_as_kubectl_run_makes_it(image: str, args: list[str]) -> dict[str, Any]:
    """``kubectl run synthner-ops --image IMAGE --restart=Never --overrides=... --override-type=strategic -- ARGS``:
    the generated pod with the overrides merged in (containers by name, maps key by key)."""
    overrides = json.loads(OVERRIDES.read_text())
    generated: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "synthner-ops"},
        "spec": {"containers": [{"name": "synthner-ops", "image": image, "args": args}], "restartPolicy": "Never"},
    }
    pod = {**generated, **{k: v for k, v in overrides.items() if k not in ("metadata", "spec")}}
    pod["metadata"] = {**generated["metadata"], **overrides["metadata"]}
    spec = {**generated["spec"], **{k: v for k, v in overrides["spec"].items() if k != "containers"}}
    by_name = {c["name"]: c for c in overrides["spec"]["containers"]}
    spec["containers"] = [{**c, **by_name.get(c["name"], {})} for c in generated["spec"]["containers"]]
    pod["spec"] = spec
    return pod


def test_the_recipe_makes_a_valid_hardened_pod() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    pod = pod_as_kubectl_run_makes_it("registry.hospital.example/synthner/generator:0.1.0", ["synthner", "ops"])
    kubernetes_validate.validate(pod, "1.30", strict=True)
    spec, (container,) = pod["spec"], pod["spec"]["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] == "models")
    assert "limits" in container["resources"]


def test_what_the_recipe_names_exists_and_the_ops_policy_selects_it() -> None:
    resources = base_resources()
    overrides = json.loads(OVERRIDES.read_text())
    (container,) = overrides["spec"]["containers"]
    named(resources, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    named(resources, "PersistentVolumeClaim", "synthner-models")
    secret_ref = container["env"][0]["valueFrom"]["secretKeyRef"]
    secrets = [doc for doc in yaml.safe_load_all((ROOT / "k8s/secrets-example/secrets.yaml").read_text()) if doc]
    secret = next(s for s in secrets if s["metadata"]["name"] == secret_ref["name"])
    assert secret_ref["key"] in {**secret.get("stringData", {}), **secret.get("data", {})}
    ner_api = named(resources, "ConfigMap", "ner-api")
    assert container["env"][1] == {
        "name": "SYNTHNER_NER_API_MODEL_STORE",
        "value": ner_api["data"]["SYNTHNER_NER_API_MODEL_STORE"],
    }
    policy = named(resources, "NetworkPolicy", "synthner-ops")
    selected = policy["spec"]["podSelector"]["matchLabels"].items()
    assert selected <= overrides["metadata"]["labels"].items()
    assert policy["spec"]["ingress"] == []
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {5672, 5671}


def test_the_deploy_guide_uses_the_overrides_file() -> None:
    guide = (ROOT / "docs/deploy.md").read_text()
    assert '--overrides="$(cat k8s/ops/synthner-ops-overrides.json)"' in guide
    assert "--override-type=strategic" in guide
