"""NER API test support: model folders served by a small lexicon predictor (the app's own Predictor port).

Tests of the real token-classification model use a folder trained in the test; these exercise the HTTP layer.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from synthner_ner_api.models import Predictor, SpanPrediction

USER_KEY = "user-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"


class LexiconPredictor:
    def __init__(self, label: str, words: list[str]) -> None:
        self._label = label
        self._pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)))

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]:
        return [
            [SpanPrediction(m.start(), m.end(), self._label, 0.9) for m in self._pattern.finditer(text)]
            for text in texts
        ]


def load_lexicon_model(path: Path) -> Predictor:
    spec = json.loads((path / "lexicon.json").read_text(encoding="utf-8"))
    return LexiconPredictor(spec["label"], spec["words"])


def write_model(store: Path, version: str, label: str, words: list[str]) -> Path:
    folder = store / "versions" / version
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"verdict": "published"}), encoding="utf-8")
    id2label = {"0": "O", "1": f"B-{label}", "2": f"I-{label}"}
    (folder / "config.json").write_text(json.dumps({"id2label": id2label}), encoding="utf-8")
    (folder / "lexicon.json").write_text(json.dumps({"label": label, "words": words}), encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps({"strict_f1": 0.5}), encoding="utf-8")
    return folder


GOLD = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def install_model(store: Path, model: Path, version: str = "m-tiny") -> Path:
    """Copy a model folder into ``store`` in the trainer's layout, as a published version."""
    folder = store / "versions" / version
    shutil.copytree(model, folder)
    (folder / "status.json").write_text(json.dumps({"verdict": "published"}), encoding="utf-8")
    return folder
