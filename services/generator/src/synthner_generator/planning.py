"""Job planning, free of transport: validation before any LLM call, splitting, and what each note is made from.

A note is fully determined by ``(job, index, attempt)``: its seed is derived from the job seed, index and attempt,
and that seed drives the note type, the sampled attributes, the requested entities and the prefix. Regenerating a
note (a redelivery, or an audit) therefore asks the LLM the same question with the same seed.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from synthner_generator.prompts import Attributes, PromptCatalog, UnknownPromptError
from synthner_generator.vocabulary import Vocabulary
from synthner_shared.contracts import GenerationRequested, Mention

SEED_BITS = 31
PART_NAMESPACE = uuid.UUID("6f1d3c1e-5b7a-4c55-9a43-1f0e8f0b7c21")


class JobRefused(ValueError):
    """The job cannot be run; the message says why (no note text, no lexicon entries)."""


def derive_seed(job_seed: int, index: int, attempt: int = 0) -> int:
    """A per-note seed, stable across processes and machines (fits every backend's seed type)."""
    digest = hashlib.blake2b(f"{job_seed}:{index}:{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - SEED_BITS)


@dataclass(frozen=True)
class JobContext:
    """What validation and planning need to know about this deployment."""

    catalog: PromptCatalog
    vocabularies: dict[str, Vocabulary]
    known_labels: Sequence[str]
    external_endpoint: bool
    prefixes: Sequence[str] | None
    entities_per_label: int
    prefix_words: int
    passages: Sequence[str] = ()
    """Prefix mode: identifier-free passages of real notes, one read before each prefix (none: the prefix alone)."""


def lexicon_for(request: GenerationRequested, vocabulary: Vocabulary) -> dict[str, list[Mention]]:
    """Entities per requested label: the job's seed lexicon where it has the label, else the built-in one."""
    own = request.seed_lexicon or []
    built_in = vocabulary.lexicon()
    return {
        label: [m for m in own if m.label == label] or [m for m in built_in if m.label == label]
        for label in request.entity_labels
    }


def validate(request: GenerationRequested, context: JobContext) -> None:
    """Raise :class:`JobRefused` for a job that must not start; runs before any LLM call."""
    try:
        context.catalog.check(request.prompt, request.language, request.note_types)
    except UnknownPromptError as exc:
        raise JobRefused(str(exc)) from None
    vocabulary = context.vocabularies.get(request.language)
    if vocabulary is None:
        raise JobRefused(f"no vocabulary for language {request.language!r} (known: {sorted(context.vocabularies)})")
    unknown = sorted(set(request.entity_labels) - set(context.known_labels))
    if unknown:
        raise JobRefused(f"unknown entity label(s) {unknown} (known: {list(context.known_labels)})")
    if request.mode == "label_conditioned":
        empty = sorted(label for label, mentions in lexicon_for(request, vocabulary).items() if not mentions)
        if empty:
            raise JobRefused(f"label-conditioned mode needs lexicon entries for label(s) {empty}")
    if request.mode == "prefix":
        if context.external_endpoint:
            raise JobRefused(
                "prefix mode sends real text; the configured LLM endpoint is not marked internal "
                "(SYNTHNER_GENERATOR_ENDPOINT_ZONE=internal), so it is refused as external"
            )
        if not context.prefixes:
            raise JobRefused("prefix mode needs real notes to take prefixes from (prefix_file); none are configured")


def split(request: GenerationRequested, part_size: int, fanout: int) -> list[GenerationRequested]:
    """The parts of a request larger than ``part_size`` (at most ``fanout`` of them, each split again if still too
    large), or ``[]`` when the request is small enough to run as it is. Part message ids are derived from the job
    and range, so a re-split after a redelivery yields the same ids (the runner skips ones it has handled)."""
    if request.count <= part_size:
        return []
    per_part = max(part_size, -(-request.count // fanout))
    total = request.job_total or request.count
    parts = []
    for offset in range(0, request.count, per_part):
        first = request.first_index + offset
        count = min(per_part, request.count - offset)
        message_id = uuid.uuid5(PART_NAMESPACE, f"{request.job_id}:{first}:{count}")
        parts.append(
            request.model_copy(
                update={"first_index": first, "count": count, "job_total": total, "message_id": message_id}
            )
        )
    return parts


@dataclass(frozen=True)
class NotePlan:
    """Everything one LLM call is made from."""

    index: int
    attempt: int
    seed: int
    note_type: str
    attributes: Attributes
    requested: list[Mention]
    prefix: str
    passage: str = ""


def plan_note(request: GenerationRequested, index: int, attempt: int, context: JobContext) -> NotePlan:
    seed = derive_seed(request.seed, index, attempt)
    rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not security
    vocabulary = context.vocabularies[request.language]
    note_type = request.note_types[index % len(request.note_types)]
    attributes = vocabulary.sample(rng)
    requested: list[Mention] = []
    if request.mode == "label_conditioned":
        for mentions in lexicon_for(request, vocabulary).values():
            unique = sorted(set(mentions), key=lambda m: m.text)
            requested.extend(rng.sample(unique, k=min(context.entities_per_label, len(unique))))
    prefix = passage = ""
    if request.mode == "prefix" and context.prefixes:
        prefix = " ".join(rng.choice(context.prefixes).split()[: context.prefix_words])
        if context.passages:  # drawn after the prefix, so the prefixes stay what they were without passages
            passage = rng.choice(context.passages)
    return NotePlan(index, attempt, seed, note_type, attributes, requested, prefix, passage)
