"""The chaos run at CI size: a few dozen notes through the service processes while each is SIGKILLed at least once
and a private RabbitMQ node restarts; nothing may be lost or duplicated, and the NER API must answer with the model
the trainer published. ``python benchmarks/chaos.py`` runs 1,000 notes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from synthner_shared.broker_node import rabbitmq_scripts
from tests.reliability.chaos import ChaosOptions, describe, run_chaos

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.chaos,
    pytest.mark.e2e,
    pytest.mark.skipif(rabbitmq_scripts() is None, reason="needs rabbitmq-server to start a private node"),
    pytest.mark.timeout(600),
]


def epmd_names() -> str:
    try:
        return subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=30, check=False).stdout
    except FileNotFoundError:
        return ""


async def test_chaos_run_loses_and_duplicates_no_note_and_serves_the_published_model(tmp_path: Path) -> None:
    options = ChaosOptions(
        workdir=tmp_path,
        notes=40,
        seed=3,
        part_size=5,
        llm_latency_s=0.3,
        llm_concurrency=2,
        kill_interval_s=3.0,
        broker_restarts=1,
        train_documents=40,
        deadline_s=480,
        stall_s=90,
    )
    result = await run_chaos(options)
    report = "\n".join([*describe(result), result.line()])

    assert result.failure is None, report
    assert result.sent == 40, report
    assert result.lost == 0, report
    assert result.duplicated == 0, report
    assert result.stored + result.dead_lettered == result.sent, report
    assert result.broker_restarts == 1, report
    for name in ("generator", "annotator-1", "annotator-2", "trainer", "ner-api"):
        assert result.kills[name] >= 1, report
        assert result.restarts[name] >= result.kills[name], report
    assert result.model_version is not None, report
    assert result.answered_by == result.model_version, report
    # The private node is gone: no longer registered with epmd.
    assert result.broker_node
    assert f"name {result.broker_node.split('@')[0]} " not in epmd_names()
