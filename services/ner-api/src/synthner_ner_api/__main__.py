"""``python -m synthner_ner_api``: serve the NER API with settings from the environment."""

from __future__ import annotations

import functools
import os

import uvicorn

from synthner_ner_api.app import create_app
from synthner_ner_api.events import listen_for_models
from synthner_ner_api.loading import ServingLoader
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.logs import configure_logging
from synthner_shared.messaging import BrokerSettings


def main() -> None:
    settings = NerApiSettings()  # auth_mode and the model location come from the environment
    configure_logging(
        os.environ.get("SYNTHNER_LOG_LEVEL", "INFO"), "json" if settings.environment == "production" else "text"
    )
    registry = ModelRegistry(ServingLoader(settings), store=settings.model_store, fixed=settings.model_dir)
    events = (
        functools.partial(listen_for_models, BrokerSettings(), settings.instance)
        if settings.listen_for_models and settings.model_store is not None
        else None
    )
    app = create_app(settings, registry, events)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # our own request log line carries no query strings or bodies
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
