"""Prompt templates, rate limits and back-off, and the handler's mapping of outcomes (the egress guard: test_egress)."""

from __future__ import annotations

import json

import pytest

from synthner_annotator.alignment import AlignmentReport
from synthner_annotator.backends.base import Annotation, AnnotationRequest
from synthner_annotator.errors import ConfigurationError, MalformedReply, TransientAnnotationError
from synthner_annotator.handler import make_handler
from synthner_annotator.prompts import SUPPORTED_LANGUAGES, FewShotExample, PromptSettings, PromptTemplate
from synthner_annotator.ratelimit import Backoff, RateLimiter, retry_after_seconds
from synthner_annotator.spans import Span
from synthner_shared.contracts import AnnotationFailed, AnnotatorRecord, DocumentAnnotated, Mention
from synthner_shared.messaging import PoisonMessageError, RetryableError
from synthner_shared.testing import sample_note

LABELS = ["Disease", "Drug"]
EXAMPLE = FewShotExample(text="Asthma, on salbutamol.", mentions=[Mention(label="Disease", text="Asthma")])


@pytest.mark.parametrize("design", ["json_mentions", "inline_markup"])
@pytest.mark.parametrize("language", [*SUPPORTED_LANGUAGES, "es-ES", "fi"])
def test_every_design_renders_in_every_language(design: str, language: str) -> None:
    settings = PromptSettings(
        name=design,  # type: ignore[arg-type]
        definitions={"Disease": "a disorder or illness"},
        guidelines=["Do not annotate negated findings."],
        examples=[EXAMPLE],
    )
    messages = PromptTemplate(settings, LABELS).messages("Fever.", language)
    system = messages[0]["content"]
    assert "Disease: a disorder or illness" in system
    assert "Drug: Drug" in system
    assert "Do not annotate negated findings." in system
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "Fever."


def test_languages_get_their_own_instructions() -> None:
    template = PromptTemplate(PromptSettings(), LABELS)
    systems = {template.system_message(language) for language in SUPPORTED_LANGUAGES}
    assert len(systems) == len(SUPPORTED_LANGUAGES)
    assert template.system_message("fi") == template.system_message("en")


def test_example_replies_follow_the_design() -> None:
    json_reply = PromptTemplate(PromptSettings(), LABELS).example_reply(EXAMPLE)
    assert json.loads(json_reply) == {"mentions": [{"label": "Disease", "text": "Asthma"}]}
    markup_reply = PromptTemplate(PromptSettings(name="inline_markup"), LABELS).example_reply(EXAMPLE)
    assert markup_reply == "<Disease>Asthma</Disease>, on salbutamol."


def test_unknown_prompt_version_fails_loudly() -> None:
    with pytest.raises(ConfigurationError, match="unknown prompt json_mentions v9"):
        PromptTemplate(PromptSettings(version="v9"), LABELS)


def test_prompt_definitions_must_use_declared_labels() -> None:
    with pytest.raises(ConfigurationError, match="Organ"):
        PromptTemplate(PromptSettings(definitions={"Organ": "x"}), LABELS)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_rate_limiter_spaces_requests_by_the_per_minute_budget() -> None:
    time = FakeTime()
    limiter = RateLimiter(requests_per_minute=2, tokens_per_minute=None, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        await limiter.acquire(10)
    assert time.slept == [pytest.approx(30.0)]


async def test_rate_limiter_waits_for_tokens_and_credits_unused_ones() -> None:
    time = FakeTime()
    limiter = RateLimiter(requests_per_minute=None, tokens_per_minute=600, clock=time.clock, sleep=time.sleep)
    await limiter.acquire(600)
    limiter.settle(estimated=600, actual=300)
    await limiter.acquire(300)
    assert time.slept == []
    await limiter.acquire(5000)  # above the whole budget: waits for a full bucket, not forever
    assert sum(time.slept) == pytest.approx(60.0)


def test_retry_after_is_read_as_seconds_milliseconds_or_date() -> None:
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert retry_after_seconds({}) is None


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    backoff = Backoff(initial_s=1.0, maximum_s=8.0)
    assert [backoff.delay(n, None, 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.delay(3, None, 0.0) == 2.0
    assert backoff.delay(1, 30.0, 0.5) == 30.0


class ScriptedAnnotator:
    def __init__(self, outcome: Annotation | Exception) -> None:
        self.outcome = outcome

    @property
    def name(self) -> str:
        return "scripted"

    def record(self) -> AnnotatorRecord:
        return AnnotatorRecord(backend="scripted")

    def usage(self) -> dict[str, dict[str, float]]:
        return {}

    async def annotate(self, request: AnnotationRequest) -> Annotation:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    async def aclose(self) -> None:
        return None


def annotation(spans: list[Span]) -> Annotation:
    return Annotation(spans, AlignmentReport(spans, proposed=len(spans)), AnnotatorRecord(backend="scripted"))


async def test_handler_publishes_a_document_with_the_spans_and_counts() -> None:
    note = sample_note(1)
    handle = make_handler(ScriptedAnnotator(annotation([Span(0, 3, "Disease", source="s")])), LABELS, "t", 10_000)
    [document] = await handle(note)
    assert isinstance(document, DocumentAnnotated)
    assert document.note_id == note.note_id
    assert document.correlation_id == note.correlation_id
    assert [(e.start, e.end, e.label) for e in document.entities] == [(0, 3, "Disease")]
    assert document.alignment.mentions_aligned == 1


async def test_handler_reports_permanent_failures_as_annotation_failed() -> None:
    note = sample_note(2)
    handle = make_handler(ScriptedAnnotator(MalformedReply("3 replies could not be parsed", 3)), LABELS, "t", 10_000)
    [failed] = await handle(note)
    assert isinstance(failed, AnnotationFailed)
    assert (failed.reason, failed.attempts, failed.note_id) == ("3 replies could not be parsed", 3, note.note_id)


async def test_handler_rejects_huge_notes_without_calling_the_backend() -> None:
    handle = make_handler(ScriptedAnnotator(RuntimeError("not called")), LABELS, "t", 10)
    [failed] = await handle(sample_note(3))
    assert isinstance(failed, AnnotationFailed)
    assert "above the limit of 10" in failed.reason


async def test_handler_turns_transient_failures_into_retries() -> None:
    handle = make_handler(ScriptedAnnotator(TransientAnnotationError("endpoint down")), LABELS, "t", 10_000)
    with pytest.raises(RetryableError, match="endpoint down"):
        await handle(sample_note(4))


async def test_handler_never_publishes_a_broken_span_list() -> None:
    broken = annotation([Span(0, 99_999, "Disease")])
    handle = make_handler(ScriptedAnnotator(broken), LABELS, "t", 10_000)
    with pytest.raises(PoisonMessageError, match="not a non-empty span inside the text"):
        await handle(sample_note(5))


async def test_handler_marks_a_reason_too_long_for_the_message() -> None:
    handle = make_handler(ScriptedAnnotator(MalformedReply("x" * 5000)), LABELS, "t", 10_000)
    [failed] = await handle(sample_note(6))
    assert isinstance(failed, AnnotationFailed)
    assert len(failed.reason) <= 2000
    assert failed.reason.endswith("[3050 more characters not shown]")
