"""The generator's endpoint is internal only when declared so and allow-listed; production refuses an internal
endpoint off the list and an external one without a leak reference; notes are 'passed' only when every check ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from synthner_generator.planning import JobRefused, validate
from synthner_generator.service import build_generator, job_context
from synthner_generator.settings import GeneratorSettings
from synthner_generator.testing import local_llm_server, sample_job, settings_for
from synthner_shared.contracts import NoteGenerated
from synthner_shared.egress import EgressConfigurationError
from synthner_shared.ngrams import NgramReference

REFERENCE_NOTES = ["Paciente de 70 años de edad, minero jubilado, sin alergias medicamentosas conocidas, intervenido."]


def settings(tmp_path: Path, **values: Any) -> GeneratorSettings:
    prefixes = tmp_path / "heldout_prefixes.jsonl"
    prefixes.write_text('{"id": "heldout-1", "text": "Paciente de", "entities": [], "prefix_filter": "v1"}\n')
    return GeneratorSettings.model_validate({"prefix_file": prefixes, **values})


def reference(tmp_path: Path) -> Path:
    path = tmp_path / "leak_reference.npz"
    NgramReference.build(REFERENCE_NOTES).save(path)
    return path


def test_an_endpoint_declared_internal_off_the_allow_list_counts_as_external(tmp_path: Path) -> None:
    public = settings(tmp_path, endpoint_url="https://llm.example.com/v1", endpoint_zone="internal")
    assert public.external_endpoint
    with pytest.raises(JobRefused, match="not marked internal"):
        validate(sample_job(mode="prefix"), job_context(public))
    listed = settings(tmp_path, endpoint_url="http://llm:8000/v1", endpoint_zone="internal", internal_hosts='["llm"]')
    assert not listed.external_endpoint
    cluster = settings(
        tmp_path, endpoint_url="http://vllm.synthner.svc.cluster.local:8000/v1", endpoint_zone="internal"
    )
    assert not cluster.external_endpoint
    assert settings(tmp_path, endpoint_url="http://127.0.0.1:8080/v1").external_endpoint, "not declared internal"


def test_production_refuses_an_internal_endpoint_off_the_list(tmp_path: Path) -> None:
    public = settings(tmp_path, endpoint_url="http://llm:8000/v1", endpoint_zone="internal", environment="production")
    with pytest.raises(EgressConfigurationError, match="host 'llm' is not on the internal-host allow-list"):
        public.refuse_unsafe_egress()
    settings(
        tmp_path,
        endpoint_url="http://llm:8000/v1",
        endpoint_zone="internal",
        environment="production",
        internal_hosts="llm",
    ).refuse_unsafe_egress()


def test_production_refuses_an_external_endpoint_without_a_leak_reference(tmp_path: Path) -> None:
    external = settings(tmp_path, endpoint_url="https://api.example.com/v1", environment="production")
    with pytest.raises(EgressConfigurationError, match="without a leak reference"):
        external.refuse_unsafe_egress()
    settings(
        tmp_path,
        endpoint_url="https://api.example.com/v1",
        environment="production",
        leak_reference=reference(tmp_path),
    ).refuse_unsafe_egress()
    settings(tmp_path, endpoint_url="https://api.example.com/v1").refuse_unsafe_egress()  # local: notes 'unchecked'


async def test_notes_are_passed_only_with_a_reference_and_unchecked_without(tmp_path: Path) -> None:
    statuses: dict[str, set[str]] = {}
    async with local_llm_server() as llm:
        for name, extra in (("without", {}), ("with", {"leak_reference": reference(tmp_path)})):
            async with build_generator(settings_for(llm.url, tmp_path / name, **extra)) as generator:
                outputs = await generator.handle(sample_job(count=2))
            notes = [m for m in outputs if isinstance(m, NoteGenerated)]
            assert len(notes) == 2, outputs
            statuses[name] = {n.leak_check.status for n in notes}
    assert statuses == {"without": {"unchecked"}, "with": {"passed"}}


@pytest.mark.parametrize("role", ["generator", "tracker"])
def test_entry_point_exits_2_with_one_line_for_the_generator_but_the_tracker_needs_no_llm(
    role: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTHNER_", "AMQP_URL"))}
    env |= {
        "SYNTHNER_ENVIRONMENT": "production",
        "AMQP_URL": "amqp://generator:secret@127.0.0.1:1/",
        "SYNTHNER_BROKER_CONNECT_TIMEOUT_S": "0.5",
        "SYNTHNER_GENERATOR_ENDPOINT_URL": "https://llm.example.com/v1",
        "SYNTHNER_GENERATOR_ENDPOINT_ZONE": "internal",
        "SYNTHNER_GENERATOR_STATE_DIR": str(tmp_path / "state"),
        "SYNTHNER_GENERATOR_TRACKER_DB": str(tmp_path / "tracker.sqlite3"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "synthner_generator", role],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if role == "generator":
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("synthner-generator: the LLM endpoint of the generator is declared internal")
        assert "'llm.example.com' is not on the internal-host allow-list" in line
    else:  # past the egress check: it fails on the unreachable broker instead
        assert "allow-list" not in result.stderr
        assert result.returncode != 0
