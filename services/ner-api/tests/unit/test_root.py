"""The composition root: the API on uvicorn as the shared runner runs it (serve until asked to stop, then stop)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from ner_api_support import USER_KEY, load_lexicon_model

from synthner_ner_api.app import build, listens_for_models
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.local_llm import free_port


async def test_the_root_serves_the_api_on_its_port_until_asked_to_stop(settings: NerApiSettings) -> None:
    port = free_port()
    registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
    server = await build(settings.model_copy(update={"port": port}), registry=registry)
    assert server.health() is None  # it answers its probes itself, on its port
    running = asyncio.create_task(server.run())
    await asyncio.wait_for(server.wait_started(), 30)
    await asyncio.wait_for(registry.wait_for_version("v1"), 30)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": USER_KEY}) as http:
        assert (await http.get("/readyz")).status_code == 200
        body = (await http.post("/v1/ner", json={"text": "asthma"})).json()
        assert [e["text"] for e in body["entities"]] == ["asthma"]
        server.request_stop()
        assert await asyncio.wait_for(running, 30) is True
        with pytest.raises(httpx.ConnectError):
            await http.get("/livez")
    await server.aclose()


async def test_a_port_in_use_ends_the_run_with_uvicorns_start_up_failure(settings: NerApiSettings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
        server = await build(settings.model_copy(update={"port": port}), registry=registry)
        with pytest.raises(SystemExit) as exit_info:
            await server.run()
    assert exit_info.value.code == 3


def test_the_api_listens_for_published_models_only_where_it_serves_a_store(settings: NerApiSettings) -> None:
    assert listens_for_models(settings)
    assert not listens_for_models(settings.model_copy(update={"listen_for_models": False}))
    fixed = settings.model_copy(update={"model_store": None, "model_dir": settings.model_store})
    assert not listens_for_models(fixed)
