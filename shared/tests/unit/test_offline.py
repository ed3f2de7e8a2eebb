"""The model hubs are switched off where a process starts, never by importing synthner's model code; a value the
deployment set wins. Each case runs in a fresh interpreter: huggingface_hub reads its switch once, at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from synthner_shared.offline import OFFLINE_VARIABLES

PROBE = """
import json, os, sys
{before}
from synthner_shared.offline import stay_offline
{call}
import huggingface_hub.constants as constants
env = {{name: os.environ.get(name) for name in {names!r}}}
print(json.dumps({{"env": env, "offline": constants.is_offline_mode()}}))
"""


def probe(*, before: str = "", call: str = "stay_offline()", env: dict[str, str] | None = None) -> dict[str, object]:
    clean = {key: value for key, value in os.environ.items() if key not in OFFLINE_VARIABLES}
    script = PROBE.format(before=before, call=call, names=OFFLINE_VARIABLES)
    done = subprocess.run(
        [sys.executable, "-c", script], env={**clean, **(env or {})}, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_stay_offline_sets_every_switch() -> None:
    assert probe() == {"env": dict.fromkeys(OFFLINE_VARIABLES, "1"), "offline": True}


def test_stay_offline_holds_when_the_hub_library_was_imported_first() -> None:
    # A service's entry point imports its model code (and so huggingface_hub) before the runner starts.
    assert probe(before="import huggingface_hub.constants")["offline"] is True


def test_importing_the_model_code_changes_nothing() -> None:
    pytest.importorskip("torch")
    result = probe(before="import synthner_shared.ner.predictor", call="")
    assert result == {"env": dict.fromkeys(OFFLINE_VARIABLES), "offline": False}


def test_a_value_the_deployment_set_wins() -> None:
    result = probe(env={"HF_HUB_OFFLINE": "0"})
    assert result["offline"] is False
    assert result["env"] == {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
