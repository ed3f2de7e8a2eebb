"""``python -m synthner_trainer``: run the trainer service until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from synthner_shared.messaging import BrokerSettings, serve_health
from synthner_trainer.service import TrainerService
from synthner_trainer.settings import TrainerSettings


async def main() -> int:
    settings = TrainerSettings()
    trainer = TrainerService(settings, BrokerSettings())
    health_server = None
    if settings.health_port is not None:
        health_server = await serve_health(trainer.service.health, "0.0.0.0", settings.health_port)  # noqa: S104
    try:
        finished = await trainer.run()
    finally:
        if health_server is not None:
            health_server.close()
        trainer.close()
    return 0 if finished else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main()))
