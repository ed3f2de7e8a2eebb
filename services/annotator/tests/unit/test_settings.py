"""Settings from the environment and a JSON file, the backend factory, and the entry point's error handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthner_annotator.backends.ensemble import EnsembleAnnotator
from synthner_annotator.backends.lexicon import LexiconAnnotator
from synthner_annotator.factory import build_annotator
from synthner_annotator.settings import CONFIG_FILE_VARIABLE, AnnotatorSettings

CONFIG = {
    "labels": ["Disease", "Drug"],
    "annotator": {
        "kind": "ensemble",
        "members": [
            {"weight": 2, "annotator": {"kind": "lexicon", "name": "gazetteer", "terms": {"Drug": ["aspirin"]}}},
            {
                "annotator": {
                    "kind": "llm",
                    "name": "gpt",
                    "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-test", "requests_per_minute": 60},
                    "prompt": {"name": "inline_markup", "definitions": {"Drug": "a medicine"}},
                }
            },
        ],
    },
}


async def test_settings_from_a_config_file_with_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "annotator.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    monkeypatch.setenv("SYNTHNER_ANNOTATOR_PRODUCER", "annotator-7")
    settings = AnnotatorSettings()
    assert settings.producer == "annotator-7"
    assert settings.labels == ["Disease", "Drug"]
    annotator = build_annotator(settings.annotator, settings.labels)
    try:
        assert isinstance(annotator, EnsembleAnnotator)
        assert annotator.record().members == ["gazetteer: lexicon 1 terms", "gpt: llm gpt-test inline_markup.v1"]
    finally:
        await annotator.aclose()


def test_settings_from_environment_variables_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_FILE_VARIABLE, raising=False)
    monkeypatch.setenv("SYNTHNER_ANNOTATOR_LABELS", '["Disease"]')
    monkeypatch.setenv("SYNTHNER_ANNOTATOR_ANNOTATOR", '{"kind": "lexicon", "terms": {"Disease": ["gout"]}}')
    settings = AnnotatorSettings()
    assert isinstance(build_annotator(settings.annotator, settings.labels), LexiconAnnotator)


def test_entry_point_exits_2_on_invalid_settings_naming_the_field() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHNER_ANNOTATOR_")}
    env["SYNTHNER_ANNOTATOR_LABELS"] = '["Disease"]'
    result = subprocess.run(
        [sys.executable, "-m", "synthner_annotator"], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2
    assert "annotator: Field required" in result.stderr
