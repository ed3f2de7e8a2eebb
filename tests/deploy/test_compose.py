"""compose.yaml is valid against the compose-spec schema, every reference in it resolves, and annotators scale.

Each check is also shown to fail on a deliberately broken copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.checks import ROOT, compose_reference_errors, compose_schema_errors
from tests.deploy.conftest import edit


def reference_errors(root: Path) -> list[str]:
    return compose_reference_errors(root / "compose.yaml", root / ".env.example", root)


def test_compose_file_matches_compose_spec_schema() -> None:
    assert compose_schema_errors(ROOT / "compose.yaml") == []


def test_compose_references_resolve() -> None:
    assert reference_errors(ROOT) == []


def test_broken_copy_unknown_key_fails_compose_spec_schema(deploy_copy: Path) -> None:
    edit(deploy_copy / "compose.yaml", "  interval: 15s\n  timeout: 5s", "  intervall: 15s\n  timeout: 5s")
    errors = compose_schema_errors(deploy_copy / "compose.yaml")
    assert errors
    assert "intervall" in errors[0]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      <<: *after-broker\n    deploy:\n      replicas",
            "      rabbit:\n        condition: service_healthy\n    deploy:\n      replicas",
            "depends_on 'rabbit'",
        ),
        (
            "      - generator-state:/var/lib/synthner/generator",
            "      - generator-sate:/var/lib/synthner/generator",
            "'generator-sate' is not declared",
        ),
        ("${SYNTHNER_BROKER_PREFETCH:-8}", "${SYNTHNER_BROKER_PREFECH:-8}", "SYNTHNER_BROKER_PREFECH"),
        (
            "  annotator:\n    # Scaled",
            "  annotator:\n    container_name: annotator\n    # Scaled",
            "container_name prevents scaling",
        ),
        (
            "    healthcheck: *health-probe\n    depends_on:\n      <<: *after-broker\n    deploy:\n      replicas",
            '    healthcheck: *health-probe\n    ports: ["8081:8080"]\n'
            "    depends_on:\n      <<: *after-broker\n    deploy:\n      replicas",
            "breaks --scale annotator",
        ),
        ("  stop_grace_period: 35s", "  stop_grace_period: 20s", "stop_grace_period must exceed"),
        ("RABBITMQ_USER:?set RABBITMQ_USER in .env}", "RABBITMQ_USER:-guest}", "guest"),
    ],
)
def test_broken_copy_fails_reference_checks(deploy_copy: Path, old: str, new: str, expected: str) -> None:
    edit(deploy_copy / "compose.yaml", old, new)
    assert any(expected in e for e in reference_errors(deploy_copy)), reference_errors(deploy_copy)


def test_broken_copy_healthy_condition_on_service_without_healthcheck_fails(deploy_copy: Path) -> None:
    edit(
        deploy_copy / "compose.yaml",
        '      test: ["CMD", "rabbitmq-diagnostics", "-q", "check_port_connectivity"]',
        "      disable: true",
    )
    # disable: true keeps the key, so remove the whole block to really drop it
    text = (deploy_copy / "compose.yaml").read_text()
    start = text.index("    healthcheck:\n      disable: true")
    end = text.index("    restart: unless-stopped", start)
    (deploy_copy / "compose.yaml").write_text(text[:start] + text[end:])
    assert any("rabbitmq has no healthcheck" in e for e in reference_errors(deploy_copy))


def test_broken_copy_stale_env_example_entry_fails(deploy_copy: Path) -> None:
    with (deploy_copy / ".env.example").open("a") as handle:
        handle.write("SYNTHNER_FORGOTTEN=1\n")
    assert any("SYNTHNER_FORGOTTEN" in e for e in reference_errors(deploy_copy))
