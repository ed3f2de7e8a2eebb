"""The model store's writer and its reader agree: a store the trainer's registry wrote is what the NER API serves.

The contract itself (:mod:`synthner_shared.model_store`) is tested in ``shared/tests``; this test needs both services,
so it lives with the other cross-package contract tests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from synthner_ner_api.models import ModelRegistry as ServedModels
from synthner_ner_api.models import UnknownModelVersion
from synthner_ner_api.testing import load_lexicon_model
from synthner_shared.model_store import CorruptStoreFile
from synthner_trainer.registry import ModelRegistry, decide


def lexicon_model(word: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "config.json").write_text(json.dumps({"id2label": {"0": "O", "1": "B-Disease", "2": "I-Disease"}}))
        (folder / "lexicon.json").write_text(json.dumps({"label": "Disease", "words": [word]}))

    return write


def trainer_store(root: Path) -> ModelRegistry:
    """m-1 and m-3 published, m-2 rejected, then a rollback to m-1: current.json names the older version."""
    registry = ModelRegistry(root)
    registry.add("m-1", lexicon_model("asthma"), decide(0.8, None, 0.01))
    registry.add("m-2", lexicon_model("diabetes"), decide(0.5, 0.8, 0.01))
    registry.add("m-3", lexicon_model("cancer"), decide(0.81, 0.8, 0.01))
    registry.rollback("m-1", by="ops")
    return registry


async def test_the_ner_api_serves_what_the_trainer_published_and_made_current(tmp_path: Path) -> None:
    registry = trainer_store(tmp_path)
    served = ServedModels(load_lexicon_model, store=tmp_path)
    assert served.servable_versions() == [v.name for v in registry.list() if v.status == "published"] == ["m-1", "m-3"]
    current = registry.current()
    assert current is not None
    model = await served.load()
    assert (model.version, model.path) == (current.name, current.path)
    assert model.predictor.annotate(["asthma"])[0][0].label == "Disease"
    assert (await served.load("m-3")).version == "m-3"
    with pytest.raises(UnknownModelVersion):
        await served.load("m-2")


async def test_a_corrupt_file_stops_the_trainer_but_the_api_serves_what_it_can_verify(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = trainer_store(tmp_path)
    (tmp_path / "current.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorruptStoreFile, match=r"current\.json"):
        registry.current()
    caplog.set_level(logging.WARNING)
    assert (await ServedModels(load_lexicon_model, store=tmp_path).load()).version == "m-3"
    assert "ignoring the current pointer" in caplog.text
    (tmp_path / "versions" / "m-3" / "status.json").write_text('{"verdict": "publ', encoding="utf-8")
    assert ServedModels(load_lexicon_model, store=tmp_path).servable_versions() == ["m-1"]
    assert "not serving model version m-3" in caplog.text
