"""Long runs keep the terminal for their stages and progress: INFO logs go to a file in the run's workdir."""

from __future__ import annotations

import importlib.util
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
        with _transformers_to(handler):
            yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for existing, level in levels:
            existing.setLevel(level)


@contextmanager
def _transformers_to(handler: logging.Handler) -> Iterator[None]:
    """transformers logs through a stderr handler of its own (a load report per model with a new head) and draws a
    progress bar per model load: for the block, its records go to ``handler`` only, and no bars are drawn."""
    if importlib.util.find_spec("transformers") is None:
        yield
        return
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 - only where transformers is installed

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_default_handler()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        hf_logging.enable_default_handler()
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
