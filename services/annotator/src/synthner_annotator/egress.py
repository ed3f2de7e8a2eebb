"""The egress guard: real or unchecked text never reaches an endpoint outside the hospital.

It trusts neither the configuration's word nor the message's:

- an endpoint is internal only when declared so (``external: false``) *and* its host is on the internal-host
  allow-list (:mod:`synthner_shared.egress`); anything else is external;
- an external endpoint takes a note only when the message says ``provenance: synthetic`` and ``leak_check: passed``
  *and* the annotator's own run of the leak gate (:mod:`synthner_shared.leakgate`, with the annotator's reference of
  real notes) passes it here, before the call. Without a reference the gate can only say ``unchecked``, which is
  refused too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.endpoint import EndpointSettings
from synthner_annotator.errors import EgressRefused
from synthner_shared.egress import InternalHosts
from synthner_shared.leakgate import LeakGate


def _no_reference() -> LeakGate:
    return LeakGate(None)


@dataclass(frozen=True)
class EgressPolicy:
    """Which endpoints are internal, and the leak gate every note passes before it goes to an external one."""

    hosts: InternalHosts = field(default_factory=InternalHosts)
    gate: LeakGate = field(default_factory=_no_reference)

    def is_external(self, endpoint: EndpointSettings) -> bool:
        return not self.hosts.counts_as_internal(endpoint.base_url, declared_internal=not endpoint.external)

    def check(self, request: AnnotationRequest, endpoint: EndpointSettings) -> None:
        """Raise :class:`EgressRefused` unless the note may be sent to ``endpoint``."""
        check_egress(request, endpoint.name, self.is_external(endpoint), self.gate)


def check_egress(request: AnnotationRequest, endpoint: str, external: bool, gate: LeakGate) -> None:
    """Raise :class:`EgressRefused` unless the note may be sent to ``endpoint``.

    Internal endpoints take any note. An external one only takes notes whose provenance is ``synthetic``, whose
    message says the leak check ``passed``, and that ``gate`` passes here (``unchecked`` is refused: text not fully
    checked is treated as possibly real). The reasons name detectors and counts, never the text.
    """
    if not external:
        return
    if request.provenance != "synthetic":
        raise EgressRefused(
            f"note {request.note_id} has provenance {request.provenance!r}; only synthetic notes may be sent to the "
            f"external endpoint {endpoint}"
        )
    if request.leak_status != "passed":
        raise EgressRefused(
            f"note {request.note_id} has leak check {request.leak_status!r}; only notes that passed it may be sent "
            f"to the external endpoint {endpoint}"
        )
    result = gate.check(request.text)
    if result.status != "passed":
        why = "; ".join(result.reasons) if result.reasons else "no leak reference is configured (leak_reference)"
        raise EgressRefused(
            f"note {request.note_id}: the annotator's own leak gate found it {result.status} ({why}); only notes "
            f"that pass it may be sent to the external endpoint {endpoint}"
        )
