"""The internal-host allow-list: names compared (never resolved), '*.suffix' patterns, CIDR ranges."""

from __future__ import annotations

import pytest

from synthner_shared.egress import InternalHostError, InternalHosts, refuse_undeclared_internal


def test_built_in_entries_cover_loopback_and_kubernetes_service_names() -> None:
    hosts = InternalHosts()
    for url in (
        "http://localhost:8080/v1",
        "http://LOCALHOST./v1",
        "http://127.0.0.1:8080/v1",
        "http://127.3.2.1/v1",
        "http://[::1]:8080/v1",
        "http://[::ffff:127.0.0.1]:8080/v1",
        "http://llm.synthner.svc.cluster.local:8000/v1",
    ):
        assert hosts.allows_url(url), url
    for url in (
        "https://api.openai.com/v1",
        "http://svc.cluster.local/v1",  # the suffix itself is no service
        "http://llm.synthner.svc.cluster.local.evil.example/v1",
        "http://10.0.0.1/v1",
        "http://[::2]/v1",
        "http:///v1",
    ):
        assert not hosts.allows_url(url), url


def test_configured_names_patterns_and_ranges_add_to_the_built_in_ones() -> None:
    hosts = InternalHosts(("llm", "llm_cpu", "*.hospital.internal", "10.20.0.0/16", "fd00::/8"))
    assert hosts.allows("llm")
    assert hosts.allows("llm_cpu")
    assert hosts.allows("localhost")
    assert hosts.allows("vllm.ai.hospital.internal")
    assert not hosts.allows("hospital.internal")
    assert not hosts.allows("llm2")
    assert hosts.allows("10.20.255.1")
    assert not hosts.allows("10.21.0.1")
    assert hosts.allows("fd12::1")


def test_declared_internal_counts_only_on_the_list() -> None:
    hosts = InternalHosts(("llm",))
    assert hosts.counts_as_internal("http://llm:8000/v1", declared_internal=True)
    assert not hosts.counts_as_internal("http://llm:8000/v1", declared_internal=False)
    assert not hosts.counts_as_internal("https://llm.example.com/v1", declared_internal=True)


def test_production_refuses_an_internal_endpoint_off_the_list_and_elsewhere_lets_it_count_as_external() -> None:
    endpoints = [("a", "http://llm:8000/v1"), ("b", "https://llm.example.com/v1")]
    refuse_undeclared_internal(endpoints, InternalHosts(("llm",)), "local")
    with pytest.raises(ValueError, match=r"the LLM endpoint b .* host 'llm\.example\.com'"):
        refuse_undeclared_internal(endpoints, InternalHosts(("llm",)), "production")


@pytest.mark.parametrize("entry", ["", "10.0.0.0/33", "http://llm", "*.bad name", "llm..local"])
def test_a_malformed_entry_is_refused(entry: str) -> None:
    with pytest.raises(InternalHostError):
        InternalHosts((entry,))
