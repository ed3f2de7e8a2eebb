"""The NER API behind an authenticating proxy (``k8s/overlays/prod/ner-api-trusted-proxy.yaml``, not applied by
default): with the patch added to prod, the overlay still passes every rule, the API's settings accept the ConfigMap,
and only the proxy's namespace (and monitoring) reaches the pods — client namespaces no longer reach them directly."""

from __future__ import annotations

import shutil
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthner_ner_api.settings import NerApiSettings
from tests.deploy.checks import ROOT, example_secrets, policy_errors, render_overlay, schema_errors
from tests.deploy.kustomize_lite import Resource

PATCH = "ner-api-trusted-proxy.yaml"


def find(resources: list[Resource], kind: str, name: str) -> dict[str, Any]:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


@pytest.fixture
def proxied_prod(tmp_path: Path) -> list[Resource]:
    k8s = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", k8s)
    kustomization = k8s / "overlays" / "prod" / "kustomization.yaml"
    spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    assert {"path": PATCH} not in spec["patches"], "the base runs api_keys: the proxy patch is opt-in"
    spec["patches"].append({"path": PATCH})
    kustomization.write_text(yaml.safe_dump(spec), encoding="utf-8")
    rendered = render_overlay(k8s, "prod")
    assert policy_errors(rendered, example_secrets(k8s)) == []
    assert schema_errors(rendered) == []
    return rendered


def test_behind_the_proxy_only_its_namespace_reaches_the_api(proxied_prod: list[Resource]) -> None:
    policy = find(proxied_prod, "NetworkPolicy", "ner-api")
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    namespaces = {peer["namespaceSelector"]["matchLabels"].get("kubernetes.io/metadata.name") for peer in peers}
    assert namespaces == {"ingress-nginx", "monitoring"}
    assert all("synthner.io/ner-api-client" not in peer["namespaceSelector"]["matchLabels"] for peer in peers)


def test_behind_the_proxy_the_api_believes_the_header_only_from_the_proxy_range(
    proxied_prod: list[Resource], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in find(proxied_prod, "ConfigMap", "ner-api")["data"].items():
        monkeypatch.setenv(name, str(value))
    settings = NerApiSettings()  # every value from the environment
    assert settings.auth_mode == "trusted_proxy"
    assert settings.trusted_proxy_cidrs == [ip_network("10.244.0.0/16")]


def test_without_the_patch_clients_call_the_pods_with_their_keys() -> None:
    rendered = render_overlay(ROOT / "k8s", "prod")
    assert find(rendered, "ConfigMap", "ner-api")["data"]["SYNTHNER_NER_API_AUTH_MODE"] == "api_keys"
