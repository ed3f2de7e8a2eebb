"""Abuse resistance: per-key rate limits, a bounded model queue, a time limit, work of departed clients dropped,
authentication before the body, the proxy header only from the proxy, weak keys refused, security headers.

Disconnects and bodies that never arrive need a real socket: those tests serve the app on uvicorn on 127.0.0.1 (in
this event loop) and speak raw HTTP/1.1 to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
import pytest
from ner_api_support import ADMIN_KEY, USER_KEY, load_lexicon_model

from synthner_ner_api.app import build, create_app
from synthner_ner_api.auth import ApiKeys, KeyFileError, hash_key, key_line, new_key, weak_key_reason
from synthner_ner_api.batcher import MicroBatcher, QueueFull
from synthner_ner_api.models import LoadedModel, ModelRegistry, Predictor, SpanPrediction
from synthner_ner_api.ratelimit import TokenBuckets
from synthner_ner_api.settings import NerApiSettings
from synthner_ner_api.state import ApiState
from synthner_shared import auth as shared_auth
from synthner_shared.local_llm import free_port

USER = {"Authorization": f"Bearer {USER_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
DEADLINE_S = 30.0


class GatedPredictor:
    """A predictor that records every text it is given and holds each model call until :attr:`gate` opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen: list[str] = []

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]:
        self.seen.extend(texts)
        self.entered.set()
        if not self.gate.wait(DEADLINE_S):
            raise TimeoutError("the test never opened the gate")
        return [[] for _ in texts]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, DEADLINE_S), "no model call started"


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait (with a deadline) for a state the server reaches on its own (no event to wait on from outside)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def gated_registry(settings: NerApiSettings, predictor: GatedPredictor) -> ModelRegistry:
    def load(_: Path) -> Predictor:
        return predictor

    return ModelRegistry(load, store=settings.model_store)


@contextlib.asynccontextmanager
async def in_process(
    settings: NerApiSettings, registry: ModelRegistry | None = None, client: tuple[str, int] = ("127.0.0.1", 123)
) -> AsyncIterator[httpx.AsyncClient]:
    registry = registry or ModelRegistry(load_lexicon_model, store=settings.model_store)
    app = create_app(settings, registry)
    async with app.router.lifespan_context(app):
        await registry.load()
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://ner", headers=USER) as http:
            http.api_state = app.state.api  # type: ignore[attr-defined]
            yield http


@contextlib.asynccontextmanager
async def on_uvicorn(settings: NerApiSettings, registry: ModelRegistry) -> AsyncIterator[tuple[int, ApiState]]:
    """The app served by the API's own server on a free port of 127.0.0.1, in this event loop."""
    port = free_port()
    server = await build(settings.model_copy(update={"port": port}), registry=registry)
    running = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.wait_started(), DEADLINE_S)
        await asyncio.wait_for(registry.wait_for_version("v1"), DEADLINE_S)
        yield port, server.app.state.api  # type: ignore[attr-defined]
    finally:
        server.request_stop()
        await asyncio.wait_for(running, 2 * DEADLINE_S)


async def raw_request(port: int, head: str, body: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    return reader, writer


async def status_of(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), DEADLINE_S)
    return int(line.split()[1])


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and headers of the next answer on the connection (its body read and dropped)."""
    status = await status_of(reader)
    headers: dict[str, str] = {}
    while (line := await asyncio.wait_for(reader.readline(), DEADLINE_S)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers["content-length"]))
    return status, headers


# --- rate limits ------------------------------------------------------------------------------------------------


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst_and_says_how_long_to_wait() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == 1  # half a second to the next token: Retry-After is whole seconds, at least 1
    assert buckets.take("b") == 0, "each caller has a bucket of its own"
    now[0] = 0.5
    assert buckets.take("a") == 0
    now[0] = 100.0
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 1], "refilled to the burst, never beyond"
    buckets.charge("a", 10)  # a batch's other texts: debt down to one burst below empty
    assert buckets.take("a") == 2  # (1 - (-3)) / 2 s


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_go_on(settings: NerApiSettings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_s": 0.01, "rate_limit_burst": 2, "rate_limit_delay_s": 0})
    async with in_process(limited) as http:
        statuses = [(await http.post("/v1/ner", json={"text": "asthma"})).status_code for _ in range(2)]
        refused = await http.post("/v1/ner", json={"text": "asthma"})
        other = await http.get("/v1/model", headers=ADMIN)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "rate limit" in refused.json()["error"]
    assert other.status_code == 200


async def test_a_caller_over_its_limit_is_held_back_and_nobody_else_waits(settings: NerApiSettings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_s": 0.01, "rate_limit_burst": 1, "rate_limit_delay_s": 60})
    async with in_process(limited) as http:
        assert (await http.post("/v1/ner", json={"text": "asthma"})).status_code == 200
        held = asyncio.create_task(http.post("/v1/ner", json={"text": "asthma"}))
        registry = http.api_state.metrics.registry  # type: ignore[attr-defined]
        refused = {"kind": "429"}
        await wait_until(lambda: registry.get_sample_value("synthner_ner_errors_total", refused) == 1, "the refusal")
        other = await http.post("/v1/ner", json={"text": "asthma"}, headers=ADMIN)
        assert other.status_code == 200
        assert not held.done(), "the 429 is held back for rate_limit_delay_s"
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)


async def test_a_batch_costs_one_token_per_text(settings: NerApiSettings) -> None:
    limited = settings.model_copy(update={"rate_limit_per_s": 0.01, "rate_limit_burst": 4, "rate_limit_delay_s": 0})
    items = [{"id": str(i), "text": "asthma"} for i in range(3)]
    async with in_process(limited) as http:
        batch = await http.post("/v1/ner/batch", json={"items": items})
        single = await http.post("/v1/ner", json={"text": "asthma"})
        refused = await http.post("/v1/ner", json={"text": "asthma"})
    assert (batch.status_code, single.status_code, refused.status_code) == (200, 200, 429)


# --- the bounded queue, the time limit, departed clients ---------------------------------------------------------


async def test_a_full_queue_answers_503_with_retry_after_and_queued_work_still_completes(
    settings: NerApiSettings,
) -> None:
    bounded = settings.model_copy(update={"queue_max_texts": 2, "max_batch_items": 2})
    predictor = GatedPredictor()
    async with in_process(bounded, gated_registry(bounded, predictor)) as http:
        running = asyncio.create_task(http.post("/v1/ner", json={"text": "first"}))
        await predictor.wait_entered()  # the worker is busy with it: it no longer counts as queued
        items = [{"id": "a", "text": "second"}, {"id": "b", "text": "third"}]
        queued = asyncio.create_task(http.post("/v1/ner/batch", json={"items": items}))
        state: ApiState = http.api_state  # type: ignore[attr-defined]
        await wait_until(lambda: state.batcher.queued_texts == 2, "the batch to be queued")
        refused = await http.post("/v1/ner", json={"text": "fourth"})
        predictor.gate.set()
        answered = [(await running).status_code, (await queued).status_code]
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert "busy" in refused.json()["error"]
    assert answered == [200, 200]
    assert "fourth" not in predictor.seen


async def test_a_request_over_the_time_limit_is_503_and_its_queued_text_never_reaches_the_model(
    settings: NerApiSettings,
) -> None:
    timed = settings.model_copy(update={"request_timeout_s": 0.3})
    predictor = GatedPredictor()
    async with in_process(timed, gated_registry(timed, predictor)) as http:
        running = asyncio.create_task(http.post("/v1/ner", json={"text": "in the model"}))
        await predictor.wait_entered()
        waiting = await http.post("/v1/ner", json={"text": "still queued"})
        state: ApiState = http.api_state  # type: ignore[attr-defined]
        predictor.gate.set()
        first = await running
    assert waiting.status_code == 503
    assert waiting.headers["Retry-After"] == "1"
    assert "no answer within 0.3 s" in waiting.json()["error"]
    assert first.status_code == 503, "the text in the model call also ran over the limit"
    assert predictor.seen == ["in the model"]
    assert state.batcher.dropped_texts == 1
    assert state.batcher.queued_texts == 0


async def test_cancelled_callers_leave_the_queue_and_free_its_room() -> None:
    predictor = GatedPredictor()
    model = LoadedModel(version="v1", path=Path(), predictor=predictor, labels=[], base_model=None)
    batcher = MicroBatcher(lambda: model, max_texts=8, max_wait_s=0.0, max_queued_texts=3)
    batcher.start()
    try:
        busy = asyncio.create_task(batcher.predict(["busy"]))
        await predictor.wait_entered()
        leaving = asyncio.create_task(batcher.predict(["left", "early"]))
        await wait_until(lambda: batcher.queued_texts == 2, "the job to be queued")
        with pytest.raises(QueueFull):
            await batcher.predict(["one", "too many"])
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        assert (batcher.queued_texts, batcher.dropped_texts) == (0, 2)
        staying = asyncio.create_task(batcher.predict(["stays"]))
        predictor.gate.set()
        await asyncio.gather(busy, staying)
    finally:
        predictor.gate.set()
        await batcher.stop()
    assert predictor.seen == ["busy", "stays"]


async def test_a_client_that_disconnects_while_queued_gets_its_work_dropped(settings: NerApiSettings) -> None:
    predictor = GatedPredictor()
    async with (
        on_uvicorn(settings, gated_registry(settings, predictor)) as (port, state),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=USER) as http,
    ):
        running = asyncio.create_task(http.post("/v1/ner", json={"text": "in the model"}))
        await predictor.wait_entered()
        body = b'{"text": "from a client that leaves"}'
        head = f"POST /v1/ner HTTP/1.1\nHost: ner\nAuthorization: Bearer {USER_KEY}\n"
        head += f"Content-Type: application/json\nContent-Length: {len(body)}\n"
        _, writer = await raw_request(port, head, body)
        await wait_until(lambda: state.batcher.queued_texts == 1, "the leaving client's text to be queued")
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: state.batcher.dropped_texts == 1, "the departed client's text to be dropped")
        predictor.gate.set()
        assert (await running).status_code == 200
        metrics = (await http.get("/metrics")).text
    assert predictor.seen == ["in the model"]
    assert "synthner_ner_dropped_texts_total 1.0" in metrics
    assert 'synthner_ner_errors_total{kind="499"} 1.0' in metrics


# --- authentication before the body ---------------------------------------------------------------------------


async def test_an_unauthenticated_request_is_refused_before_its_body_is_sent(settings: NerApiSettings) -> None:
    big = settings.model_copy(update={"max_body_bytes": 8_000_000})
    async with on_uvicorn(big, ModelRegistry(load_lexicon_model, store=settings.model_store)) as (port, _):
        for auth in ("", "Authorization: Bearer not-a-key\n", f"X-API-Key: {USER_KEY[:-1]}\n"):
            head = f"POST /v1/ner HTTP/1.1\nHost: ner\n{auth}Content-Type: application/json\nContent-Length: 8000000\n"
            reader, writer = await raw_request(port, head)  # the 8 MB never come: a server waiting for them hangs
            status, headers = await answer_of(reader)
            assert status == 401, auth
            assert headers["connection"] == "close", "the server does not read megabytes it refused"
            assert await reader.read() == b"", "the server closed the connection"
            writer.close()


async def test_a_refused_small_body_keeps_the_connection_for_the_next_request(settings: NerApiSettings) -> None:
    async with on_uvicorn(settings, ModelRegistry(load_lexicon_model, store=settings.model_store)) as (port, _):
        body = b'{"text": "asthma"}'
        head = f"POST /v1/ner HTTP/1.1\nHost: ner\nContent-Type: application/json\nContent-Length: {len(body)}\n"
        reader, writer = await raw_request(port, head + "Authorization: Bearer not-a-key\n", body)
        status, headers = await answer_of(reader)
        assert (status, headers.get("connection")) == (401, None)
        writer.write(f"{head}Authorization: Bearer {USER_KEY}\n\n".replace("\n", "\r\n").encode() + body)
        assert (await answer_of(reader))[0] == 200
        writer.close()


async def test_an_oversized_body_is_refused_from_its_length_and_while_it_streams(settings: NerApiSettings) -> None:
    async with on_uvicorn(settings, ModelRegistry(load_lexicon_model, store=settings.model_store)) as (port, _):
        head = f"POST /v1/ner HTTP/1.1\nHost: ner\nAuthorization: Bearer {USER_KEY}\nContent-Type: application/json\n"
        reader, writer = await raw_request(port, head + "Content-Length: 100000\n")
        status, headers = await answer_of(reader)
        assert (status, headers["connection"]) == (413, "close")
        writer.close()
        reader, writer = await raw_request(port, head + "Transfer-Encoding: chunked\n")
        chunk = b'{"text": "' + b"a" * 9_990
        for _ in range(6):  # 60 kB, over the 50 kB limit, and the body never ends
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            chunk = b"a" * 10_000
        assert await status_of(reader) == 413
        writer.close()


async def test_a_body_still_uploading_at_the_time_limit_is_cut_off(settings: NerApiSettings) -> None:
    timed = settings.model_copy(update={"request_timeout_s": 0.3})
    async with on_uvicorn(timed, ModelRegistry(load_lexicon_model, store=settings.model_store)) as (port, _):
        head = f"POST /v1/ner HTTP/1.1\nHost: ner\nAuthorization: Bearer {USER_KEY}\nContent-Type: application/json\n"
        reader, writer = await raw_request(port, head + "Content-Length: 1000\n", b'{"text": "as')  # and no more
        status, headers = await answer_of(reader)
        assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "1")
        assert await reader.read() == b"", "the server closed the connection"
        writer.close()


async def test_a_user_key_is_refused_from_admin_endpoints_before_the_body(settings: NerApiSettings) -> None:
    async with in_process(settings) as http:
        response = await http.post(
            "/v1/admin/reload", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 403


# --- the authenticating proxy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidrs", "peer", "status"),
    [
        (None, "127.0.0.1", 200),  # the default: a proxy in the same pod
        (None, "10.1.2.3", 401),
        (["10.0.0.0/8"], "10.1.2.3", 200),
        (["10.0.0.0/8"], "127.0.0.1", 401),
        (["10.0.0.0/8"], "192.168.1.9", 401),
        (["fd00::/8"], "fd00::7", 200),
    ],
)
async def test_the_proxy_header_is_believed_only_from_a_trusted_peer(
    settings: NerApiSettings, cidrs: list[str] | None, peer: str, status: int
) -> None:
    update = {} if cidrs is None else {"trusted_proxy_cidrs": cidrs}
    behind_proxy = NerApiSettings.model_validate(
        {"auth_mode": "trusted_proxy", "model_store": settings.model_store, "rate_limit_per_s": 0, **update}
    )
    async with in_process(behind_proxy, client=(peer, 5000)) as http:
        response = await http.post("/v1/admin/rollback", headers={"X-Authenticated-User": "mallory"})
        user = await http.post("/v1/ner", json={"text": "asthma"}, headers={"X-Authenticated-User": "ann"})
    assert user.status_code == status
    if status == 401:
        assert response.status_code == 401, "a spoofed header is no admin"
        assert "authenticating proxy" in user.json()["error"]


async def test_a_forwarded_for_header_never_makes_a_caller_a_trusted_proxy(settings: NerApiSettings) -> None:
    behind_proxy = NerApiSettings.model_validate(
        {"auth_mode": "trusted_proxy", "model_store": settings.model_store, "trusted_proxy_cidrs": ["10.9.9.0/24"]}
    )
    registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
    async with (
        on_uvicorn(behind_proxy, registry) as (port, _),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        spoofed = {"X-Authenticated-User": "mallory", "X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.9.9.9"}
        response = await http.post("/v1/ner", json={"text": "asthma"}, headers=spoofed)
    assert response.status_code == 401


# --- key strength ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "weak"),
    [
        (new_key(), False),
        (secrets.token_hex(32), False),  # openssl rand -hex 32
        ("user-key-0123456789", True),  # short
        ("a" * 64, True),  # one character
        ("passwordpasswordpasswordpassword", True),  # few distinct characters
    ],
)
def test_weak_raw_keys_are_told_apart_from_generated_ones(key: str, weak: bool) -> None:
    assert (weak_key_reason(key) is not None) == weak


def test_a_weak_key_is_refused_where_the_raw_key_is_known_and_never_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyFileError, match="at least 32 characters") as refused:
        key_line("clinic", "user", "hunter2-hunter2")
    assert "hunter2" not in str(refused.value)
    assert shared_auth.main(["new", "his-integration", "admin"]) == 0
    out, err = capsys.readouterr()
    name, scope, digest = out.strip().split(":")
    assert (name, scope) == ("his-integration", "admin")
    assert hash_key(err.strip().rsplit(" ", 1)[-1]) == digest


def test_a_listed_weak_key_is_refused_at_request_time(tmp_path: Path) -> None:
    weak, strong = "user-key-0123456789", new_key()
    keys = tmp_path / "keys"
    keys.write_text(f"old:user:{hash_key(weak)}\nnew:user:{hash_key(strong)}\n", encoding="utf-8")
    assert ApiKeys(keys).authenticate(weak) is not None, "without a minimum (the review service) it still works"
    checked = ApiKeys(keys, min_key_bits=128)
    assert checked.authenticate(weak) is None
    assert checked.authenticate(strong) is not None


@pytest.mark.parametrize("lost_key", ["", "\n"])
async def test_a_key_file_with_the_hash_of_a_lost_key_stops_the_start_up(
    settings: NerApiSettings, lost_key: str
) -> None:
    assert settings.api_keys_file is not None
    settings.api_keys_file.write_text(f"clinic:user:{hash_key(USER_KEY)}\nhis:user:{hash_key(lost_key)}\n")
    with pytest.raises(KeyFileError, match=r"keys:2: the hash of (an empty key|a newline)"):
        create_app(settings, ModelRegistry(load_lexicon_model, store=settings.model_store))


# --- headers, OpenAPI, settings -------------------------------------------------------------------------------


async def test_the_page_and_the_api_answers_carry_security_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "connect-src 'self'" in csp
    assert "script-src 'sha256-" in csp, "the inline script runs by its hash"
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    for response in (
        await client.post("/v1/ner", json={"text": "asthma"}),
        await client.post("/v1/ner", json={"text": "asthma"}, headers={"Authorization": ""}),
    ):
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


async def test_openapi_declares_the_rate_limit_and_busy_answers(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path in ("/v1/ner", "/v1/ner/batch"):
        assert {"429", "503"} <= set(document["paths"][path]["post"]["responses"]), path


def test_a_queue_smaller_than_one_batch_is_refused(settings: NerApiSettings) -> None:
    with pytest.raises(ValueError, match="queue_max_texts"):
        NerApiSettings(
            auth_mode="trusted_proxy", model_store=settings.model_store, queue_max_texts=4, max_batch_items=8
        )
