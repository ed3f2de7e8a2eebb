"""An offline Kustomize renderer for the subset of Kustomize that ``k8s/`` uses, so CI needs no kubectl binary.

No registry we may use ships a kustomize binary that installs offline (the PyPI ``kustomize`` package is an unrelated
re-implementation; ``pykustomize`` needs Python 3.14), so the tests render overlays with this module. It supports
exactly what the manifests use and refuses everything else loudly, so a new Kustomize feature in ``k8s/`` fails the
tests instead of being silently ignored:

- ``resources``: YAML files (several documents each) and directories holding a ``kustomization.yaml``;
- ``components``: directories whose ``kustomization.yaml`` is a ``kind: Component``, rendered into the including
  kustomization after its resources (and before its generators, patches and transformers): a component's resources
  are added to everything accumulated so far, and its own patches and transformers apply to all of it, as in
  Kustomize. A component listed under ``resources``, or a kustomization under ``components``, is refused;
- ``namespace``: set on every namespaced resource (and on a RoleBinding's ServiceAccount subjects without one);
- ``labels`` with ``includeSelectors: false`` (and optionally ``includeTemplates: true``);
- ``images``: ``name`` with ``newName``, ``newTag`` and/or ``digest``;
- ``configMapGenerator`` with ``files`` (``KEY=FILE`` or ``FILE``, inside the kustomization's folder), only with
  ``generatorOptions: {disableNameSuffixHash: true}`` (the name stays as written, so nothing needs re-pointing);
- ``patches`` given as ``path`` to a strategic-merge patch: merged by Kubernetes' strategic-merge rules (lists of
  containers, env, volumes, ... merged by their key; other lists replaced) for built-in kinds, and by JSON merge patch
  (RFC 7386: lists replaced) for custom resources, as Kustomize does.

Where ``kubectl`` is installed, ``test_kustomize_lite.py`` checks that this renders every overlay exactly as
``kubectl kustomize`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "images",
        "patches",
        "components",
        "configMapGenerator",
        "generatorOptions",
    }
)
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "PersistentVolume",
        "StorageClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "IngressClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ClusterTriggerAuthentication",
    }
)
# Kubernetes' strategic-merge keys for the list fields the manifests patch (from the API types' patchMergeKey).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "conditions": "type",
}
# Built-in API groups: their resources are patched with strategic-merge rules; anything else is a custom resource.
BUILTIN_GROUPS = frozenset(
    {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io", "storage.k8s.io"}
)
TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


class KustomizeError(Exception):
    """The kustomization cannot be rendered (or uses a feature this renderer does not implement)."""


def load_documents(path: Path) -> list[Resource]:
    """Every non-empty YAML document of ``path``, each of which must be a mapping."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except yaml.YAMLError as error:
        raise KustomizeError(f"{path}: not valid YAML: {error}") from error
    for document in documents:
        if not isinstance(document, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return documents


def resource_id(resource: Resource) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name), the identity Kustomize uses to match patches and detect duplicates."""
    api_version = str(resource.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    metadata = resource.get("metadata") or {}
    return group, str(resource.get("kind", "")), str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def render(directory: Path, into: list[Resource] | None = None) -> list[Resource]:  # noqa: PLR0912
    """Render the kustomization in ``directory`` (base first, then this level's patches and transformers).

    ``into``: the resources accumulated by the kustomization that lists ``directory`` as a component; the component is
    rendered into that list (and returns it).
    """
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    documents = load_documents(kustomization_file)
    if len(documents) != 1:
        raise KustomizeError(f"{kustomization_file}: expected one document")
    spec = documents[0]
    unsupported = set(spec) - SUPPORTED_KEYS
    if unsupported:
        raise KustomizeError(f"{kustomization_file}: unsupported kustomization fields {sorted(unsupported)}")
    expected = "Component" if into is not None else "Kustomization"
    kind = spec.get("kind", "Kustomization")
    if kind != expected:
        raise KustomizeError(f"{kustomization_file}: kind {kind!r} where a {expected} is listed")

    resources: list[Resource] = [] if into is None else into
    for entry in spec.get("resources") or []:
        path = directory / str(entry)
        if path.is_dir():
            resources.extend(render(path))
        elif path.is_file():
            resources.extend(load_documents(path))
        else:
            raise KustomizeError(f"{kustomization_file}: resource {entry!r} does not exist")
    for entry in spec.get("components") or []:
        path = directory / str(entry)
        if not path.is_dir():
            raise KustomizeError(f"{kustomization_file}: component {entry!r} is not a directory")
        render(path, resources)
    resources.extend(_generated_config_maps(spec, directory, kustomization_file))
    _check_unique(resources, kustomization_file)

    for patch_entry in spec.get("patches") or []:
        if not isinstance(patch_entry, dict) or set(patch_entry) != {"path"}:
            raise KustomizeError(f"{kustomization_file}: only 'patches: - path: FILE' is supported, got {patch_entry}")
        patch_file = directory / str(patch_entry["path"])
        if not patch_file.is_file():
            raise KustomizeError(f"{kustomization_file}: patch {patch_entry['path']!r} does not exist")
        for patch in load_documents(patch_file):
            _apply_patch(resources, patch, patch_file)

    namespace = spec.get("namespace")
    if namespace is not None:
        for resource in resources:
            if resource.get("kind") not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = str(namespace)
            if resource.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
                for subject in resource.get("subjects") or []:  # as Kustomize: service accounts move with it
                    if subject.get("kind") == "ServiceAccount" and not subject.get("namespace"):
                        subject["namespace"] = str(namespace)

    for label_spec in spec.get("labels") or []:
        _apply_labels(resources, label_spec, kustomization_file)
    for image in spec.get("images") or []:
        _apply_image(resources, image, kustomization_file)
    _check_unique(resources, kustomization_file)
    return resources


def _generated_config_maps(spec: Resource, directory: Path, where: Path) -> list[Resource]:
    generators = spec.get("configMapGenerator") or []
    if not generators:
        return []
    if spec.get("generatorOptions") != {"disableNameSuffixHash": True}:
        raise KustomizeError(f"{where}: configMapGenerator needs generatorOptions: {{disableNameSuffixHash: true}}")
    config_maps = []
    for generator in generators:
        if not isinstance(generator, dict) or set(generator) != {"name", "files"}:
            raise KustomizeError(f"{where}: only configMapGenerator entries with name and files are supported")
        data = {}
        for entry in generator["files"]:
            key, _, name = str(entry).rpartition("=")
            path = (directory / name).resolve()
            if not path.is_relative_to(directory.resolve()) or not path.is_file():
                raise KustomizeError(f"{where}: generator file {name!r} is not a file inside {directory}")
            data[key or path.name] = path.read_text(encoding="utf-8")
        config_maps.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}
        )
    return config_maps


def _check_unique(resources: list[Resource], where: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        identity = resource_id(resource)
        if identity in seen:
            raise KustomizeError(f"{where}: resource {identity} appears twice")
        seen.add(identity)


def _apply_patch(resources: list[Resource], patch: Resource, patch_file: Path) -> None:
    group, kind, namespace, name = resource_id(patch)
    targets = [
        r
        for r in resources
        if resource_id(r)[:2] == (group, kind) and resource_id(r)[3] == name and namespace in ("", resource_id(r)[2])
    ]
    if len(targets) != 1:
        raise KustomizeError(f"{patch_file}: patch for {kind}/{name} matches {len(targets)} resources, expected 1")
    target = targets[0]
    strategic = group in BUILTIN_GROUPS
    merged = _merge(target, patch, strategic)
    target.clear()
    target.update(merged)


def _merge(base: Any, patch: Any, strategic: bool, field: str = "") -> Any:
    if isinstance(patch, dict):
        if "$patch" in patch or any(str(key).startswith("$") for key in patch):
            raise KustomizeError(f"patch directives ({field}) are not supported")
        if not isinstance(base, dict):
            return {k: v for k, v in copy.deepcopy(patch).items() if v is not None}
        result = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = _merge(result[key], value, strategic, key)
            else:
                result[key] = _merge(None, value, strategic, key)
        return result
    if isinstance(patch, list) and strategic and isinstance(base, list):
        key = _merge_key(field, base + patch)
        if key is not None:
            # Items only in the patch come first, in patch order: that is where kubectl kustomize (kyaml) puts them.
            merged = copy.deepcopy(base)
            added = []
            for item in patch:
                match = next((i for i, old in enumerate(merged) if old.get(key) == item.get(key)), None)
                if match is None:
                    added.append(copy.deepcopy(item))
                else:
                    merged[match] = _merge(merged[match], item, strategic, field)
            return added + merged
    return copy.deepcopy(patch)


def _merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    if field == "ports":  # container ports merge on containerPort, Service ports on port
        return "containerPort" if all("containerPort" in item for item in items) else "port"
    return MERGE_KEYS.get(field)


def _apply_labels(resources: list[Resource], label_spec: Any, where: Path) -> None:
    if not isinstance(label_spec, dict) or set(label_spec) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise KustomizeError(f"{where}: unsupported labels entry {label_spec}")
    if label_spec.get("includeSelectors"):
        raise KustomizeError(f"{where}: labels with includeSelectors: true are not supported (selectors are immutable)")
    pairs = {str(k): str(v) for k, v in (label_spec.get("pairs") or {}).items()}
    for resource in resources:
        resource.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if label_spec.get("includeTemplates") and resource.get("kind") in TEMPLATE_KINDS:
            template = resource.setdefault("spec", {}).setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` -> (name, tag, digest)."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1 :], digest or None
    return rest, None, digest or None


def _apply_image(resources: list[Resource], image: Any, where: Path) -> None:
    if not isinstance(image, dict) or "name" not in image or set(image) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"{where}: unsupported images entry {image}")
    for resource in resources:
        for container in _containers(resource.get("spec")):
            name, tag, digest = split_image(str(container.get("image", "")))
            if name != image["name"]:
                continue
            new_name = str(image.get("newName", name))
            if "digest" in image:
                container["image"] = f"{new_name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{new_name}:{image['newTag']}"
            else:
                suffix = (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                container["image"] = new_name + suffix
