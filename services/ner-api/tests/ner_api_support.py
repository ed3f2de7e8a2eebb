"""NER API test support: keys, the gold data location, and the lexicon model helpers of
:mod:`synthner_ner_api.testing` (one copy, shared with the reliability tests and the benchmarks)."""

from __future__ import annotations

import shutil
from pathlib import Path

from synthner_ner_api.testing import (
    ADMIN_KEY,
    USER_KEY,
    LexiconPredictor,
    load_lexicon_model,
    mark_published,
    write_model,
)
from synthner_shared.model_store import ModelStoreLayout

__all__ = ["ADMIN_KEY", "GOLD", "USER_KEY", "LexiconPredictor", "install_model", "load_lexicon_model", "write_model"]

GOLD = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def install_model(store: Path, model: Path, version: str = "m-tiny") -> Path:
    """Copy a model folder into ``store`` in the trainer's layout, as a published version."""
    folder = ModelStoreLayout(store).version_dir(version)
    shutil.copytree(model, folder)
    mark_published(folder)
    return folder
