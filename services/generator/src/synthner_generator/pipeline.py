"""The generator's domain core: one generation request in, the messages it produces out. No broker, no environment.

A request larger than the part size is split into parts (re-published, each handled by any replica). A part runs
its notes concurrently; the shared semaphore keeps at most ``concurrency`` LLM requests in flight per process, across
all parts being handled. Each note ends as exactly one of: generated (NoteGenerated), rejected by the quality
filters, dropped as a duplicate, quarantined by the leak gate (NoteQuarantined), or failed (GenerationFailed); the
part's GenerationProgress counts them, so there is never a silent gap.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from synthner_generator.dedup import DedupStore, note_owner
from synthner_generator.llm import LLMClient, Prompt, complete_with_retries
from synthner_generator.planning import JobContext, JobRefused, NotePlan, plan_note, split, validate
from synthner_generator.quality import QualityBounds, check_reply
from synthner_shared.contracts import (
    Envelope,
    GenerationFailed,
    GenerationProgress,
    GenerationRecord,
    GenerationRequested,
    NoteGenerated,
    NoteQuarantined,
    content_id,
)
from synthner_shared.leakgate import LeakGate

log = logging.getLogger(__name__)
PROGRESS_NAMESPACE = uuid.UUID("0c9a7f0e-2f4e-4b8e-8d5e-7d6a1b2c3d4e")

Outcome = Literal["generated", "rejected", "duplicates", "quarantined", "failed"]


@dataclass(frozen=True)
class NoteResult:
    outcome: Outcome
    message: Envelope | None = None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff_s: Sequence[float]
    regenerate_rejected: int


def compose(prefix: str, reply: str) -> str:
    """The note text: the reply, after the prefix unless the model already repeated it (a continuation that goes on
    with punctuation joins the prefix without a space)."""
    reply = reply.strip()
    if not prefix or reply.startswith(prefix):
        return reply
    if not reply:
        return ""
    return f"{prefix}{reply}" if reply[0] in ",.;:!?)" else f"{prefix} {reply}"


class Generator:
    """Handles GenerationRequested messages; see the module docstring."""

    def __init__(
        self,
        llm: LLMClient,
        context: JobContext,
        *,
        dedup: DedupStore,
        gate: LeakGate,
        bounds: QualityBounds,
        retry: RetryPolicy,
        producer: str,
        concurrency: int,
        part_size: int,
        split_fanout: int,
    ) -> None:
        self._llm = llm
        self._context = context
        self._dedup = dedup
        self._gate = gate
        self._bounds = bounds
        self._retry = retry
        self._producer = producer
        self._limit = asyncio.Semaphore(concurrency)
        self._part_size = part_size
        self._fanout = split_fanout

    def _progress(self, request: GenerationRequested, event: str, **counts: int | str) -> GenerationProgress:
        key = f"{request.job_id}:{event}:{request.first_index if event == 'part' else ''}"
        return GenerationProgress.model_validate(
            {
                "message_id": uuid.uuid5(PROGRESS_NAMESPACE, key),
                "correlation_id": request.job_id,
                "producer": self._producer,
                "job_id": request.job_id,
                "event": event,
                "first_index": request.first_index,
                **counts,
            }
        )

    async def handle(self, request: GenerationRequested) -> list[Envelope]:
        """The messages for one request: refusal, parts, or the notes of one part with its progress."""
        submitted = request.job_total is None
        try:
            validate(request, self._context)
        except JobRefused as exc:
            log.warning("job %s refused: %s", request.job_id, exc)
            failed = GenerationFailed(
                correlation_id=request.job_id,
                producer=self._producer,
                job_id=request.job_id,
                reason=f"job refused: {exc}",
                attempts=1,
            )
            if submitted:
                return [failed, self._progress(request, "refused", requested=request.count, reason=str(exc))]
            return [failed, self._progress(request, "part", requested=request.count, failed=request.count)]
        outputs: list[Envelope] = []
        if submitted:
            outputs.append(self._progress(request, "accepted", requested=request.count))
        parts = split(request, self._part_size, self._fanout)
        if parts:
            log.info(
                "job %s: %d notes from %d split into %d parts",
                request.job_id,
                request.count,
                request.first_index,
                len(parts),
            )
            return outputs + list(parts)
        indices = range(request.first_index, request.first_index + request.count)
        try:
            # A task group, unlike gather, cancels the part's other notes when one raises unexpectedly: the runner
            # then retries the whole part, which regenerates the same notes.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._note(request, index)) for index in indices]
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        results = [task.result() for task in tasks]
        counts = Counter(result.outcome for result in results)
        outputs.extend(result.message for result in results if result.message is not None)
        outputs.append(
            self._progress(request, "part", requested=request.count, **{str(k): n for k, n in counts.items()})
        )
        log.info("job %s part %d+%d: %s", request.job_id, request.first_index, request.count, dict(counts))
        return outputs

    def _prompt(self, request: GenerationRequested, plan: NotePlan) -> Prompt:
        instruction = self._context.catalog.render(
            request.prompt,
            request.language,
            plan.note_type,
            plan.attributes,
            requested=plan.requested,
            prefix=plan.prefix,
        )
        return Prompt(instruction, plan.prefix, request.sampling, plan.seed, context=plan.passage)

    async def _note(self, request: GenerationRequested, index: int) -> NoteResult:
        last = NoteResult("rejected")
        for attempt in range(1 + self._retry.regenerate_rejected):
            plan = plan_note(request, index, attempt, self._context)
            reply = await complete_with_retries(
                self._llm, self._prompt(request, plan), self._retry.attempts, self._retry.backoff_s, self._limit
            )
            # Let the request waiting for the freed LLM slot go out before this note's CPU-bound checks run, so the
            # checks overlap the next request's latency instead of delaying it.
            await asyncio.sleep(0)
            if reply.completion is None:
                log.warning(
                    "job %s note %d failed after %d attempts: %s", request.job_id, index, reply.attempts, reply.error
                )
                return NoteResult(
                    "failed",
                    GenerationFailed(
                        correlation_id=request.job_id,
                        producer=self._producer,
                        job_id=request.job_id,
                        note_index=index,
                        reason=f"LLM call failed: {reply.error}",
                        attempts=reply.attempts,
                    ),
                )
            checked = check_reply(reply.completion, compose(plan.prefix, reply.completion.text), self._bounds)
            if checked.rule is not None:
                log.info("job %s note %d attempt %d rejected: %s", request.job_id, index, attempt, checked.rule)
                last = NoteResult("rejected")
                continue
            result = self._accept(request, plan, checked.text, cut=checked.cut)
            if result.outcome != "duplicates":
                return result
            last = result
        return last

    def _accept(self, request: GenerationRequested, plan: NotePlan, text: str, *, cut: bool = False) -> NoteResult:
        note_id = content_id(text)
        attributes = dict(plan.attributes)
        attributes.update({"note_index": plan.index, "attempt": plan.attempt})
        if cut:
            attributes["cut_at_sentence"] = 1  # the LLM stopped at its token limit: its unfinished sentence is gone
        if plan.requested:
            lowered = text.lower()
            attributes["requested_found"] = sum(1 for m in plan.requested if m.text.lower() in lowered)
            attributes["requested_total"] = len(plan.requested)
        if plan.prefix:
            attributes["prefix_words"] = len(plan.prefix.split())
        if plan.passage:
            attributes["passage_words"] = len(plan.passage.split())
        record = GenerationRecord(
            backend=self._llm.backend,
            model=self._llm.model,
            prompt=request.prompt,
            seed=plan.seed,
            sampling=request.sampling,
            attributes=attributes,
        )
        leak = self._gate.check(text)
        if leak.status == "failed":
            log.warning("job %s note %d quarantined: %s", request.job_id, plan.index, "; ".join(leak.reasons))
            return NoteResult(
                "quarantined",
                NoteQuarantined(
                    correlation_id=request.job_id,
                    producer=self._producer,
                    job_id=request.job_id,
                    note_index=plan.index,
                    note_id=note_id,
                    text=text,
                    language=request.language,
                    note_type=plan.note_type,
                    generation=record,
                    leak_check=leak,
                ),
            )
        verdict = self._dedup.admit(note_id, text, owner=note_owner(request.job_id, plan.index))
        if verdict.verdict != "new":
            log.info(
                "job %s note %d attempt %d dropped: %s (similarity %.2f)",
                request.job_id,
                plan.index,
                plan.attempt,
                verdict.verdict,
                verdict.similarity,
            )
            return NoteResult("duplicates")
        return NoteResult(
            "generated",
            NoteGenerated(
                correlation_id=request.job_id,
                producer=self._producer,
                note_id=note_id,
                text=text,
                language=request.language,
                note_type=plan.note_type,
                provenance="synthetic",
                generation=record,
                requested_entities=plan.requested,
                leak_check=leak,
            ),
        )
