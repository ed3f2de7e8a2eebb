"""The generator's composition root: :func:`build` puts the generator (or the job tracker) together from its settings.

``python -m synthner_generator [generator|tracker]`` runs what it builds through
:func:`synthner_shared.app.run_service` (logging, exit codes, probes, SIGTERM).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Literal

from synthner_generator.llm import LLMClient
from synthner_generator.service import build_generator, generator_service, tracker_service
from synthner_generator.settings import GeneratorSettings
from synthner_generator.tracker import JobStore
from synthner_generator.vocabulary import VocabularyError
from synthner_shared.app import BrokerApp, probe_address
from synthner_shared.egress import EgressConfigurationError
from synthner_shared.messaging import BrokerSettings
from synthner_shared.ngrams import ReferenceError as LeakReferenceError

Role = Literal["generator", "tracker"]
ROLES: tuple[Role, ...] = ("generator", "tracker")

CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (VocabularyError, LeakReferenceError, EgressConfigurationError)
"""Errors of building that mean the configuration is wrong (exit code 2)."""


async def build(
    settings: GeneratorSettings, broker: BrokerSettings, role: Role = "generator", llm: LLMClient | None = None
) -> BrokerApp:
    """The generator (its LLM client, unless ``llm`` is given, and its de-duplication database open) or the job
    tracker (its SQLite file open), bound to the broker; ``aclose`` closes what was opened here."""
    async with AsyncExitStack() as resources:
        if role == "tracker":
            store = JobStore(settings.tracker_db)
            resources.callback(store.close)
            service = tracker_service(broker, settings, store)
        else:
            settings.refuse_unsafe_egress()
            generator = await resources.enter_async_context(build_generator(settings, llm))
            service = generator_service(broker, settings, generator)
        return BrokerApp(service, resources.pop_all(), probe_address(settings.health_port))
