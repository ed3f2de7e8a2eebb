"""Privacy and security across the services, with the services' own logging set-up at DEBUG.

- the NER API answers 401 to every endpoint without a valid key;
- a unique canary planted in NER API requests (in values and as field names), and in notes going through the
  generator, annotator and trainer handlers, appears in no log line at any level, in no error answer and not in
  ``/metrics`` (the NER API's, and what every consumer serves on its probe port: the process-wide LLM and training
  metrics after those handlers ran, and the runner counters, labelled by queue and message type only);
- API keys (the NER API's and the LLM endpoints' keys of the generator and annotator, also on their error paths) and
  the broker password never appear in logs or ``/metrics``;
- a note that is not synthetic, or did not pass the leak check (as the message says, and as the annotator's own leak
  gate finds), never reaches an external endpoint — nor one declared internal whose host is off the allow-list.

The leak gate's quarantine of planted memorised passages is covered where the gate lives
(``services/generator/tests``: ``test_a_planted_memorised_passage_is_caught`` and
``test_notes_failing_the_leak_gate_are_quarantined_with_the_reason``); here its reasons are checked for the canary.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from pydantic import SecretStr

from synthner_annotator.backends.llm import LLMAnnotator, LLMAnnotatorSettings
from synthner_annotator.endpoint import EndpointSettings
from synthner_annotator.handler import make_handler
from synthner_annotator.testing import Answer, checked_egress, constant, lexicon_oracle, openai_compatible_server
from synthner_generator.service import build_generator
from synthner_generator.testing import LLMRequest, Reply, local_llm_server, sample_job, settings_for
from synthner_ner_api.app import create_app
from synthner_ner_api.auth import hash_key
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.testing import lexicon_api_settings, load_lexicon_model, write_key_file
from synthner_shared.contracts import (
    AnnotationFailed,
    DocumentAnnotated,
    LeakCheckResult,
    NoteGenerated,
    NoteQuarantined,
    content_id,
)
from synthner_shared.messaging import Broker, BrokerSettings, BrokerUnavailable
from synthner_shared.observability.metrics import service_registry
from synthner_shared.testing import captured_service_logs, sample_note
from synthner_trainer.app import build as build_trainer
from synthner_trainer.settings import TrainerSettings

CANARY = f"Canary{uuid.uuid4().hex[:12]}"
USER_KEY = f"user-{uuid.uuid4().hex}"
ADMIN_KEY = f"admin-{uuid.uuid4().hex}"
SECRETS = (USER_KEY, ADMIN_KEY, hash_key(USER_KEY), hash_key(ADMIN_KEY))


@pytest.fixture
async def ner_api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The NER API over ASGI with its lifespan, keys unique to this test, and no key sent by default."""
    settings = lexicon_api_settings(tmp_path, max_text_chars=200)
    write_key_file(tmp_path / "keys", USER_KEY, ADMIN_KEY)
    registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
    app = create_app(settings, registry)
    async with app.router.lifespan_context(app):
        await registry.load()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ner") as client:
            yield client


ENDPOINTS = [
    ("POST", "/v1/ner", {"text": "asthma"}),
    ("POST", "/v1/ner/batch", {"items": [{"id": "a", "text": "asthma"}]}),
    ("GET", "/v1/model", None),
    ("POST", "/v1/admin/reload", {}),
    ("POST", "/v1/admin/rollback", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key"}, {"X-API-Key": "not-a-key"}, {"Authorization": "Basic dXNlcg=="}],
    ids=["none", "wrong-bearer", "wrong-x-api-key", "basic"],
)
async def test_every_endpoint_answers_401_without_a_valid_key(
    ner_api: httpx.AsyncClient, method: str, path: str, body: object, headers: dict[str, str]
) -> None:
    response = await ner_api.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]


async def test_canary_and_keys_in_ner_api_traffic_reach_no_log_line_and_no_metric(ner_api: httpx.AsyncClient) -> None:
    user = {"Authorization": f"Bearer {USER_KEY}"}
    json_user = {**user, "Content-Type": "application/json"}
    with captured_service_logs() as logs:
        answers = [
            await ner_api.post("/v1/ner", json={"text": f"{CANARY} has asthma"}, headers=user),
            await ner_api.post("/v1/ner", json={"text": f"asthma {CANARY}"}, headers={"X-API-Key": USER_KEY}),
            await ner_api.post(
                "/v1/ner/batch", json={"items": [{"id": CANARY, "text": f"asthma {CANARY}"}]}, headers=user
            ),
            await ner_api.post("/v1/ner", json={"text": CANARY * 50}, headers=user),  # over max_text_chars
            await ner_api.post("/v1/ner", json={"text": "x", "extra": CANARY}, headers=user),  # unknown field
            await ner_api.post("/v1/ner", json={"text": 7, "note": CANARY}, headers=user),
            await ner_api.post("/v1/ner", json={"text": "x", CANARY: CANARY}, headers=user),  # field named by it
            await ner_api.post(
                "/v1/ner/batch", json={"items": [{"id": "a", "text": [CANARY], CANARY: 1}]}, headers=user
            ),
            await ner_api.post("/v1/ner", content=f'{{"text": "{CANARY}'.encode(), headers=json_user),  # truncated
            await ner_api.post("/v1/ner", content=b'{"text": "\xff' + CANARY.encode(), headers=json_user),  # not UTF-8
            await ner_api.post("/v1/ner", json={"text": "asthma"}, headers={"Authorization": f"Bearer {CANARY}"}),
            await ner_api.post(
                "/v1/admin/reload", json={"version": CANARY}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            ),
        ]
        metrics = await ner_api.get("/metrics")
    assert [a.status_code for a in answers] == [200, 200, 200, 413, 422, 422, 422, 422, 422, 400, 401, 404]
    assert answers[0].json()["entities"][0]["text"] == "asthma"
    assert logs.lines, "nothing was logged: the capture is not working"
    assert metrics.status_code == 200
    for needle in (CANARY, *SECRETS):
        assert logs.containing(needle) == []
        assert needle not in metrics.text
    for answer in answers[3:11]:  # error messages name fields and limits, never the sent text or field names
        assert CANARY not in answer.text


def consumer_metrics() -> str:
    """What a consumer's ``/metrics`` serves, its runner counters aside (those carry queue and type names only)."""
    return generate_latest(service_registry()).decode()


NOTE_WORDS = (
    "patient admitted with chest pain and shortness of breath, treated and discharged home in good condition, "
    "follow-up in the clinic in two weeks"
)


def generator_reply(request: LLMRequest) -> Reply:
    """Notes that carry the canary; every other one also an e-mail address, so it is quarantined."""
    words = NOTE_WORDS.split()
    seed = request.seed or 0
    text = f"{' '.join(words[seed % 5 :])} {CANARY} {' '.join(words[: seed % 5])} seen on day {seed}."
    if seed % 2:
        text += f" Contact {CANARY.lower()}@example.org for the results."
    return Reply(text)


async def test_canary_in_notes_through_generator_annotator_and_trainer_reaches_no_log_line(tmp_path: Path) -> None:
    labels = ["Disease"]
    with captured_service_logs() as logs:
        async with (
            local_llm_server(reply=generator_reply) as llm,
            build_generator(settings_for(llm.url, tmp_path, min_chars=20)) as generator,
        ):
            outputs = await generator.handle(sample_job(count=4))  # one part: no split
        notes = [m for m in outputs if isinstance(m, NoteGenerated)]
        quarantined = [m for m in outputs if isinstance(m, NoteQuarantined)]
        assert notes, outputs
        assert quarantined, outputs
        assert all(CANARY in n.text for n in notes)

        documents: list[DocumentAnnotated] = []
        failed: list[AnnotationFailed] = []
        for script in (lexicon_oracle({CANARY: "Disease"}), constant(f"Sorry, {CANARY} is not JSON")):
            async with openai_compatible_server(script) as server:
                endpoint = EndpointSettings(
                    base_url=server.base_url, model="gpt-test", external=False, max_attempts=1, timeout_s=10
                )  # inside the hospital: these notes were checked without a reference ('unchecked')
                spec = LLMAnnotatorSettings(endpoint=endpoint, malformed_retries=1)
                annotator = LLMAnnotator(spec, labels)
                try:
                    handle = make_handler(annotator, labels, "annotator-test", 10_000)
                    for note in notes:
                        for message in await handle(note):
                            if isinstance(message, DocumentAnnotated):
                                documents.append(message)
                            elif isinstance(message, AnnotationFailed):
                                failed.append(message)
                finally:
                    await annotator.aclose()
        assert len(documents) == len(failed) == len(notes)
        assert all(d.text[e.start : e.end] == CANARY for d in documents for e in d.entities)

        trainer = await build_trainer(TrainerSettings(data_dir=tmp_path / "trainer", labels=labels), BrokerSettings())
        try:
            for document in [*documents, documents[0]]:  # the repeat takes the duplicate path
                assert await trainer.trainer.handle(document) == []
        finally:
            await trainer.aclose()
    assert len(logs.lines) > 10, "too little was logged: the capture is not working"
    assert logs.containing(CANARY) == []
    assert logs.containing(CANARY.lower()) == []
    metrics = consumer_metrics()
    assert "synthner_llm_request_seconds_count" in metrics, "the LLM calls were not measured"
    assert CANARY.lower() not in metrics.lower()
    reasons = [r for q in quarantined for r in q.leak_check.reasons] + [f.reason for f in failed]
    assert reasons
    assert not [r for r in reasons if CANARY.lower() in r.lower()], "a failure reason quotes the note"


@pytest.mark.parametrize(
    ("provenance", "leak_status", "text", "declared_internal"),
    [
        ("real", "passed", None, False),
        ("real", "failed", None, False),
        ("synthetic", "failed", None, False),
        ("synthetic", "unchecked", None, False),
        ("synthetic", "skipped", None, False),  # an earlier message's status: read as unchecked
        (
            "synthetic",
            "passed",
            f"{CANARY} was seen; results to {CANARY.lower()}@example.org.",
            False,
        ),  # the message lies
        ("real", "failed", None, True),  # declared internal, but a public name: not on the allow-list
    ],
)
async def test_a_note_not_synthetic_and_checked_never_reaches_an_external_endpoint(
    provenance: str, leak_status: str, text: str | None, declared_internal: bool
) -> None:
    labels = ["Disease"]
    update: dict[str, object] = {
        "provenance": provenance,
        "leak_check": LeakCheckResult(status=leak_status, detectors=["test"]),  # type: ignore[arg-type]
    }
    if text is not None:
        update |= {"text": text, "note_id": content_id(text)}
    note = sample_note(7).model_copy(update=update)
    async with openai_compatible_server(constant('{"mentions": []}')) as server:
        endpoint = EndpointSettings(base_url=server.base_url, model="gpt-test", max_attempts=1, timeout_s=10)
        if declared_internal:
            # Declared internal, but its host is a public name, not on the allow-list: it counts as external (the
            # name does not resolve here, and nothing is sent to it either).
            endpoint = endpoint.model_copy(
                update={"external": False, "base_url": server.base_url.replace("127.0.0.1", "llm.example.com")}
            )
        policy = checked_egress()
        assert policy.is_external(endpoint), "endpoints are external unless declared internal and allow-listed"
        annotator = LLMAnnotator(LLMAnnotatorSettings(endpoint=endpoint), labels, egress=policy)
        try:
            handle = make_handler(annotator, labels, "annotator-test", 10_000)
            (refused,) = await handle(note)
            assert server.requests == [], "the note was sent to the external endpoint"
            if not declared_internal:
                (accepted,) = await handle(sample_note(8))  # the same endpoint takes a synthetic, checked note
                assert isinstance(accepted, DocumentAnnotated)
                assert len(server.requests) == 1
        finally:
            await annotator.aclose()
    assert isinstance(refused, AnnotationFailed)
    assert "external endpoint" in refused.reason
    assert CANARY not in refused.reason


async def test_llm_endpoint_keys_reach_no_log_line_even_when_the_endpoint_fails(tmp_path: Path) -> None:
    """The generator's and the annotator's bearer keys are sent to their endpoints but logged nowhere (DEBUG), also
    on the error paths (a refusal, server errors and retries)."""
    key = f"sk-{uuid.uuid4().hex}"
    labels = ["Disease"]
    answers = iter([Answer.error(500), Answer.error(401)])

    async def failing(_: dict[str, object]) -> Answer:
        return next(answers, Answer(content='{"mentions": []}'))

    with captured_service_logs() as logs:
        async with local_llm_server() as llm:
            llm.fail_next = [500, 503]
            settings = settings_for(llm.url, tmp_path, api_key=key)
            async with build_generator(settings) as generator:
                outputs = await generator.handle(sample_job(count=2))
        assert [m for m in outputs if isinstance(m, NoteGenerated)], outputs
        async with openai_compatible_server(failing) as server:
            endpoint = EndpointSettings(
                base_url=server.base_url,
                model="gpt-test",
                external=False,  # on 127.0.0.1: the notes reach it whatever their leak check says
                api_key=SecretStr(key),
                max_attempts=2,
                timeout_s=10,
                backoff_initial_s=0.01,
                backoff_max_s=0.01,
            )
            annotator = LLMAnnotator(LLMAnnotatorSettings(endpoint=endpoint), labels)
            try:
                handle = make_handler(annotator, labels, "annotator-test", 10_000)
                results = [m for note in (sample_note(1), sample_note(2)) for m in await handle(note)]
            finally:
                await annotator.aclose()
    assert {type(m) for m in results} == {AnnotationFailed, DocumentAnnotated}, results
    assert server.headers[-1]["authorization"] == f"Bearer {key}", "the key was not sent"
    assert logs.lines, "nothing was logged: the capture is not working"
    assert logs.containing(key) == []
    assert 'kind="http_500"' in consumer_metrics(), "the failed LLM calls were not counted"
    assert key not in consumer_metrics()
    assert key not in repr(settings)
    assert key not in repr(endpoint)


async def test_the_broker_password_is_never_logged() -> None:
    password = f"pw-{uuid.uuid4().hex}"
    settings = BrokerSettings(
        url=f"amqp://synthner:{password}@127.0.0.1:1/",
        connect_timeout_s=1,
        reconnect_interval_s=0.2,
    )
    with captured_service_logs() as logs, pytest.raises(BrokerUnavailable) as refused:
        await Broker(settings, "privacy-test").connect()
    assert logs.containing("127.0.0.1"), "the failed connection was not logged"
    assert logs.containing(password) == []
    assert password not in str(refused.value)
    assert password not in repr(settings)
