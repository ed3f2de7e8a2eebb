"""One shape for every service: ``python -m synthner_<svc>`` refuses invalid settings with one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BROKER_SERVICES = ["synthner_generator", "synthner_annotator", "synthner_trainer"]


def run_module(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHNER_") and k != "AMQP_URL"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


LEXICON_ANNOTATOR = {
    "SYNTHNER_ANNOTATOR_LABELS": '["Disease"]',
    "SYNTHNER_ANNOTATOR_ANNOTATOR": '{"kind": "lexicon", "terms": {"Disease": ["gout"]}}',
}


@pytest.mark.parametrize("module", BROKER_SERVICES)
def test_invalid_broker_settings_are_one_line_and_exit_code_2(module: str) -> None:
    result = run_module(module, SYNTHNER_BROKER_PREFETCH="0", **LEXICON_ANNOTATOR)
    assert (result.returncode, result.stderr) == (
        2,
        f"{module.replace('_', '-')}: invalid settings: BrokerSettings: prefetch: Input should be greater than or "
        "equal to 1 [greater_than_equal]\n",
    )


def test_the_ner_api_without_an_auth_mode_is_one_line_and_exit_code_2() -> None:
    result = run_module("synthner_ner_api", SYNTHNER_NER_API_MODEL_DIR="model")
    assert (result.returncode, result.stderr) == (
        2,
        "synthner-ner-api: invalid settings: NerApiSettings: auth_mode: Field required [missing]\n",
    )


def test_a_production_trainer_without_a_gold_set_is_one_line_and_exit_code_2() -> None:
    result = run_module("synthner_trainer", SYNTHNER_ENVIRONMENT="production")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("synthner-trainer: invalid settings: TrainerSettings: ")
    assert "production publishes only gated models: set SYNTHNER_TRAINER_GOLD" in result.stderr
    assert result.stderr.count("\n") == 1


def test_an_unknown_log_level_is_one_line_and_exit_code_2() -> None:
    # The logging settings are the shared runner's, read the same way for every service: one service shows it.
    result = run_module("synthner_generator", SYNTHNER_LOG_LEVEL="loud")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("synthner-generator: invalid settings: LogSettings: SYNTHNER_LOG_LEVEL: ")
    assert result.stderr.count("\n") == 1
