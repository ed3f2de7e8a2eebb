"""The per-service broker users have one source: ``deploy/rabbitmq/definitions.json``. It is what the code says
(:mod:`synthner_shared.broker_users`), the dev overlay's broker and compose load it, every service connects as its
own user, and docs/deploy.md gives the same rabbitmqctl commands. (The broker itself is exercised on a private node:
``tests/reliability/test_broker_users.py``.)"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from synthner_shared.broker_users import (
    DEFAULT_NAMESPACE,
    DEFINITIONS_FILE,
    SERVICE_USERS,
    definitions,
    rabbitmqctl_commands,
    topic_permissions,
)
from synthner_shared.messaging.topology import NER_API, SHARED_ROLES, Topology
from tests.deploy.checks import ROOT, render_overlay
from tests.deploy.kustomize_lite import load_documents

ALL_ROLES = (*SHARED_ROLES, NER_API)
SERVICES = ("generator", "tracker", "annotator", "trainer", "ner-api")
COMPOSE_USERS = {"generator": "generator", "tracker": "tracker", "annotator": "annotator", "trainer": "trainer"}
COMPOSE_USERS |= {"trainer-gpu": "trainer", "ner-api": "ner-api"}


def file_definitions() -> dict[str, Any]:
    return json.loads((ROOT / DEFINITIONS_FILE).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def users() -> list[str]:
    return [u["name"] for u in file_definitions()["users"]]


def password_variable(user: str) -> str:
    return "PASSWORD_" + user.upper().replace("-", "_")


def test_the_definitions_file_is_what_the_code_renders() -> None:
    assert file_definitions() == definitions(), (
        "deploy/rabbitmq/definitions.json is stale: write json.dumps(definitions(), indent=2) to it"
    )
    assert all(u["password_hash"] == "" for u in file_definitions()["users"])


def test_the_dev_broker_imports_the_file_and_sets_every_users_password() -> None:
    resources = render_overlay(ROOT / "k8s", "dev")
    (config_map,) = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "rabbitmq-users"]
    assert json.loads(config_map["data"]["definitions.json"]) == file_definitions()
    assert config_map["data"]["setup-users.sh"] == (ROOT / "deploy/rabbitmq/setup-users.sh").read_text()
    broker = next(r for r in resources if r["kind"] == "StatefulSet" and r["metadata"]["name"] == "rabbitmq")
    pod = broker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["lifecycle"]["postStart"]["exec"]["command"] == ["sh", "/etc/synthner-rabbitmq/setup-users.sh"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["users"] == "/etc/synthner-rabbitmq"
    assert volumes["users"]["configMap"]["name"] == "rabbitmq-users"
    env = {e["name"]: e for e in container["env"]}
    secrets = example_secrets()
    for user in users():
        ref = env[password_variable(user)]["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], user


def example_secrets() -> dict[str, dict[str, str]]:
    found = load_documents(ROOT / "k8s/secrets-example/secrets.yaml")
    return {d["metadata"]["name"]: d["stringData"] for d in found if d.get("kind") == "Secret"}


def test_every_service_connects_as_its_own_user_in_every_overlay() -> None:
    urls = example_secrets()["synthner-broker"]
    for overlay in ("dev", "prod"):
        resources = render_overlay(ROOT / "k8s", overlay)
        for service in SERVICES:
            workload = next(r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == service)
            env = {e["name"]: e for e in workload["spec"]["template"]["spec"]["containers"][0].get("env") or []}
            ref = env["AMQP_URL"]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "synthner-broker"
            assert urlsplit(urls[ref["key"]]).username == f"synthner-{service}", (overlay, service)
    assert urlsplit(urls["AMQP_URL"]).username == "synthner-operator"  # synthner ops pods
    assert {urlsplit(u).username for u in urls.values()} == set(users())


def test_compose_creates_the_users_and_every_service_connects_as_its_own() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    setup = services["rabbitmq-users"]
    assert setup["entrypoint"] == ["sh", "/etc/synthner-rabbitmq/setup-users.sh"]
    assert "./deploy/rabbitmq:/etc/synthner-rabbitmq:ro" in setup["volumes"]
    assert {password_variable(u) for u in users()} == {k for k in setup["environment"] if k.startswith("PASSWORD_")}
    for service, user in COMPOSE_USERS.items():
        url = services[service]["environment"]["AMQP_URL"]
        assert url.startswith(f"amqp://synthner-{user}:"), service
        assert services[service]["depends_on"]["rabbitmq-users"]["condition"] == "service_completed_successfully"


def test_the_deploy_guide_gives_the_same_rabbitmqctl_commands() -> None:
    guide = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    missing = [c for c in rabbitmqctl_commands(file_definitions()) if c not in guide]
    assert missing == [], "docs/deploy.md lacks (or has stale) rabbitmqctl commands"


def test_each_users_retry_permission_admits_its_own_roles_retry_queues_and_nothing_else() -> None:
    """On the retry exchange (routing by queue name) a service's user may reach its own role's retry queues only:
    no work queue, no other role's retry queue (the broker itself: ``tests/reliability/test_broker_users.py``)."""
    topology = Topology(DEFAULT_NAMESPACE, 5, (1_000, 30_000))
    queues = {role: topology.queue_name(role, "pod-1.x" if role.per_instance else None) for role in ALL_ROLES}
    retries = {role: [topology.retry_queue_name(q, d) for d in topology.retry_delays_ms] for role, q in queues.items()}
    for user in SERVICE_USERS:
        (on_retry,) = [t for t in topic_permissions(user) if t["exchange"] == topology.retry_exchange]
        allowed = re.compile(on_retry["write"])
        for role in ALL_ROLES:
            assert not allowed.search(queues[role]), (user.name, queues[role])
            for name in retries[role]:
                assert bool(allowed.search(name)) == (role in user.consumes), (user.name, name)
