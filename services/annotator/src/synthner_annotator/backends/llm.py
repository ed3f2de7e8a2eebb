"""The LLM annotator: prompt -> OpenAI-compatible chat endpoint -> parsed mentions -> aligned spans.

Long notes are split into overlapping chunks, annotated concurrently (bounded by the endpoint's concurrency) and
merged (:mod:`synthner_annotator.chunking`). A reply that cannot be parsed is asked for again up to
``malformed_retries`` times, then the note fails with :class:`MalformedReply`.

Counts of a chunked note: ``proposed`` sums the chunks; spans of the overlap regions that another chunk owns, and
spans rejected when merging, count as dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthner_annotator.alignment import AlignmentReport, ProposedMention, RepeatMode, align_mentions
from synthner_annotator.backends.base import Annotation, AnnotationRequest
from synthner_annotator.chunking import chunk_text, merge_chunk_spans
from synthner_annotator.egress import EgressPolicy
from synthner_annotator.endpoint import ChatEndpoint, EndpointSettings
from synthner_annotator.errors import MalformedReply
from synthner_annotator.parsing import (
    MentionList,
    ParsedReply,
    parse_inline_markup,
    parse_mention_list,
    plain_text_of_markup,
)
from synthner_annotator.prompts import PromptSettings, PromptTemplate
from synthner_annotator.spans import OverlapPolicy
from synthner_shared.contracts import AnnotatorRecord

log = logging.getLogger(__name__)


class LLMAnnotatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["llm"] = "llm"
    name: str = Field(default="llm", min_length=1, max_length=60)
    endpoint: EndpointSettings
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    malformed_retries: int = Field(default=2, ge=0, le=10, description="New requests after an unparseable reply.")
    chunk_chars: int = Field(default=6000, ge=200, description="Longest text sent in one request.")
    chunk_overlap_chars: int = Field(default=400, ge=0, description="Overlap of consecutive chunks.")
    repeated_mentions: RepeatMode = "in_order"
    overlap_policy: OverlapPolicy = "longest"

    @model_validator(mode="after")
    def _overlap_below_half(self) -> LLMAnnotatorSettings:
        if self.chunk_overlap_chars >= self.chunk_chars // 2:
            raise ValueError("chunk_overlap_chars must be below half of chunk_chars")
        return self


class LLMAnnotator:
    """Annotates with one prompt design on one endpoint."""

    def __init__(
        self,
        settings: LLMAnnotatorSettings,
        labels: Sequence[str],
        endpoint: ChatEndpoint | None = None,
        egress: EgressPolicy | None = None,
    ):
        self.settings = settings
        self.labels = list(labels)
        self.template = PromptTemplate(settings.prompt, labels)
        self.endpoint = endpoint or ChatEndpoint(settings.endpoint)
        self.egress = egress or EgressPolicy()

    @property
    def name(self) -> str:
        return self.settings.name

    def record(self) -> AnnotatorRecord:
        return AnnotatorRecord(backend="llm", model=self.settings.endpoint.model, prompt=self.template.ref)

    def usage(self) -> dict[str, dict[str, float]]:
        return {self.endpoint.settings.name: self.endpoint.usage.as_dict()}

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    async def annotate(self, request: AnnotationRequest) -> Annotation:
        self.egress.check(request, self.endpoint.settings)
        chunks = chunk_text(request.text, self.settings.chunk_chars, self.settings.chunk_overlap_chars)
        results = await asyncio.gather(
            *(self._annotate_chunk(chunk.text_of(request.text), request.language) for chunk in chunks)
        )
        report = AlignmentReport()
        for chunk_report, _ in results:
            report.merge(chunk_report)
        spans, _ = merge_chunk_spans(chunks, [r.spans for r, _ in results], self.settings.overlap_policy)
        # Spans that did not survive ownership and merging were duplicates or overlaps: count them as dropped.
        lost = sum(len(r.spans) for r, _ in results) - len(spans)
        report.overlapping += max(0, min(report.aligned, lost))
        report.spans = spans
        attempts = max(attempts for _, attempts in results)
        return Annotation(spans=spans, report=report, record=self.record(), attempts=attempts)

    async def _annotate_chunk(self, text: str, language: str) -> tuple[AlignmentReport, int]:
        if not text.strip():
            return AlignmentReport(), 0
        messages = self.template.messages(text, language)
        schema = MentionList if self.template.design == "json_mentions" else None
        tries = self.settings.malformed_retries + 1
        last = ""
        calls = 0
        for _ in range(tries):
            reply = await self.endpoint.complete(messages, schema)
            calls += reply.attempts
            try:
                parsed = self._parse(reply.content)
            except MalformedReply as exc:
                last = exc.reason
                log.info("endpoint %s: unusable reply (%s)", self.endpoint.settings.name, exc.reason)
                continue
            return self._align(text, reply.content, parsed), calls
        raise MalformedReply(f"{tries} replies could not be parsed; last: {last}", attempts=calls)

    def _parse(self, content: str) -> ParsedReply:
        if self.template.design == "json_mentions":
            return parse_mention_list(content)
        return parse_inline_markup(content, self.labels)

    def _align(self, text: str, content: str, parsed: ParsedReply) -> AlignmentReport:
        mentions = parsed.mentions
        if self.template.design == "inline_markup":
            plain = plain_text_of_markup(content, self.labels)
            if plain != text and plain:
                # The LLM altered the text: scale the hints from its copy's offsets to the original's.
                scale = len(text) / len(plain)
                mentions = [
                    ProposedMention(m.label, m.text, None if m.hint is None else round(m.hint * scale))
                    for m in mentions
                ]
        report = align_mentions(
            text,
            mentions,
            self.labels,
            mode=self.settings.repeated_mentions,
            overlap_policy=self.settings.overlap_policy,
            source=self.name,
        )
        report.proposed += parsed.malformed_items
        report.malformed += parsed.malformed_items
        return report
