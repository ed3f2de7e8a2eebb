"""Every message type of the pipeline (DESIGN.md, "Messages"): one pydantic model each, version 1.

A new incompatible version of a message is a new class next to the old one (``NoteGeneratedV2`` with
``schema_version: Literal[2]``), registered in :mod:`synthner_shared.contracts.registry`; consumers then accept both
for as long as producers of the old one run.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, AwareDatetime, Field, field_validator, model_validator

from synthner_shared.contracts.envelope import Contract, Envelope, content_id
from synthner_shared.contracts.spans import check_spans

Label = str
LanguageCode = str
Provenance = Literal["synthetic", "real"]
"""Where a text came from. Only ``synthetic`` text that passed the leak gate may reach an external endpoint."""

_LABEL_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
_LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
_SHA256_PATTERN = r"^[0-9a-f]{64}$"


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("the list must not repeat a value")
    return values


LabelSet = Annotated[list[Label], Field(min_length=1, max_length=200), AfterValidator(_unique)]
"""A declared label set: at least one label, none repeated."""


class PromptRef(Contract):
    """A versioned prompt template, loaded by name; the pair travels in every message produced with it."""

    name: str = Field(min_length=1, max_length=100, description="Template name, e.g. 'discharge_summary'.")
    version: str = Field(min_length=1, max_length=40, description="Template version, e.g. 'v1'.")


class SamplingParameters(Contract):
    """LLM sampling parameters; ``None`` leaves the backend's default."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_new_tokens: int | None = Field(default=None, ge=1, le=32768)
    stop: list[str] = Field(default_factory=list, max_length=16, description="Stop sequences.")


class Mention(Contract):
    """An entity by label and surface text, without offsets (a lexicon entry or a mention requested in a prompt)."""

    label: Label = Field(pattern=_LABEL_PATTERN)
    text: str = Field(min_length=1, max_length=500)


class EntitySpan(Contract):
    """An entity as a character span of the document's text (code-point offsets, end exclusive)."""

    start: int = Field(ge=0, description="Offset of the first code point of the mention.")
    end: int = Field(ge=1, description="Offset one past the last code point of the mention.")
    label: Label = Field(pattern=_LABEL_PATTERN)
    score: float | None = Field(default=None, ge=0.0, le=1.0, description="Annotator confidence, when it has one.")
    source: str | None = Field(
        default=None, max_length=100, description="Which annotator (or ensemble member) proposed the span."
    )


# --- generation -----------------------------------------------------------------------------------------------------


class GenerationRequested(Envelope):
    """Command: generate ``count`` synthetic notes. ``correlation_id`` equals ``job_id``."""

    routing_key: ClassVar[str] = "generation.requested"
    type: Literal["GenerationRequested"] = "GenerationRequested"
    schema_version: Literal[1] = 1

    correlation_id: str = Field(default="", max_length=200, description="Equals job_id; filled from it if omitted.")
    job_id: str = Field(min_length=1, max_length=200)
    count: int = Field(ge=1, le=10_000_000, description="Number of notes to generate.")
    first_index: int = Field(
        default=0, ge=0, description="Index of the first note of this (possibly split) request within the job."
    )
    language: LanguageCode = Field(pattern=_LANGUAGE_PATTERN, description="BCP-47 language, e.g. 'en', 'sv'.")
    note_types: Annotated[list[str], Field(min_length=1, max_length=50), AfterValidator(_unique)]
    entity_labels: LabelSet
    mode: Literal["free", "label_conditioned", "prefix"] = "free"
    seed: int = Field(ge=0, description="Base seed; note i uses a seed derived from it and i.")
    sampling: SamplingParameters = Field(default_factory=SamplingParameters)
    prompt: PromptRef
    seed_lexicon: list[Mention] | None = Field(
        default=None, description="Entities to sample from in label-conditioned mode."
    )
    job_total: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Set only on the parts the generator splits a job into: the job's total count. None on a job as submitted."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _correlation_is_job(cls, data: object) -> object:
        if isinstance(data, dict) and "job_id" in data and not data.get("correlation_id"):
            return {**data, "correlation_id": data["job_id"]}
        return data

    @model_validator(mode="after")
    def _check_job(self) -> Self:
        if self.correlation_id != self.job_id:
            raise ValueError("correlation_id must equal job_id for a generation request")
        if self.seed_lexicon is not None:
            unknown = {m.label for m in self.seed_lexicon} - set(self.entity_labels)
            if unknown:
                raise ValueError(f"seed_lexicon has {len(unknown)} label(s) outside entity_labels")
        return self


LeakStatus = Literal["passed", "failed", "unchecked"]
"""``passed``: every check of the leak gate ran (identifier detectors and the memorisation check against a reference
of real notes) and none matched; ``failed``: one matched; ``unchecked``: not every check ran (no reference
configured, or no gate at all) and none that ran matched. Only ``passed`` notes may reach an external endpoint."""


class LeakCheckResult(Contract):
    """Outcome of the generator's privacy gate for one note."""

    status: LeakStatus = Field(
        description="'passed' only when every check ran and none matched; 'unchecked' when a check could not run "
        "(no leak reference configured) — never sent to an external endpoint. Earlier messages' 'skipped' is read "
        "as 'unchecked'."
    )
    detectors: list[str] = Field(default_factory=list, description="Detectors that ran.")
    reasons: list[str] = Field(
        default_factory=list, description="Why the note failed (detector names and counts; never the matched text)."
    )
    max_ngram_overlap: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Highest n-gram overlap with the real-note reference, if checked."
    )

    @field_validator("status", mode="before")
    @classmethod
    def _legacy_skipped(cls, value: object) -> object:
        return "unchecked" if value == "skipped" else value


class GenerationRecord(Contract):
    """Everything needed to regenerate a note."""

    backend: str = Field(min_length=1, max_length=100, description="LLM backend, e.g. 'tgi', 'openai'.")
    model: str = Field(min_length=1, max_length=300)
    prompt: PromptRef
    seed: int = Field(ge=0)
    sampling: SamplingParameters = Field(default_factory=SamplingParameters)
    attributes: dict[str, str | int | float | list[str]] = Field(
        default_factory=dict, description="Sampled note attributes (age, sex, specialty, diagnoses, ...)."
    )


class NoteGenerated(Envelope):
    """Event: a synthetic note was written. ``note_id`` is the SHA-256 of the text."""

    routing_key: ClassVar[str] = "note.generated"
    type: Literal["NoteGenerated"] = "NoteGenerated"
    schema_version: Literal[1] = 1

    note_id: str = Field(pattern=_SHA256_PATTERN, description="SHA-256 (hex) of the UTF-8 text.")
    text: str = Field(min_length=1)
    language: LanguageCode = Field(pattern=_LANGUAGE_PATTERN)
    note_type: str = Field(min_length=1, max_length=100)
    provenance: Provenance
    generation: GenerationRecord
    requested_entities: list[Mention] = Field(
        default_factory=list, description="Entities the prompt asked the LLM to include (label-conditioned mode)."
    )
    leak_check: LeakCheckResult

    @model_validator(mode="after")
    def _check_note_id(self) -> Self:
        if self.note_id != content_id(self.text):
            raise ValueError("note_id must be the SHA-256 hex digest of the text")
        return self


class NoteQuarantined(Envelope):
    """Event: a generated note failed the leak gate. It goes to the quarantine queue for review, never to annotators.

    The text stays on the in-hospital broker; the reasons name detectors and counts, never the matched text.
    """

    routing_key: ClassVar[str] = "note.quarantined"
    type: Literal["NoteQuarantined"] = "NoteQuarantined"
    schema_version: Literal[1] = 1

    job_id: str = Field(min_length=1, max_length=200)
    note_index: int = Field(ge=0, description="Index of the note within the job.")
    note_id: str = Field(pattern=_SHA256_PATTERN, description="SHA-256 (hex) of the UTF-8 text.")
    text: str = Field(min_length=1)
    language: LanguageCode = Field(pattern=_LANGUAGE_PATTERN)
    note_type: str = Field(min_length=1, max_length=100)
    generation: GenerationRecord
    leak_check: LeakCheckResult

    @model_validator(mode="after")
    def _check_quarantined(self) -> Self:
        if self.note_id != content_id(self.text):
            raise ValueError("note_id must be the SHA-256 hex digest of the text")
        if self.leak_check.status != "failed":
            raise ValueError("only a note that failed the leak check is quarantined")
        return self


class GenerationProgress(Envelope):
    """Event: progress of a generation job, consumed by the job tracker behind ``synthner status``.

    ``accepted`` (the whole job, once), ``refused`` (an invalid job, with the reason) or ``part`` (the outcome of the
    notes ``first_index .. first_index + requested - 1``). A redelivered part repeats its event; the tracker keys
    parts by ``(job_id, first_index)``, so repeats never double-count.
    """

    routing_key: ClassVar[str] = "generation.progress"
    type: Literal["GenerationProgress"] = "GenerationProgress"
    schema_version: Literal[1] = 1

    job_id: str = Field(min_length=1, max_length=200)
    event: Literal["accepted", "refused", "part"]
    first_index: int = Field(default=0, ge=0)
    requested: int = Field(ge=0, description="Notes asked for: the whole job (accepted/refused) or this part.")
    generated: int = Field(default=0, ge=0, description="Notes published as NoteGenerated.")
    rejected: int = Field(default=0, ge=0, description="Replies rejected by the quality filters.")
    duplicates: int = Field(default=0, ge=0, description="Notes dropped as exact or near duplicates.")
    quarantined: int = Field(default=0, ge=0, description="Notes that failed the leak gate (NoteQuarantined).")
    failed: int = Field(default=0, ge=0, description="Notes the LLM could not produce (GenerationFailed).")
    reason: str | None = Field(default=None, max_length=2000, description="Why a job was refused; never note text.")

    @model_validator(mode="after")
    def _check_counts(self) -> Self:
        outcomes = self.generated + self.rejected + self.duplicates + self.quarantined + self.failed
        if self.event == "part" and outcomes != self.requested:
            raise ValueError("a part's outcomes must add up to the notes it requested")
        if self.event == "refused" and not self.reason:
            raise ValueError("a refused job needs a reason")
        return self


class GenerationFailed(Envelope):
    """Event: a note of a job could not be generated; failures are data, not log lines."""

    routing_key: ClassVar[str] = "generation.failed"
    type: Literal["GenerationFailed"] = "GenerationFailed"
    schema_version: Literal[1] = 1

    job_id: str = Field(min_length=1, max_length=200)
    note_index: int | None = Field(default=None, ge=0, description="Index of the note within the job, if known.")
    reason: str = Field(min_length=1, max_length=2000, description="Why; never contains note text.")
    attempts: int = Field(ge=1)


# --- annotation -----------------------------------------------------------------------------------------------------


class AnnotatorRecord(Contract):
    """Which annotator produced the spans."""

    backend: str = Field(min_length=1, max_length=100, description="e.g. 'llm', 'encoder', 'lexicon', 'ensemble'.")
    model: str | None = Field(default=None, max_length=300)
    prompt: PromptRef | None = None
    members: list[str] = Field(default_factory=list, description="Ensemble members, if an ensemble.")


class AlignmentStats(Contract):
    """How many mentions the annotator proposed and how many became spans."""

    mentions_found: int = Field(ge=0)
    mentions_aligned: int = Field(ge=0)
    mentions_dropped: int = Field(ge=0)

    @model_validator(mode="after")
    def _balanced(self) -> Self:
        if self.mentions_aligned + self.mentions_dropped != self.mentions_found:
            raise ValueError("mentions_aligned + mentions_dropped must equal mentions_found")
        return self


class DocumentAnnotated(Envelope):
    """Event: a note with its entity spans. The span invariants are enforced here, so no stage can emit a broken one."""

    routing_key: ClassVar[str] = "document.annotated"
    type: Literal["DocumentAnnotated"] = "DocumentAnnotated"
    schema_version: Literal[1] = 1

    note_id: str = Field(pattern=_SHA256_PATTERN)
    text: str = Field(min_length=1)
    language: LanguageCode = Field(pattern=_LANGUAGE_PATTERN)
    provenance: Provenance
    labels: LabelSet = Field(description="The declared label set the annotator worked with.")
    entities: list[EntitySpan] = Field(
        description="Sorted, non-overlapping spans, 0 <= start < end <= len(text), labels from `labels`."
    )
    annotator: AnnotatorRecord
    alignment: AlignmentStats
    agreement: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Ensemble agreement for this document, if an ensemble annotated it."
    )

    @model_validator(mode="after")
    def _check_document(self) -> Self:
        if self.note_id != content_id(self.text):
            raise ValueError("note_id must be the SHA-256 hex digest of the text")
        check_spans(self.text, self.entities, set(self.labels))
        return self


class AnnotationFailed(Envelope):
    """Event: a note could not be annotated."""

    routing_key: ClassVar[str] = "annotation.failed"
    type: Literal["AnnotationFailed"] = "AnnotationFailed"
    schema_version: Literal[1] = 1

    note_id: str = Field(pattern=_SHA256_PATTERN)
    annotator: AnnotatorRecord
    reason: str = Field(min_length=1, max_length=2000, description="Why; never contains note text.")
    attempts: int = Field(ge=1)


# --- training -------------------------------------------------------------------------------------------------------


class DatasetSelection(Contract):
    """Which stored documents to train on."""

    dataset_version: str | None = Field(
        default=None, max_length=200, description="An existing dataset version; None = snapshot everything stored now."
    )
    annotators: list[str] = Field(default_factory=list, description="Only documents from these annotators, if set.")
    max_documents: int | None = Field(default=None, ge=1)


class HyperParameters(Contract):
    """Overrides of the trainer's configured hyper-parameters; ``None`` keeps the configured value."""

    epochs: float | None = Field(default=None, gt=0, le=1000)
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_length: int | None = Field(default=None, ge=8, le=8192, description="Window length in tokens.")
    stride: int | None = Field(default=None, ge=0, le=8192, description="Overlap between windows in tokens.")
    weight_decay: float | None = Field(default=None, ge=0, le=1)
    warmup_ratio: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = Field(default=None, ge=0)
    max_seconds: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="Bound on this training's optimisation time in seconds; the trainer keeps the smaller of this and"
        " its own MAX_TRAIN_SECONDS.",
    )


class TrainingRequested(Envelope):
    """Command: train a model now."""

    routing_key: ClassVar[str] = "training.requested"
    type: Literal["TrainingRequested"] = "TrainingRequested"
    schema_version: Literal[1] = 1

    dataset: DatasetSelection = Field(default_factory=DatasetSelection)
    base_model: str | None = Field(
        default=None, max_length=1000, description="Local base-model folder; None = the trainer's configured one."
    )
    hyperparameters: HyperParameters = Field(default_factory=HyperParameters)


class Scores(Contract):
    precision: float = Field(ge=0.0, le=1.0)
    recall: float = Field(ge=0.0, le=1.0)
    f1: float = Field(ge=0.0, le=1.0)
    support: int = Field(ge=0, description="Number of gold entities.")


class EvaluationResult(Contract):
    """Entity-level scores on one evaluation set: strict (seqeval IOB2) and partial-overlap."""

    dataset: str = Field(min_length=1, max_length=300, description="Name of the evaluation set, e.g. 'synthetic-dev'.")
    documents: int = Field(ge=0)
    strict_micro: Scores
    strict_macro: Scores
    partial_micro: Scores
    strict_per_label: dict[Label, Scores]
    partial_per_label: dict[Label, Scores]


class DatasetManifest(Contract):
    """Summary of an immutable dataset version."""

    version: str = Field(min_length=1, max_length=200)
    content_hash: str = Field(pattern=_SHA256_PATTERN, description="Hash over the sorted document ids and spans.")
    document_count: int = Field(ge=0)
    annotators: list[str]
    label_counts: dict[Label, int]
    location: str | None = Field(default=None, description="Where the manifest with all document ids is stored.")


class ModelPublished(Envelope):
    """Event: a model version passed the gate and can be served."""

    routing_key: ClassVar[str] = "model.published"
    type: Literal["ModelPublished"] = "ModelPublished"
    schema_version: Literal[1] = 1

    model_version: str = Field(min_length=1, max_length=200)
    artifact_uri: str = Field(min_length=1, max_length=2000, description="Folder or URI of the model artifact.")
    labels: LabelSet
    base_model: str = Field(min_length=1, max_length=1000)
    metrics: list[EvaluationResult] = Field(
        min_length=1, description="Scores on the synthetic dev split and on each configured real gold set."
    )
    dataset: DatasetManifest


class ModelRollbackRequested(Envelope):
    """Command: make an earlier published model version current again, in the whole cluster.

    The trainer (the model store's one writer) pins the version in the store (``synthner_shared.model_store.roll_back``)
    and announces :class:`ModelRolledBack`; a version that is not published is dead-lettered with the reason."""

    routing_key: ClassVar[str] = "model.rollback_requested"
    type: Literal["ModelRollbackRequested"] = "ModelRollbackRequested"
    schema_version: Literal[1] = 1

    model_version: str = Field(min_length=1, max_length=200, description="The published version to serve.")
    requested_by: str = Field(
        min_length=1, max_length=200, description="Who asks: an operator's or admin key's name (recorded in the store)."
    )
    reason: str = Field(default="", max_length=500, description="Why, in the operator's words (no note text).")


class ModelRolledBack(Envelope):
    """Event: the model store's current version was set back to ``model_version`` and pinned there by an operator.

    Every NER API replica serves it, although it is older than what it serves: the one case a replica moves back. The
    pin holds until an operator releases it; the trainer announces no new version meanwhile."""

    routing_key: ClassVar[str] = "model.rolled_back"
    type: Literal["ModelRolledBack"] = "ModelRolledBack"
    schema_version: Literal[1] = 1

    model_version: str = Field(min_length=1, max_length=200)
    from_version: str | None = Field(default=None, max_length=200, description="The version that was current before.")
    artifact_uri: str = Field(min_length=1, max_length=2000, description="Folder or URI of the model artifact.")
    requested_by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=500)
    rolled_back_at: AwareDatetime = Field(description="When the store was changed (the pin's time).")


class ModelPinReleaseRequested(Envelope):
    """Command: release the rollback's pin in the model store; the pinned version stays current, and the next version
    the trainer publishes becomes current and is announced again."""

    routing_key: ClassVar[str] = "model.pin_release_requested"
    type: Literal["ModelPinReleaseRequested"] = "ModelPinReleaseRequested"
    schema_version: Literal[1] = 1

    requested_by: str = Field(
        min_length=1, max_length=200, description="Who asks: an operator's or admin key's name (logged by the trainer)."
    )
    reason: str = Field(default="", max_length=500, description="Why, in the operator's words (no note text).")


# --- generator domain adaptation ------------------------------------------------------------------------------------


class AdaptationParameters(Contract):
    """Hyper-parameters of a generator adaptation job; ``None`` takes the trainer's default."""

    method: Literal["auto", "full", "lora"] | None = Field(
        default=None,
        description="'full' fine-tuning, 'lora' (peft; merged afterwards), 'auto': LoRA on GPU, else full.",
    )
    epochs: float | None = Field(default=None, gt=0, le=100)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimiser steps.")
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    batch_size: int | None = Field(default=None, ge=1, le=1024, description="Sequences per optimiser step.")
    block_size: int | None = Field(
        default=None, ge=16, le=131072, description="Tokens per packed training sequence (at most the model context)."
    )
    heldout_fraction: float | None = Field(default=None, gt=0, lt=1, description="Share of notes held out.")
    lora_r: int | None = Field(default=None, ge=1, le=1024)
    lora_alpha: int | None = Field(default=None, ge=1, le=4096)
    seed: int | None = Field(default=None, ge=0)
    max_seconds: float | None = Field(default=None, gt=0, description="Stop training after this long (wall time).")


class AdaptationRequested(Envelope):
    """Command: adapt a causal LM (the generator's model) to real notes on the trainer's storage.

    The notes never travel in the message: ``notes`` names a JSONL document file inside the trainer's configured
    notes folder.
    """

    routing_key: ClassVar[str] = "adaptation.requested"
    type: Literal["AdaptationRequested"] = "AdaptationRequested"
    schema_version: Literal[1] = 1

    notes: str = Field(
        min_length=1,
        max_length=1000,
        description="JSONL document file of real notes, relative to the trainer's notes folder.",
    )
    base_model: str | None = Field(
        default=None,
        max_length=1000,
        description="Local causal-LM folder (or .gguf file); None = the trainer's configured one.",
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="Output folder name under the trainer's generators folder; default: derived from the message id.",
    )
    parameters: AdaptationParameters = Field(default_factory=AdaptationParameters)


class GeneratorAdapted(Envelope):
    """Event: an adapted generator model was written (merged Hugging Face folder, leak-gate reference, metrics)."""

    routing_key: ClassVar[str] = "generator.adapted"
    type: Literal["GeneratorAdapted"] = "GeneratorAdapted"
    schema_version: Literal[1] = 1

    artifact_uri: str = Field(min_length=1, max_length=2000, description="Folder of the adaptation job's output.")
    model_uri: str = Field(min_length=1, max_length=2000, description="The merged Hugging Face model folder.")
    adapter_uri: str | None = Field(default=None, max_length=2000, description="The LoRA adapter folder, if LoRA.")
    leak_reference_uri: str = Field(
        min_length=1, max_length=2000, description="Hashed n-gram reference of the training notes (leak gate)."
    )
    prefix_file_uri: str = Field(
        min_length=1, max_length=2000, description="Opening words of the held-out notes (generator prefix mode)."
    )
    base_model: str = Field(min_length=1, max_length=1000)
    method: Literal["full", "lora"]
    train_notes: int = Field(ge=1)
    heldout_notes: int = Field(ge=1)
    train_tokens: int = Field(ge=1)
    steps: int = Field(ge=0)
    perplexity_before: float = Field(gt=0, description="Held-out perplexity of the base model.")
    perplexity_after: float = Field(gt=0, description="Held-out perplexity of the adapted model.")
    ngram5_recall_before: float = Field(
        ge=0, le=1, description="Share of generated samples' word 5-grams found in the training notes (base model)."
    )
    ngram5_recall_after: float = Field(ge=0, le=1, description="The same for the adapted model (memorisation).")
