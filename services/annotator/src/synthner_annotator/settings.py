"""The annotator's settings: one ``BaseSettings``, read once at start-up and passed in.

Environment variables start with ``SYNTHNER_ANNOTATOR_``; nested fields use ``__`` (``SYNTHNER_ANNOTATOR_ANNOTATOR__
ENDPOINT__BASE_URL``) or JSON values. Structured configuration (endpoints, lexicons, prompts, ensembles) is easier in
a JSON file named by ``SYNTHNER_ANNOTATOR_CONFIG_FILE``; environment variables override it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from synthner_annotator.backends.encoder import EncoderSettings
from synthner_annotator.backends.ensemble import EnsembleSettings
from synthner_annotator.backends.lexicon import LexiconSettings
from synthner_annotator.backends.llm import LLMAnnotatorSettings
from synthner_annotator.endpoint import EndpointSettings
from synthner_shared.contracts.messages import LabelSet
from synthner_shared.egress import EgressSettings, refuse_undeclared_internal

CONFIG_FILE_VARIABLE = "SYNTHNER_ANNOTATOR_CONFIG_FILE"

AnnotatorSpec = Annotated[
    LLMAnnotatorSettings | LexiconSettings | EncoderSettings | EnsembleSettings, Field(discriminator="kind")
]
"""Which backend annotates: ``llm``, ``lexicon``, ``encoder`` or an ``ensemble`` of them."""


def llm_endpoints(
    spec: LLMAnnotatorSettings | LexiconSettings | EncoderSettings | EnsembleSettings,
) -> list[EndpointSettings]:
    """Every LLM endpoint of ``spec`` (an ensemble's members included)."""
    if isinstance(spec, LLMAnnotatorSettings):
        return [spec.endpoint]
    if isinstance(spec, EnsembleSettings):
        return [endpoint for member in spec.members for endpoint in llm_endpoints(member.annotator)]
    return []


class AnnotatorSettings(EgressSettings, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNTHNER_ANNOTATOR_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    labels: LabelSet = Field(description="The declared label set of the produced documents.")
    annotator: AnnotatorSpec = Field(description="The backend and its configuration.")
    producer: str = Field(default="annotator", min_length=1, max_length=200, description="Producer name in messages.")
    max_note_chars: int = Field(
        default=500_000, ge=1, description="Longer notes are reported as failed instead of annotated."
    )
    health_host: str = "0.0.0.0"  # noqa: S104 - probes reach the pod from outside its network namespace
    health_port: int | None = Field(default=None, ge=1, le=65535, description="Serve /livez and /readyz here.")
    leak_reference: Path | None = Field(
        default=None,
        description="Hashed n-gram reference of real notes (synthner leakcheck build-reference, or the generator's): "
        "the leak gate this annotator runs itself before any external call. Without it an external endpoint is "
        "refused every note (and production refuses to start with one).",
    )
    leak_min_run_tokens: int = Field(default=20, ge=1, description="A verbatim run this long with the reference fails.")
    leak_max_overlap: float = Field(
        default=0.5, gt=0, le=1, description="A share of n-grams in the reference that fails."
    )

    def external_endpoints(self) -> list[EndpointSettings]:
        """The endpoints that count as external (declared so, or declared internal with a host off the list)."""
        hosts = self.hosts
        return [e for e in llm_endpoints(self.annotator) if not hosts.counts_as_internal(e.base_url, not e.external)]

    @model_validator(mode="after")
    def _egress_in_production(self) -> Self:
        endpoints = llm_endpoints(self.annotator)
        refuse_undeclared_internal(
            ((e.name, e.base_url) for e in endpoints if not e.external), self.hosts, self.environment
        )
        if self.environment == "production" and self.leak_reference is None and self.external_endpoints():
            names = ", ".join(e.name for e in self.external_endpoints())
            raise ValueError(
                f"external endpoint(s) {names} need the annotator's own leak gate: production refuses to start "
                "without leak_reference (SYNTHNER_ANNOTATOR_LEAK_REFERENCE)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings, file_secret_settings)
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            sources += (JsonConfigSettingsSource(settings_cls, json_file=Path(config_file)),)
        return sources
