"""The chaos run at CI size: a few dozen notes through the service processes while each is SIGKILLed at least once
(some kills timed to hit work in flight), an annotator drains on SIGTERM, and a private RabbitMQ node restarts and
crashes; nothing may be lost, duplicated or dead-lettered, the killed work must come back, and the NER API must answer
with the model the trainer published. A smaller run with a planted fault must fail. ``python benchmarks/chaos.py``
runs 1,000 notes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from synthner_shared.broker_node import rabbitmq_scripts
from tests.reliability.chaos.result import ChaosOptions, describe
from tests.reliability.chaos.run import run_chaos

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
        annotate_latency_s=0.3,
        kill_interval_s=3.0,
        broker_restarts=1,
        broker_crashes=1,
        train_documents=40,
        deadline_s=480,
        stall_s=90,
    )
    result = await run_chaos(options)
    report = "\n".join([*describe(result), result.line()])

    assert result.problems() == [], report
    assert result.sent == 40, report
    assert (result.lost, result.duplicated, result.dead_lettered) == (0, 0, 0), report
    assert result.stored == result.sent, report
    assert not result.dead_letter_reasons, report
    assert (result.broker_restarts, result.broker_crashes) == (1, 1), report
    assert result.analysis.in_flight_kills >= 1, report
    assert result.redeliveries >= 1, report
    assert [(d.exit_code, d.held > 0) for d in result.drains] == [(0, True)], report
    for name in ("generator", "annotator-1", "annotator-2", "trainer", "ner-api"):
        assert result.kills[name] >= 1, report
        assert result.restarts[name] >= result.kills[name], report
    assert result.model_version is not None, report
    assert result.answered_by == result.model_version, report
    # The private node is gone: no longer registered with epmd.
    assert result.broker_node
    assert f"name {result.broker_node.split('@')[0]} " not in epmd_names()


async def test_a_planted_fault_that_drops_notes_after_acking_fails_the_run(tmp_path: Path) -> None:
    """The self-test, small: one annotator acks notes and drops the first of every 20 it handles; no kills, no broker
    outage, no model. The run must fail, on the notes it lost."""
    options = ChaosOptions(
        workdir=tmp_path,
        notes=20,
        seed=5,
        part_size=5,
        llm_latency_s=0.05,
        annotators=1,
        annotate_latency_s=0.0,
        kill_interval_s=None,
        broker_restarts=0,
        broker_crashes=0,
        sigterm_drain=False,
        train=False,
        settle_s=3,
        plant_fault="drop",
        deadline_s=300,
        stall_s=60,
    )
    result = await run_chaos(options)
    report = "\n".join([*describe(result), result.line()])

    assert result.failure is None, report
    assert result.analysis.planted["planted drop"] >= 1, report
    assert result.lost == result.analysis.planted["planted drop"], report
    assert result.stored == result.sent - result.lost, report
    assert not result.ok, report
    assert any("notes lost" in problem for problem in result.problems()), report
