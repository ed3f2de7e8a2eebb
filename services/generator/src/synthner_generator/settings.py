"""The generator's settings: one class, read from ``SYNTHNER_GENERATOR_*`` once at start-up and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synthner_generator.quality import Truncated
from synthner_shared.egress import EgressConfigurationError, EgressSettings, refuse_undeclared_internal

Backend = Literal["tgi", "openai"]
Zone = Literal["internal", "external"]


class GeneratorSettings(EgressSettings, BaseSettings):
    """How the generator reaches its LLM, what it accepts, and where it keeps its state.

    Every field reads ``SYNTHNER_GENERATOR_<FIELD>`` (lists and dicts as JSON).
    """

    model_config = SettingsConfigDict(env_prefix="SYNTHNER_GENERATOR_", extra="ignore", frozen=True)

    # --- LLM endpoint -------------------------------------------------------------------------------------------
    backend: Backend = Field(default="openai", description="'tgi' (native /generate) or 'openai' (chat completions).")
    endpoint_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:8080/v1"),
        description="TGI: the server root. OpenAI-compatible: the base URL including /v1.",
    )
    endpoint_zone: Zone = Field(
        default="external",
        description=(
            "'internal' marks an endpoint inside the hospital; only then are prefix jobs (real opening words) run. "
            "Unmarked counts as 'external' (outside the hospital), which never receives real text. 'internal' also "
            "needs the URL's host on the internal-host allow-list (SYNTHNER_INTERNAL_HOSTS), or the endpoint is "
            "treated as external (refused at start-up in production)."
        ),
    )
    model: str = Field(default="local", min_length=1, max_length=300, description="Model name sent and recorded.")
    api_key: SecretStr | None = Field(default=None, description="Bearer token of the endpoint, if it needs one.")
    grammar: dict[str, Any] | None = Field(
        default=None, description="TGI only: a grammar ({'type': 'json'|'regex', 'value': ...}) constraining output."
    )
    concurrency: int = Field(default=16, ge=1, le=1024, description="LLM requests kept in flight per process.")
    request_timeout_s: float = Field(default=120.0, gt=0, description="Time limit of one LLM request.")
    llm_attempts: int = Field(default=4, ge=1, le=20, description="Tries per LLM request on transient errors.")
    llm_backoff_s: tuple[float, ...] = Field(
        default=(1.0, 4.0, 15.0), min_length=1, description="Pause before retry n (the last value repeats)."
    )

    # --- jobs ---------------------------------------------------------------------------------------------------
    part_size: int = Field(default=16, ge=1, le=1000, description="Most notes one delivery generates.")
    split_fanout: int = Field(default=64, ge=2, le=1000, description="Most parts one delivery splits a job into.")
    labels: list[str] = Field(
        default_factory=lambda: ["Disease", "Drug", "Procedure"],
        min_length=1,
        description="Entity labels a job may ask for.",
    )
    prompt_dir: Path | None = Field(default=None, description="Extra prompt templates (same layout as built-in).")
    vocabulary_dir: Path | None = Field(default=None, description="Vocabularies <language>.json replacing built-in.")
    entities_per_label: int = Field(default=2, ge=1, le=20, description="Label-conditioned: entities per label.")
    prefix_file: Path | None = Field(
        default=None,
        description="Prefix mode: JSONL documents of held-out real notes (synthner adapt's heldout_prefixes.jsonl).",
    )
    prefix_words: int = Field(default=3, ge=1, le=50, description="Prefix mode: opening words given to the LLM.")
    passage_words: int = Field(
        default=0,
        ge=0,
        le=1000,
        description=(
            "Prefix mode: before each prefix the LLM reads up to this many words of another note of prefix_file, "
            "only its sentences with nothing that may identify someone (the prefix rules); notes with fewer than "
            "half as many such words are not used. Keeps a model never adapted to the notes on their subject. "
            "0: the prefix alone."
        ),
    )
    regenerate_rejected: int = Field(
        default=1, ge=0, le=10, description="Extra tries (new derived seed) when a reply is rejected or a duplicate."
    )

    # --- quality, dedup, leak gate ------------------------------------------------------------------------------
    min_chars: int = Field(default=200, ge=1, description="Shorter replies are rejected.")
    max_chars: int = Field(default=20_000, ge=1, description="Longer replies are rejected (never cut).")
    truncated: Truncated = Field(
        default="reject",
        description="A reply the LLM ended at its token limit: 'reject' it, or keep its 'whole_sentences' (cut after"
        " the last complete sentence or line; the note's generation attributes say cut_at_sentence).",
    )
    state_dir: Path = Field(default=Path("var/generator"), description="Dedup state (SQLite), kept across restarts.")
    near_duplicate_threshold: float = Field(
        default=0.8, gt=0, le=1, description="Estimated Jaccard of word 3-shingles at or above which notes are dups."
    )
    leak_reference: Path | None = Field(
        default=None, description="Hashed n-gram reference of real notes (synthner leakcheck build-reference)."
    )
    leak_min_run_tokens: int = Field(
        default=20, ge=1, description="A verbatim run of this many tokens shared with the reference quarantines."
    )
    leak_max_overlap: float = Field(
        default=0.5, gt=0, le=1, description="A share of the note's n-grams found in the reference that quarantines."
    )

    # --- process ------------------------------------------------------------------------------------------------
    instance: str = Field(default="generator", min_length=1, max_length=100, description="Producer name in messages.")
    health_port: int | None = Field(default=None, ge=1, le=65535, description="Serve /livez and /readyz here.")
    tracker_db: Path = Field(default=Path("var/tracker/jobs.sqlite3"), description="The job tracker's state.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_chars > self.max_chars:
            raise ValueError("min_chars must not exceed max_chars")
        if self.grammar is not None and self.backend != "tgi":
            raise ValueError("grammar is supported by the 'tgi' backend only")
        self.hosts  # noqa: B018 - a bad allow-list entry fails here, with the other settings errors
        return self

    def refuse_unsafe_egress(self) -> None:
        """What production refuses of a generator (not of the tracker, which calls no LLM): an endpoint declared
        internal whose host is off the allow-list, and an external endpoint without a leak reference (its notes
        could never be ``passed``). Raises :class:`EgressConfigurationError`."""
        declared = [("of the generator", str(self.endpoint_url))] if self.endpoint_zone == "internal" else []
        refuse_undeclared_internal(declared, self.hosts, self.environment)
        if self.environment == "production" and self.external_endpoint and self.leak_reference is None:
            raise EgressConfigurationError(
                "the LLM endpoint is external: production refuses to start the generator without a leak reference "
                "(SYNTHNER_GENERATOR_LEAK_REFERENCE), so that its notes can be checked and marked 'passed'"
            )

    @property
    def external_endpoint(self) -> bool:
        """True unless the endpoint is declared internal and its host is on the allow-list."""
        return not self.hosts.counts_as_internal(str(self.endpoint_url), self.endpoint_zone == "internal")

    @property
    def producer(self) -> str:
        return f"synthner-generator/{self.instance}"
