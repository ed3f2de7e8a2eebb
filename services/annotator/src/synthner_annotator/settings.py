"""The annotator's settings: one ``BaseSettings``, read once at start-up and passed in.

Environment variables start with ``SYNTHNER_ANNOTATOR_``; nested fields use ``__`` (``SYNTHNER_ANNOTATOR_ANNOTATOR__
ENDPOINT__BASE_URL``) or JSON values. Structured configuration (endpoints, lexicons, prompts, ensembles) is easier in
a JSON file named by ``SYNTHNER_ANNOTATOR_CONFIG_FILE``; environment variables override it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field
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
from synthner_shared.contracts.messages import LabelSet

CONFIG_FILE_VARIABLE = "SYNTHNER_ANNOTATOR_CONFIG_FILE"

AnnotatorSpec = Annotated[
    LLMAnnotatorSettings | LexiconSettings | EncoderSettings | EnsembleSettings, Field(discriminator="kind")
]
"""Which backend annotates: ``llm``, ``lexicon``, ``encoder`` or an ``ensemble`` of them."""


class AnnotatorSettings(BaseSettings):
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
