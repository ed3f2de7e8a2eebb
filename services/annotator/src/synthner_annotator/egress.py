"""The egress guard: real or unchecked text never reaches an endpoint outside the hospital."""

from __future__ import annotations

from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.errors import EgressRefused


def check_egress(request: AnnotationRequest, endpoint: str, external: bool) -> None:
    """Raise :class:`EgressRefused` unless the note may be sent to ``endpoint``.

    Internal endpoints take any note. An external one only takes notes whose provenance is ``synthetic`` and whose
    leak check ``passed`` (``skipped`` is refused too: unchecked text is treated as possibly real).
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
