"""The annotator's composition root: :func:`build` puts the service together from its settings.

``python -m synthner_annotator`` runs what it builds through :func:`synthner_shared.app.run_service` (logging, exit
codes, probes, SIGTERM).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from synthner_annotator.backends.base import Annotator
from synthner_annotator.egress import EgressPolicy
from synthner_annotator.errors import ConfigurationError
from synthner_annotator.factory import build_annotator
from synthner_annotator.service import build_service
from synthner_annotator.settings import AnnotatorSettings
from synthner_shared.app import BrokerApp, probe_address
from synthner_shared.leakgate import LeakGate
from synthner_shared.messaging import BrokerSettings
from synthner_shared.ngrams import ReferenceError as LeakReferenceError

log = logging.getLogger(__name__)

CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (ConfigurationError, LeakReferenceError)
"""Errors of building that mean the configuration is wrong (exit code 2)."""


async def build(settings: AnnotatorSettings, broker: BrokerSettings, annotator: Annotator | None = None) -> BrokerApp:
    """The annotator bound to its queue, with the configured backend (its HTTP clients or model loaded) unless
    ``annotator`` is given; ``aclose`` logs the backend's usage and closes what was opened here."""
    async with AsyncExitStack() as resources:
        if annotator is None:
            annotator = build_annotator(settings.annotator, settings.labels, egress_policy(settings))
            resources.push_async_callback(_close, annotator)
        service = build_service(settings, broker, annotator)
        address = probe_address(settings.health_port, settings.health_host)
        return BrokerApp(service, resources.pop_all(), address)


def egress_policy(settings: AnnotatorSettings) -> EgressPolicy:
    """The allow-list and the leak gate (its reference loaded) of ``settings``."""
    gate = LeakGate.load(settings.leak_reference, settings.leak_min_run_tokens, settings.leak_max_overlap)
    return EgressPolicy(settings.hosts, gate)


async def _close(annotator: Annotator) -> None:
    log.info("usage: %s", annotator.usage())
    await annotator.aclose()
