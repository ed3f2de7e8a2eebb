"""The egress guard trusts neither the configuration nor the message: internal means declared *and* on the
allow-list, and an external call needs the annotator's own leak gate to pass the note."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from synthner_annotator.app import egress_policy
from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.egress import EgressPolicy, check_egress
from synthner_annotator.endpoint import EndpointSettings
from synthner_annotator.errors import EgressRefused
from synthner_annotator.offline import request_for
from synthner_annotator.settings import AnnotatorSettings
from synthner_annotator.testing import REFERENCE_NOTES, checked_egress
from synthner_shared.documents import Document
from synthner_shared.egress import InternalHosts
from synthner_shared.leakgate import LeakGate
from synthner_shared.ngrams import NgramReference

SYNTHETIC = "Known asthma, on salbutamol since childhood. Asthma worse at night, seen in clinic today."
MEMORISED = REFERENCE_NOTES[1]


def request(text: str = SYNTHETIC, provenance: str = "synthetic", leak: str = "passed") -> AnnotationRequest:
    return AnnotationRequest("a" * 64, text, "en", provenance, leak)  # type: ignore[arg-type]


def endpoint(url: str, *, external: bool) -> EndpointSettings:
    return EndpointSettings(name="llm", base_url=url, model="m", external=external)


def llm_settings(url: str, *, external: bool, **extra: object) -> AnnotatorSettings:
    spec = {"kind": "llm", "endpoint": {"base_url": url, "model": "m", "external": external}}
    return AnnotatorSettings.model_validate({"labels": ["Disease"], "annotator": spec, **extra})


def test_an_internal_endpoint_takes_any_note_and_an_external_one_only_checked_synthetic_ones() -> None:
    gate = checked_egress().gate
    check_egress(request(provenance="real", leak="unchecked"), "local", external=False, gate=gate)
    check_egress(request(), "gpt", external=True, gate=gate)
    with pytest.raises(EgressRefused, match="provenance 'real'"):
        check_egress(request(provenance="real"), "gpt", external=True, gate=gate)
    for leak in ("failed", "unchecked"):
        with pytest.raises(EgressRefused, match=f"leak check '{leak}'"):
            check_egress(request(leak=leak), "gpt", external=True, gate=gate)


def test_the_annotators_own_gate_refuses_a_note_the_message_calls_passed() -> None:
    gate = checked_egress().gate
    with pytest.raises(EgressRefused, match=r"own leak gate found it failed \(email: 1 match\)") as refused:
        check_egress(request(f"{SYNTHETIC} Write to jane.doe@example.org."), "gpt", external=True, gate=gate)
    assert "jane" not in str(refused.value)
    with pytest.raises(EgressRefused, match="ngram_memorisation: verbatim run"):
        check_egress(request(f"{SYNTHETIC} {MEMORISED}"), "gpt", external=True, gate=gate)


def test_without_a_reference_the_gate_says_unchecked_and_nothing_goes_out() -> None:
    assert LeakGate(None).check(SYNTHETIC).status == "unchecked"
    with pytest.raises(EgressRefused, match="found it unchecked \\(no leak reference is configured"):
        check_egress(request(), "gpt", external=True, gate=LeakGate(None))


def test_an_endpoint_is_internal_only_when_declared_and_on_the_allow_list() -> None:
    policy = EgressPolicy(InternalHosts(("llm", "10.20.0.0/16")))
    assert not policy.is_external(endpoint("http://127.0.0.1:8080/v1", external=False))
    assert not policy.is_external(endpoint("http://llm:8000/v1", external=False))
    assert not policy.is_external(endpoint("http://vllm.synthner.svc.cluster.local:8000/v1", external=False))
    assert not policy.is_external(endpoint("http://10.20.3.4:8000/v1", external=False))
    assert policy.is_external(endpoint("https://api.openai.com/v1", external=False)), "declared only"
    assert policy.is_external(endpoint("http://10.21.0.1:8000/v1", external=False)), "outside the range"
    assert policy.is_external(endpoint("http://llm.evil.example/v1", external=False)), "a name, not a suffix"
    assert policy.is_external(endpoint("http://127.0.0.1:8080/v1", external=True)), "declared external"


def test_outside_production_an_internal_endpoint_off_the_list_counts_as_external() -> None:
    settings = llm_settings("https://api.example.com/v1", external=False)
    assert [e.base_url for e in settings.external_endpoints()] == ["https://api.example.com/v1"]
    assert egress_policy(settings).is_external(endpoint("https://api.example.com/v1", external=False))


def test_production_refuses_an_internal_endpoint_off_the_list() -> None:
    with pytest.raises(ValidationError, match=r"host 'api\.example\.com' is not on the internal-host allow-list"):
        llm_settings("https://api.example.com/v1", external=False, environment="production")
    listed = llm_settings(
        "https://llm.hospital.internal/v1",
        external=False,
        environment="production",
        internal_hosts="*.hospital.internal, 10.0.0.0/8",
    )
    assert listed.external_endpoints() == []


def test_production_refuses_an_external_endpoint_without_a_leak_reference(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="production refuses to start without leak_reference"):
        llm_settings("https://api.example.com/v1", external=True, environment="production")
    reference = tmp_path / "reference.npz"
    NgramReference.build(REFERENCE_NOTES).save(reference)
    settings = llm_settings(
        "https://api.example.com/v1", external=True, environment="production", leak_reference=str(reference)
    )
    gate = egress_policy(settings).gate
    assert gate.check(SYNTHETIC).status == "passed"
    assert gate.check(MEMORISED).status == "failed"


def test_a_bad_allow_list_entry_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a CIDR range"):
        llm_settings("http://llm/v1", external=False, internal_hosts="10.0.0.0/33")
    with pytest.raises(ValidationError, match="is not a host name"):
        llm_settings("http://llm/v1", external=False, internal_hosts='["llm", "*.bad name"]')


def test_entry_point_exits_2_with_one_line_on_an_internal_endpoint_off_the_list() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTHNER_", "AMQP_URL"))}
    env |= {
        "SYNTHNER_ENVIRONMENT": "production",
        "AMQP_URL": "amqp://annotator:secret@127.0.0.1:1/",
        "SYNTHNER_ANNOTATOR_LABELS": '["Disease"]',
        "SYNTHNER_ANNOTATOR_ANNOTATOR": '{"kind": "llm", "endpoint": {"base_url": "https://llm.example.com/v1", '
        '"model": "m", "external": false}}',
    }
    result = subprocess.run(
        [sys.executable, "-m", "synthner_annotator"], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("synthner-annotator: invalid settings:")
    assert "'llm.example.com' is not on the internal-host allow-list" in line


def test_offline_documents_declared_synthetic_get_the_gates_verdict_not_passed() -> None:
    document = Document(id="1", text=SYNTHETIC)
    assert request_for(document, "en", "synthetic", LeakGate(None)).leak_status == "unchecked"
    assert request_for(document, "en", "synthetic", checked_egress().gate).leak_status == "passed"
    assert request_for(document, "en", "real", checked_egress().gate).leak_status == "unchecked"
    leaky = Document(id="2", text=f"{SYNTHETIC} {MEMORISED}")
    assert request_for(leaky, "en", "synthetic", checked_egress().gate).leak_status == "failed"
