"""Long runs keep the terminal for their stages and progress: INFO logs go to a file in the run's workdir."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """Send every log record of the block to ``path`` (INFO and up, or DEBUG with ``-v``); the terminal's handlers
    keep warnings and errors only. Log records never carry note text (the services' rule), so the file holds none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = [(existing, existing.level) for existing in root.handlers]
    for existing, _ in levels:
        existing.setLevel(max(existing.level, logging.WARNING))
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for existing, level in levels:
            existing.setLevel(level)
