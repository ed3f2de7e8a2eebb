"""The small Kustomize renderer does what Kustomize does for the features k8s/ uses, and refuses the rest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.checks import OVERLAYS, ROOT
from tests.deploy.kustomize_lite import KustomizeError, render, resource_id

BASE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: example/web:1.0
          env: [{name: A, value: "1"}, {name: B, value: "2"}]
          ports: [{containerPort: 80, name: http}]
        - name: sidecar
          image: example/sidecar:2.0@sha256:0000000000000000000000000000000000000000000000000000000000000000
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web}
spec:
  scaleTargetRef: {name: web}
  triggers: [{type: cpu, metadata: {value: "50"}}, {type: memory, metadata: {value: "70"}}]
"""


def write_tree(root: Path, overlay: str, patches: dict[str, str]) -> Path:
    (root / "base").mkdir(parents=True)
    (root / "base" / "all.yaml").write_text(BASE)
    (root / "base" / "kustomization.yaml").write_text("resources: [all.yaml]\n")
    (root / "overlay").mkdir()
    (root / "overlay" / "kustomization.yaml").write_text(overlay)
    for name, text in patches.items():
        (root / "overlay" / name).write_text(text)
    return root / "overlay"


def by_kind(resources: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["kind"]): r for r in resources}


def test_render_given_strategic_patch_merges_containers_and_env_by_name(tmp_path: Path) -> None:
    patch = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
        - name: web
          env: [{name: B, value: "changed"}, {name: C, value: "3"}]
"""
    overlay = write_tree(tmp_path, "resources: [../base]\npatches: [{path: p.yaml}]\n", {"p.yaml": patch})
    deployment = by_kind(render(overlay))["Deployment"]
    containers = deployment["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    assert [c["name"] for c in containers] == ["web", "sidecar"]
    assert containers[0]["env"] == [
        {"name": "C", "value": "3"},
        {"name": "A", "value": "1"},
        {"name": "B", "value": "changed"},
    ]
    assert containers[0]["ports"] == [{"containerPort": 80, "name": "http"}]


def test_render_given_patch_of_custom_resource_replaces_lists(tmp_path: Path) -> None:
    patch = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: web}
spec:
  maxReplicaCount: 3
  triggers: [{type: cpu, metadata: {value: "80"}}]
"""
    overlay = write_tree(tmp_path, "resources: [../base]\npatches: [{path: p.yaml}]\n", {"p.yaml": patch})
    spec = by_kind(render(overlay))["ScaledObject"]["spec"]
    assert spec == {
        "scaleTargetRef": {"name": "web"},
        "maxReplicaCount": 3,
        "triggers": [{"type": "cpu", "metadata": {"value": "80"}}],
    }


def test_render_sets_namespace_labels_and_images(tmp_path: Path) -> None:
    overlay = write_tree(
        tmp_path,
        """
namespace: team
resources: [../base]
labels: [{pairs: {part-of: demo}, includeSelectors: false, includeTemplates: true}]
images:
  - {name: example/web, newName: registry.example/web, newTag: "1.1"}
  - {name: example/sidecar, newTag: "2.1"}
""",
        {},
    )
    resources = render(overlay)
    assert {resource_id(r)[2] for r in resources} == {"team"}
    deployment = by_kind(resources)["Deployment"]
    assert deployment["metadata"]["labels"] == {"part-of": "demo"}  # type: ignore[index]
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web", "part-of": "demo"}  # type: ignore[index]
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}  # type: ignore[index]
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]  # type: ignore[index]
    assert images == ["registry.example/web:1.1", "example/sidecar:2.1"]


def test_render_given_component_adds_its_resources_and_patches_what_came_before(tmp_path: Path) -> None:
    overlay = write_tree(tmp_path, "namespace: team\nresources: [../base]\ncomponents: [../extra]\n", {})
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
        "resources: [cm.yaml]\npatches: [{path: p.yaml}]\n"
    )
    (tmp_path / "extra" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n")
    (tmp_path / "extra" / "p.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {revisionHistoryLimit: 2}\n"
    )
    resources = by_kind(render(overlay))
    assert resources["ConfigMap"]["metadata"] == {"name": "extra", "namespace": "team"}
    assert resources["Deployment"]["spec"]["revisionHistoryLimit"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("overlay", "patches", "message"),
    [
        ("resources: [../base]\nreplicas: [{name: web, count: 2}]\n", {}, "unsupported kustomization fields"),
        ("resources: [../base, missing.yaml]\n", {}, "does not exist"),
        ("resources: [../base, ../base]\n", {}, "appears twice"),
        (
            "resources: [../base]\npatches: [{path: p.yaml}]\n",
            {"p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nope}\nspec: {replicas: 2}\n"},
            "matches 0 resources",
        ),
        (
            "resources: [../base]\npatches: [{path: p.yaml, target: {kind: Deployment}}]\n",
            {"p.yaml": "[]"},
            "only 'patches: - path: FILE'",
        ),
        (
            "resources: [../base]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n",
            {},
            "includeSelectors: true are not supported",
        ),
        ("resources: [../base]\ncomponents: [../base]\n", {}, "kind 'Kustomization' where a Component is listed"),
        ("resources: [../base]\ncomponents: [nowhere]\n", {}, "component 'nowhere' is not a directory"),
    ],
)
def test_render_given_unsupported_or_broken_kustomization_fails(
    tmp_path: Path, overlay: str, patches: dict[str, str], message: str
) -> None:
    with pytest.raises(KustomizeError, match=message):
        render(write_tree(tmp_path, overlay, patches))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (the comparison is optional)")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_render_of_each_overlay_equals_kubectl_kustomize(overlay: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], capture_output=True, text=True, check=True
    )
    theirs = {resource_id(d): d for d in yaml.safe_load_all(result.stdout) if d}
    ours = {resource_id(d): d for d in render(ROOT / "k8s" / "overlays" / overlay)}
    assert ours == theirs
