"""The HTTP layer: offsets and texts, auth and key rotation, limits and 4xx errors, hot swap, logs without PHI."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from ner_api_support import ADMIN_KEY, USER_KEY, load_lexicon_model, write_model

from synthner_ner_api.app import create_app
from synthner_ner_api.auth import hash_key, new_key
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def test_entities_carry_code_point_offsets_into_the_sent_text(client: httpx.AsyncClient) -> None:
    text = "Señor 🙂 with diabetes\r\n e\u0301 café and 肺炎; asthma"
    response = await client.post("/v1/ner", json={"text": text})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "v1"
    assert [e["text"] for e in body["entities"]] == ["diabetes", "café", "肺炎", "asthma"]
    for entity in body["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    assert response.headers["x-request-id"] == body["request_id"]


async def test_batch_answers_each_item_by_id_with_one_model_version(client: httpx.AsyncClient) -> None:
    items = [{"id": f"n{i}", "text": f"note {i}: asthma"} for i in range(5)]
    body = (await client.post("/v1/ner/batch", json={"items": items})).json()
    assert [r["id"] for r in body["results"]] == [f"n{i}" for i in range(5)]
    assert all(r["entities"][0]["text"] == "asthma" for r in body["results"])


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"Authorization": ""}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"X-API-Key": USER_KEY}, 200)],
)
async def test_api_keys_are_required(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    response = await client.post("/v1/ner", json={"text": "asthma"}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert "API key" in response.json()["error"]


async def test_admin_endpoints_need_an_admin_key(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/admin/rollback")).status_code == 403


async def test_keys_rotate_without_restart(client: httpx.AsyncClient, key_file: Path) -> None:
    rotated = new_key()
    key_file.write_text(f"clinic:user:{hash_key(rotated)}\nops:admin:{hash_key(ADMIN_KEY)}\n# rotated\n")
    old = await client.post("/v1/ner", json={"text": "asthma"})
    new = await client.post("/v1/ner", json={"text": "asthma"}, headers={"Authorization": f"Bearer {rotated}"})
    assert old.status_code == 401
    assert new.status_code == 200


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"not json", 422),
        (b'{"text": 5}', 422),
        (b'{"text": ""}', 422),
        (b'{"text": "asthma", "extra": 1}', 422),
        (b'{"text": "\xff\xfe asthma"}', 400),
        (b'{"text": "' + b"a" * 5_001 + b'"}', 413),
        (b'{"text": "' + b"a" * 60_000 + b'"}', 413),
    ],
)
async def test_bad_input_is_a_4xx_with_a_message_that_does_not_echo_text(
    client: httpx.AsyncClient, content: bytes, status: int
) -> None:
    response = await client.post("/v1/ner", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error
    assert "asthma" not in error
    assert "aaaa" not in error


CANARY = "ZQcanary7741"


@pytest.mark.parametrize(
    "body",
    [
        {"text": "asthma", CANARY: 1},
        {"text": 5, "note": CANARY},
        {"text": [CANARY]},
        {CANARY: {"text": CANARY}},
        {"items": [{"id": "a", "text": "asthma", CANARY: CANARY}]},
    ],
    ids=["unknown-field-name", "value-beside-a-wrong-type", "wrong-type", "nested", "batch-item"],
)
async def test_validation_errors_say_where_and_what_without_echoing_names_or_values(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    path = "/v1/ner/batch" if "items" in body else "/v1/ner"
    response = await client.post(path, json=body)
    assert response.status_code == 422
    assert CANARY not in response.text
    error = response.json()["error"]
    assert error.startswith("invalid request: body")
    assert "[" in error, "the kind of error (pydantic's type) is named"


async def test_a_validation_error_names_known_fields_and_hides_unknown_ones(client: httpx.AsyncClient) -> None:
    body = {"items": [{"id": "a", "text": 7, CANARY: 1}]}
    error = (await client.post("/v1/ner/batch", json=body)).json()["error"]
    assert "body.items.0.text: Input should be a valid string [string_type]" in error
    assert "body.items.0.<unknown key>: Extra inputs are not permitted [extra_forbidden]" in error


async def test_openapi_declares_the_configured_limits_and_the_api_key_schemes(
    client: httpx.AsyncClient, settings: NerApiSettings
) -> None:
    document = (await client.get("/openapi.json")).json()
    models = document["components"]["schemas"]
    assert models["NerRequest"]["properties"]["text"]["maxLength"] == settings.max_text_chars
    assert models["BatchItemIn"]["properties"]["text"]["maxLength"] == settings.max_text_chars
    assert models["NerBatchRequest"]["properties"]["items"]["maxItems"] == settings.max_batch_items
    assert str(settings.max_body_bytes) in document["info"]["description"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key as `Authorization: Bearer <key>`.",
    }
    assert schemes["ApiKeyHeader"]["in"] == "header"
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"
    for path in ("/v1/ner", "/v1/ner/batch", "/v1/admin/reload", "/v1/admin/rollback"):
        assert document["paths"][path]["post"]["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}], path
    assert document["paths"]["/v1/model"]["get"]["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}]


async def test_openapi_behind_a_proxy_declares_the_proxy_header(settings: NerApiSettings) -> None:
    proxied = settings.model_copy(update={"auth_mode": "trusted_proxy", "api_keys_file": None})
    app = create_app(proxied, ModelRegistry(load_lexicon_model, store=settings.model_store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ner") as http:
        document = (await http.get("/openapi.json")).json()
    (scheme,) = document["components"]["securitySchemes"].values()
    assert scheme["name"] == "X-Authenticated-User"
    assert document["paths"]["/v1/ner"]["post"]["security"] == [{"AuthenticatingProxy": []}]


async def test_a_batch_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    items = [{"id": str(i), "text": "x"} for i in range(9)]
    assert (await client.post("/v1/ner/batch", json={"items": items})).status_code == 413


async def test_swap_under_concurrent_requests_fails_none_and_mixes_no_model(
    client: httpx.AsyncClient, store: Path
) -> None:
    write_model(store, "v2", "Condition", ["diabetes", "asthma", "肺炎", "café"])
    registry: ModelRegistry = client.app_registry  # type: ignore[attr-defined]
    stop = asyncio.Event()
    seen: list[tuple[str, set[str]]] = []
    answered_by = {"v1": asyncio.Event(), "v2": asyncio.Event()}

    async def caller() -> None:
        while not stop.is_set():
            response = await client.post(
                "/v1/ner/batch", json={"items": [{"id": "a", "text": "asthma"}, {"id": "b", "text": "diabetes"}]}
            )
            assert response.status_code == 200
            body = response.json()
            seen.append((body["model_version"], {e["label"] for r in body["results"] for e in r["entities"]}))
            answered_by[body["model_version"]].set()

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    for version in ("v2", "v1", "v2"):
        answered_by[version].clear()
        reply = await client.post("/v1/admin/reload", json={"version": version}, headers=ADMIN)
        assert reply.status_code == 200
        assert registry.current is not None
        assert registry.current.version == version
        await asyncio.wait_for(answered_by[version].wait(), timeout=30)  # requests flow on the new model
    stop.set()
    await asyncio.gather(*callers)
    assert {version for version, _ in seen} == {"v1", "v2"}
    for version, labels in seen:
        assert labels == ({"Disease"} if version == "v1" else {"Condition"})


async def test_reload_swaps_to_the_newest_version_and_unknown_versions_are_404(
    client: httpx.AsyncClient, store: Path
) -> None:
    write_model(store, "v2", "Condition", ["asthma"])
    assert (await client.post("/v1/admin/reload", json={}, headers=ADMIN)).json() == {
        "version": "v2",
        "previous_version": "v1",
    }
    assert (await client.get("/v1/model")).json()["version"] == "v2"
    assert (await client.post("/v1/admin/reload", json={"version": "v9"}, headers=ADMIN)).status_code == 404


async def test_rejected_versions_are_never_served(client: httpx.AsyncClient, store: Path) -> None:
    folder = write_model(store, "v3", "Condition", ["asthma"])
    (folder / "status.json").write_text('{"verdict": "rejected"}')
    assert (await client.post("/v1/admin/reload", json={"version": "v3"}, headers=ADMIN)).status_code == 404


async def test_model_info_probes_and_metrics(client: httpx.AsyncClient) -> None:
    info = (await client.get("/v1/model")).json()
    assert info["labels"] == ["Disease"]
    assert info["metrics"] == {"strict_f1": 0.5}
    assert (await client.get("/readyz")).status_code == 200
    await client.post("/v1/ner", json={"text": "asthma"})
    metrics = (await client.get("/metrics")).text
    assert 'synthner_ner_model_info{version="v1"} 1.0' in metrics
    assert "synthner_ner_batch_texts_count" in metrics
    assert USER_KEY not in metrics


async def test_no_log_record_contains_request_text_or_entities(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    planted = "Zyxwvut-Patient-Marker-4242"
    caplog.set_level(logging.DEBUG)
    await client.post("/v1/ner", json={"text": f"{planted} has asthma"})
    await client.post("/v1/ner/batch", json={"items": [{"id": "1", "text": planted}]})
    await client.post("/v1/ner", json={"text": planted * 300})  # 413
    await client.post(
        "/v1/ner", content=f'{{"text": 7, "x": "{planted}"}}', headers={"Content-Type": "application/json"}
    )
    assert caplog.records, "the requests were logged"
    for record in caplog.records:
        assert planted not in record.getMessage()
        assert "asthma" not in record.getMessage()


async def test_the_page_for_people_is_served_without_external_assets(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    assert "<textarea" in page
    assert "http://" not in page
    assert "https://" not in page
