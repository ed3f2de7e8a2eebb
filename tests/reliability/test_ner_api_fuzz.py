"""The NER API against schemathesis-generated requests: no 5xx, and every answer is what the OpenAPI declares.

A moderate number of cases here; ``python benchmarks/ner_api_fuzz.py`` runs 1,000 or more.
"""

from __future__ import annotations

from pathlib import Path

from synthner_ner_api.app import create_app
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.testing import fuzz_api, lexicon_api_settings, load_lexicon_model

CASES = 200


def test_generated_requests_get_no_server_error_and_only_declared_answers(tmp_path: Path) -> None:
    settings = lexicon_api_settings(tmp_path)
    app = create_app(settings, ModelRegistry(load_lexicon_model, store=settings.model_store))
    report = fuzz_api(app, CASES, seed=10)
    assert report.failures == []
    assert report.server_errors == 0
    assert report.cases == CASES
    assert report.statuses[200] > 0, "no request got through to the model"
    assert {401, 422} <= set(report.statuses), "neither missing keys nor invalid bodies were generated"
