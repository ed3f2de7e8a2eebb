"""Which LLM endpoints count as inside the hospital: an allow-list of cluster-local host names and address ranges.

A service's configuration may *declare* an endpoint internal (the annotator's ``external: false``, the generator's
``ENDPOINT_ZONE=internal``), and an internal endpoint may receive real text. A declaration alone is one edited URL away
from sending every note outside, so an endpoint counts as internal only when its host is on this list too:

- built in: ``localhost``, names under ``*.svc.cluster.local`` (Kubernetes services), ``127.0.0.0/8`` and ``::1``;
- added by ``SYNTHNER_INTERNAL_HOSTS`` (a JSON list or comma-separated): exact names (``llm``, a compose or
  Kubernetes service in the same namespace), ``*.suffix`` patterns (``*.hospital.internal``) and CIDR ranges
  (``10.20.0.0/16``).

Names are compared, not resolved: the list says which *names* the hospital's network owns. An IP address is on the
list only through a range. With ``SYNTHNER_ENVIRONMENT=production`` a service refuses to start when an endpoint
declared internal is not on the list (:func:`refuse_undeclared_internal`); elsewhere such an endpoint is treated as
external (:meth:`InternalHosts.counts_as_internal`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, Field
from pydantic_settings import NoDecode

BUILT_IN_INTERNAL_HOSTS: tuple[str, ...] = ("localhost", "*.svc.cluster.local", "127.0.0.0/8", "::1/128")
"""Always internal: the loopback and Kubernetes service names."""

Environment = Literal["local", "production"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressConfigurationError(ValueError):
    """A configuration that production refuses: an endpoint declared internal off the allow-list, or an
    external-facing service without a leak reference. A service's root maps it to exit code 2."""


class InternalHostError(ValueError):
    """An allow-list entry that is neither a host name, a ``*.suffix`` pattern nor a CIDR range."""


def _parse_entry(entry: str) -> str | IpNetwork:
    text = entry.strip().lower().rstrip(".")
    if not text:
        raise InternalHostError("an empty internal-host entry")
    if "/" in text or _is_ip(text):
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InternalHostError(f"{entry!r} is not a CIDR range") from None
    name = text[2:] if text.startswith("*.") else text
    labels = name.split(".")
    if not all(label and len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum() for label in labels):
        raise InternalHostError(f"{entry!r} is not a host name, a '*.suffix' pattern or a CIDR range")
    return text


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_of(url: str) -> str:
    """The lower-cased host of ``url`` (brackets of an IPv6 literal removed), '' when it has none."""
    return (urlsplit(url).hostname or "").rstrip(".")


@dataclass(frozen=True)
class InternalHosts:
    """The allow-list: built-in entries plus the configured ones. ``InternalHosts()`` holds the built-in ones."""

    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for entry in self.entries:
            _parse_entry(entry)  # fail at start-up, not on the first note

    @property
    def entries(self) -> tuple[str, ...]:
        return (*BUILT_IN_INTERNAL_HOSTS, *self.extra)

    def allows(self, host: str) -> bool:
        """True when ``host`` (a name or an IP address) is on the list."""
        host = host.strip().lower().rstrip(".").strip("[]")
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        for entry in map(_parse_entry, self.entries):
            if isinstance(entry, str):
                if address is None and (host == entry or (entry.startswith("*.") and host.endswith(entry[1:]))):
                    return True
            elif address is not None and address.version == entry.version and address in entry:
                return True
        return False

    def allows_url(self, url: str) -> bool:
        return self.allows(host_of(url))

    def counts_as_internal(self, url: str, declared_internal: bool) -> bool:
        """Internal only when declared so *and* its host is on the list."""
        return declared_internal and self.allows_url(url)


def refuse_undeclared_internal(
    endpoints: Iterable[tuple[str, str]], hosts: InternalHosts, environment: Environment
) -> None:
    """In production, raise :class:`EgressConfigurationError` for the first endpoint declared internal whose host is
    not on the list. ``endpoints``: ``(name, url)`` of every endpoint declared internal."""
    if environment != "production":
        return
    for name, url in endpoints:
        if not hosts.allows_url(url):
            raise EgressConfigurationError(
                f"the LLM endpoint {name} is declared internal but its host {host_of(url)!r} is not on the "
                "internal-host allow-list (built in: localhost, *.svc.cluster.local, 127.0.0.0/8, ::1; add names or "
                "ranges with SYNTHNER_INTERNAL_HOSTS), so production refuses it: mark it external or list its host"
            )


def _split_entries(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return tuple(json.loads(text))
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return value


def _check_entries(value: tuple[str, ...]) -> tuple[str, ...]:
    for entry in value:
        try:
            _parse_entry(entry)
        except InternalHostError as exc:
            raise ValueError(str(exc)) from None
    return value


InternalHostEntries = Annotated[
    tuple[str, ...], NoDecode, BeforeValidator(_split_entries), AfterValidator(_check_entries)
]
"""The type of a settings field holding ``SYNTHNER_INTERNAL_HOSTS`` (JSON list or comma-separated)."""


class EgressSettings(BaseModel):
    """The allow-list fields of every service with an LLM endpoint, read from the same variables by all of them:
    ``SYNTHNER_INTERNAL_HOSTS`` and ``SYNTHNER_ENVIRONMENT``. A service's settings class lists it before
    ``BaseSettings`` (``class GeneratorSettings(EgressSettings, BaseSettings)``)."""

    internal_hosts: InternalHostEntries = Field(
        default=(),
        validation_alias=AliasChoices("SYNTHNER_INTERNAL_HOSTS", "internal_hosts"),
        description="Host names, '*.suffix' patterns and CIDR ranges inside the hospital besides the built-in "
        "localhost, *.svc.cluster.local, 127.0.0.0/8 and ::1. An endpoint declared internal whose host is not on "
        "the list is treated as external (refused at start-up in production).",
    )
    environment: Environment = Field(
        default="local",
        validation_alias=AliasChoices("SYNTHNER_ENVIRONMENT", "environment"),
        description="'production' refuses an internal endpoint off the allow-list, and an external-facing service "
        "without a leak reference.",
    )

    @property
    def hosts(self) -> InternalHosts:
        """The allow-list: the built-in entries and ``internal_hosts``."""
        return InternalHosts(self.internal_hosts)
