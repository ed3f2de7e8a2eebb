"""Fixtures of the NER API tests: a key file, a model store with one version, settings and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ner_api_support import USER_KEY, load_lexicon_model, write_model

from synthner_ner_api.app import create_app
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings
from synthner_ner_api.testing import LEXICON, write_key_file


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "keys")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "models"
    write_model(store, "v1", "Disease", LEXICON)
    return store


@pytest.fixture
def settings(store: Path, key_file: Path) -> NerApiSettings:
    return NerApiSettings(
        auth_mode="api_keys",
        api_keys_file=key_file,
        model_store=store,
        max_text_chars=5_000,
        max_batch_items=8,
        max_body_bytes=50_000,
        batch_max_wait_ms=2,
        rate_limit_per_s=0,  # off: these tests send bursts from one key; test_abuse.py tests the limit
    )


@pytest.fixture
async def client(settings: NerApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
    app = create_app(settings, registry)
    async with app.router.lifespan_context(app):
        await registry.load()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ner", headers={"Authorization": f"Bearer {USER_KEY}"}
        ) as http:
            http.app_registry = registry  # type: ignore[attr-defined]
            yield http
