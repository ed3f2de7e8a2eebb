"""The ensemble: several annotators vote, span by span, with weights.

A span (exact start, end and label) is kept when the members proposing it hold more than ``threshold`` of the total
weight (default one half: a weighted majority); its score is that share. Kept spans that still overlap (possible
only with a threshold below one half) are resolved by score, then length. Agreement of a document is the mean
pairwise F1 of the members' span sets (1.0 when every member found nothing).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthner_annotator.alignment import AlignmentReport
from synthner_annotator.backends.base import Annotation, AnnotationRequest, Annotator
from synthner_annotator.backends.encoder import EncoderSettings
from synthner_annotator.backends.lexicon import LexiconSettings
from synthner_annotator.backends.llm import LLMAnnotatorSettings
from synthner_annotator.spans import Span, resolve_overlaps
from synthner_shared.contracts import AnnotatorRecord

MemberSpec = Annotated[LLMAnnotatorSettings | LexiconSettings | EncoderSettings, Field(discriminator="kind")]


class EnsembleMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(default=1.0, gt=0)
    annotator: MemberSpec


class EnsembleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ensemble"] = "ensemble"
    name: str = Field(default="ensemble", min_length=1, max_length=60)
    members: list[EnsembleMember] = Field(min_length=2)
    threshold: float = Field(default=0.5, ge=0.0, lt=1.0, description="Share of the total weight a span must exceed.")


def span_f1(first: Sequence[Span], second: Sequence[Span]) -> float:
    """Strict F1 between two span sets (symmetric); 1.0 when both are empty."""
    a, b = {s.key for s in first}, {s.key for s in second}
    if not a and not b:
        return 1.0
    return 2 * len(a & b) / (len(a) + len(b))


def agreement(span_sets: Sequence[Sequence[Span]]) -> float:
    pairs = list(itertools.combinations(span_sets, 2))
    return sum(span_f1(a, b) for a, b in pairs) / len(pairs) if pairs else 1.0


def vote(
    member_spans: Sequence[tuple[float, Sequence[Span]]], threshold: float, source: str
) -> tuple[list[Span], int, int]:
    """Weighted vote; returns (kept spans, candidates, rejected)."""
    total = sum(weight for weight, _ in member_spans)
    support: dict[tuple[int, int, str], float] = defaultdict(float)
    for weight, spans in member_spans:
        for key in {s.key for s in spans}:
            support[key] += weight
    winners = [
        Span(start, end, label, score=round(share, 6), source=source, rank=rank)
        for rank, ((start, end, label), share) in enumerate(
            sorted(((key, weight / total) for key, weight in support.items()), key=lambda kv: (-kv[1], kv[0]))
        )
        if share > threshold
    ]
    kept, _ = resolve_overlaps(winners, "first")  # rank = order of descending support
    return kept, len(support), len(support) - len(kept)


class EnsembleAnnotator:
    def __init__(self, settings: EnsembleSettings, members: Sequence[tuple[float, Annotator]]) -> None:
        self.settings = settings
        self.members = list(members)
        names = [member.name for _, member in self.members]
        if len(set(names)) != len(names):
            raise ValueError("ensemble members need distinct names")

    @property
    def name(self) -> str:
        return self.settings.name

    def record(self) -> AnnotatorRecord:
        members = []
        for _, member in self.members:
            record = member.record()
            prompt = f" {record.prompt.name}.{record.prompt.version}" if record.prompt else ""
            members.append(f"{member.name}: {record.backend} {record.model or ''}{prompt}".strip())
        return AnnotatorRecord(backend="ensemble", members=members)

    def usage(self) -> dict[str, dict[str, float]]:
        merged: dict[str, dict[str, float]] = {}
        for _, member in self.members:
            merged.update(member.usage())
        return merged

    async def aclose(self) -> None:
        await asyncio.gather(*(member.aclose() for _, member in self.members))

    async def annotate(self, request: AnnotationRequest) -> Annotation:
        results = await asyncio.gather(*(member.annotate(request) for _, member in self.members))
        member_spans = [(weight, result.spans) for (weight, _), result in zip(self.members, results, strict=True)]
        kept, candidates, rejected = vote(member_spans, self.settings.threshold, self.name)
        report = AlignmentReport(spans=kept, proposed=candidates, overlapping=rejected)
        return Annotation(
            spans=kept,
            report=report,
            record=self.record(),
            agreement=agreement([spans for _, spans in member_spans]),
            attempts=max(result.attempts for result in results),
            members={member.name: result.spans for (_, member), result in zip(self.members, results, strict=True)},
        )
