"""``synthner ops``: against the real RabbitMQ (a namespace of its own per test) and real model-store folders, through
the command's entry point. Dead letters come from a real consumer runner; their bodies carry a canary that must never
be printed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import aio_pika
import pytest

from synthner.main import main
from synthner_shared.contracts import (
    Envelope,
    GenerationRecord,
    LeakCheckResult,
    NoteGenerated,
    NoteQuarantined,
    PromptRef,
    TrainingRequested,
    content_id,
)
from synthner_shared.held_queues import HeldQueuePolicy
from synthner_shared.messaging import (
    ANNOTATOR,
    QUARANTINE,
    QUEUE_HEADER,
    REASON_HEADER,
    TRAINER,
    BrokerSettings,
    Consumer,
    PoisonMessageError,
    Service,
)
from synthner_shared.model_store import ModelStoreLayout, VersionStatus
from synthner_shared.testing import BrokerProbe, annotate_without_entities, publish_once, running_service, sample_note

CANARY = "ZQ-ops-canary-7731"


async def ops(*arguments: str) -> int:
    return await asyncio.to_thread(main, ["ops", *arguments])


def poison_consumer(handled: list[NoteGenerated], done: asyncio.Event) -> Consumer[NoteGenerated]:
    """An annotator that refuses notes containing the canary (poison, with a reason naming no text) and annotates the
    rest; ``done`` is set once a clean note is handled."""

    async def handle(note: NoteGenerated) -> Sequence[Envelope]:
        if CANARY in note.text:
            raise PoisonMessageError("note refused by the test annotator (rule 7)")
        handled.append(note)
        done.set()
        return [annotate_without_entities(note)]

    return Consumer(ANNOTATOR, (NoteGenerated,), handle)


def canary_note(seed: int) -> NoteGenerated:
    clean = sample_note(seed)
    text = f"{clean.text} {CANARY}"
    return clean.model_copy(update={"text": text, "note_id": content_id(text)})


async def dead_letter_through_a_real_consumer(settings: BrokerSettings, *poison: NoteGenerated) -> None:
    """Run the annotator role with prefetch 1 (so each delivery is settled before the next comes) on the poison notes
    and then a clean one: once the clean one is handled, the poison ones are in the DLQ."""
    handled: list[NoteGenerated] = []
    done = asyncio.Event()
    one_at_a_time = settings.model_copy(update={"prefetch": 1})
    async with running_service(Service(one_at_a_time, "tests", [poison_consumer(handled, done)])):
        await publish_once(settings, *poison, sample_note(99))
        await asyncio.wait_for(done.wait(), timeout=30)


@pytest.mark.rabbitmq
async def test_peek_replay_and_purge_a_dead_letter_from_a_real_consumer(
    broker_env: BrokerSettings, broker_probe: BrokerProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = broker_probe.topology
    dlq, work = topology.dead_letter_queue_name(ANNOTATOR), topology.queue_name(ANNOTATOR)
    poison = canary_note(1)
    await dead_letter_through_a_real_consumer(broker_env, poison)

    assert await ops("dlq", "count") == 0
    assert f"{dlq}  1" in capsys.readouterr().out.splitlines()

    assert await ops("dlq", "peek", "annotator") == 0
    out = capsys.readouterr().out
    assert str(poison.message_id) in out
    assert "NoteGenerated" in out
    assert f"job {poison.correlation_id}" in out
    assert f"from {work}" in out
    assert "note refused by the test annotator (rule 7)" in out
    assert CANARY not in out
    assert poison.text[:30] not in out
    # peeking leaves the message where it was
    assert await ops("dlq", "count") == 0
    assert f"{dlq}  1" in capsys.readouterr().out.splitlines()

    assert await ops("dlq", "replay", "annotator") == 0
    assert f"{dlq}: replayed 1 of 1 message(s): 1 to {work}" in capsys.readouterr().out
    assert await broker_probe.drain(dlq) == []

    # the consumer gets it again and, as it is still poison, dead-letters it again: peek says it was replayed before
    await dead_letter_through_a_real_consumer(broker_env)
    assert await ops("dlq", "peek", "annotator") == 0
    assert "(replayed 1x before)" in capsys.readouterr().out
    assert await ops("dlq", "replay", "annotator") == 0
    replayed = await broker_probe.get(work)
    assert replayed.message_id == str(poison.message_id)
    assert NoteGenerated.model_validate_json(replayed.body) == poison  # the body travelled unchanged
    headers = replayed.headers or {}
    assert REASON_HEADER not in headers
    assert QUEUE_HEADER not in headers
    assert headers["x-synthner-replayed"] == 2

    await publish_once(broker_env, poison)
    await dead_letter_through_a_real_consumer(broker_env)
    assert await ops("dlq", "purge", "annotator") == 2
    assert "holds 1 message(s); add --yes" in capsys.readouterr().err
    assert await ops("dlq", "purge", "annotator", "--yes") == 0
    assert f"{dlq}: deleted 1 message(s)" in capsys.readouterr().out
    assert await broker_probe.drain(dlq) == []


@pytest.mark.rabbitmq
async def test_replay_and_purge_pick_messages_by_id_and_reason(
    broker_env: BrokerSettings, broker_probe: BrokerProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = broker_probe.topology
    dlq, work = topology.dead_letter_queue_name(ANNOTATOR), topology.queue_name(ANNOTATOR)
    first, second, third = canary_note(1), canary_note(2), canary_note(3)
    await dead_letter_through_a_real_consumer(broker_env, first, second, third)

    assert await ops("dlq", "replay", "annotator", "--id", str(second.message_id)) == 0
    assert f"replayed 1 of 3 message(s): 1 to {work}" in capsys.readouterr().out
    assert (await broker_probe.get(work)).message_id == str(second.message_id)

    assert await ops("dlq", "purge", "annotator", "--reason", "no such reason", "--yes") == 0
    assert "deleted 0 message(s)" in capsys.readouterr().out
    assert await ops("dlq", "purge", "annotator", "--id", str(first.message_id), "--yes") == 0
    assert "deleted 1 message(s)" in capsys.readouterr().out
    left = await broker_probe.drain(dlq)
    assert [m.message_id for m in left] == [str(third.message_id)]


@pytest.mark.rabbitmq
async def test_a_message_the_broker_dead_lettered_at_the_delivery_limit_is_explained_and_replayed(
    broker_env: BrokerSettings, broker_probe: BrokerProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    """A consumer that keeps handing a message back (or dying on it): the quorum queue's x-delivery-limit dead-letters
    it, with the broker's x-death record instead of our headers."""
    topology = broker_probe.topology
    dlq, work = topology.dead_letter_queue_name(ANNOTATOR), topology.queue_name(ANNOTATOR)
    note = canary_note(4)
    await publish_once(broker_env, note)

    async def hand_back_forever() -> None:
        channel = await broker_probe.connection.channel()
        try:
            queue = await channel.get_queue(work, ensure=False)
            async with queue.iterator() as deliveries:
                async for delivery in deliveries:
                    await delivery.nack(requeue=True)
        finally:
            await channel.close()

    handing_back = asyncio.create_task(hand_back_forever())
    try:
        dead = await broker_probe.get(dlq)
    finally:
        handing_back.cancel()
        await asyncio.gather(handing_back, return_exceptions=True)
    assert dead.message_id == str(note.message_id)
    assert REASON_HEADER not in (dead.headers or {})
    assert "x-death" in (dead.headers or {})
    # the probe took it out to wait for it: put it back as the broker wrote it, its x-death record included
    channel = await broker_probe.connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(
            dead.body,
            headers=dead.headers,
            message_id=dead.message_id,
            type=dead.type,
            correlation_id=dead.correlation_id,
        ),
        dlq,
    )
    await channel.close()

    assert await ops("dlq", "peek", "annotator") == 0
    out = capsys.readouterr().out
    assert "dead-lettered by the broker" in out
    assert "delivery limit" in out
    assert f"from {work}" in out
    assert CANARY not in out
    assert await ops("dlq", "replay", "annotator") == 0
    assert f"1 to {work}" in capsys.readouterr().out
    back = await broker_probe.get(work)
    assert "x-death" not in (back.headers or {})


@pytest.mark.rabbitmq
async def test_replay_refuses_a_source_outside_the_namespace_and_keeps_the_message(
    broker_env: BrokerSettings, broker_probe: BrokerProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq = broker_probe.topology.dead_letter_queue_name(TRAINER)
    channel = await broker_probe.connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(
            b'{"text": "' + CANARY.encode() + b'"}',
            headers={QUEUE_HEADER: "elsewhere.orders", REASON_HEADER: "PoisonMessageError: test"},
            message_id="m-outside",
        ),
        dlq,
    )
    await channel.close()
    assert await ops("dlq", "replay", "trainer") == 1
    out = capsys.readouterr().out
    assert "replayed 0 of 1" in out
    assert "m-outside stays" in out
    assert "not a work queue" in out
    assert [m.message_id for m in await broker_probe.drain(dlq)] == ["m-outside"]


def test_an_unreachable_broker_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from synthner_shared.local_llm import free_port  # noqa: PLC0415 - only this test needs a free port

    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    monkeypatch.setenv("SYNTHNER_BROKER_CONNECT_TIMEOUT_S", "2")
    assert main(["ops", "dlq", "count"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("synthner: broker not reachable")
    assert err.count("\n") == 1


@pytest.mark.rabbitmq
def test_peek_of_an_unknown_role_names_the_roles(
    broker_env: BrokerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ops", "dlq", "peek", "nosuchrole"]) == 2
    assert "no role 'nosuchrole'; the dead-letter queues are those of: generator, annotator" in capsys.readouterr().err


def quarantined(seed: int) -> NoteQuarantined:
    text = f"Patient {CANARY} seen on ward {seed}."
    return NoteQuarantined(
        correlation_id="job-q",
        producer="tests",
        job_id="job-q",
        note_index=seed,
        note_id=content_id(text),
        text=text,
        language="en",
        note_type="discharge_summary",
        generation=GenerationRecord(backend="test", model="none", prompt=PromptRef(name="n", version="v1"), seed=seed),
        leak_check=LeakCheckResult(status="failed", detectors=["ngram"], reasons=["ngram overlap 3 spans"]),
    )


@pytest.mark.rabbitmq
async def test_quarantine_peek_shows_leak_reasons_not_text_and_purge_takes_the_chosen_ones(
    broker_env: BrokerSettings, broker_probe: BrokerProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = quarantined(1), quarantined(2)
    await publish_once(broker_env, first, second)
    assert await ops("quarantine", "count") == 0
    assert capsys.readouterr().out.strip().endswith("  2")
    assert await ops("quarantine", "peek") == 0
    out = capsys.readouterr().out
    assert str(first.message_id) in out
    assert str(second.message_id) in out
    assert f"note 1 ({first.note_id[:12]}): ngram overlap 3 spans" in out
    assert CANARY not in out
    assert "Patient" not in out
    assert await ops("quarantine", "purge", "--id", str(first.message_id), "--yes") == 0
    assert "deleted 1 message(s)" in capsys.readouterr().out
    left = await broker_probe.drain(broker_probe.topology.queue_name(QUARANTINE))
    assert [m.message_id for m in left] == [str(second.message_id)]


@pytest.mark.rabbitmq
async def test_train_publishes_a_training_request_for_the_dataset_version(
    broker_env: BrokerSettings, broker_probe: BrokerProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await ops("train", "--dataset-version", "ds-0003-0123456789ab", "--epochs", "2", "--job-id", "ops-t1")
    assert code == 0
    out = capsys.readouterr().out
    message = await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
    request = TrainingRequested.model_validate_json(message.body)
    assert f"requested training {request.message_id} (job ops-t1) on ds-0003-0123456789ab" in out
    assert request.dataset.dataset_version == "ds-0003-0123456789ab"
    assert request.hyperparameters.epochs == 2
    assert request.producer == "synthner-ops"


def test_train_refuses_invalid_hyperparameters_before_the_broker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "train", "--epochs", "0"]) == 2
    assert "invalid training request" in capsys.readouterr().err


def write_version(layout: ModelStoreLayout, name: str, verdict: str, f1: float) -> None:
    folder = layout.version_dir(name)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "O", "1": "B-Disease", "2": "I-Disease"}}))
    (folder / "metrics.json").write_text(json.dumps([{"dataset": "gold", "strict_f1": f1}]))
    status = VersionStatus(
        verdict=verdict,  # type: ignore[arg-type]
        metric="strict micro F1 on the gold set",
        candidate=f1,
        current=None,
        current_version=None,
        tolerance=0.01,
        reason=f"{verdict} in a test",
    )
    (folder / "status.json").write_text(status.model_dump_json())


def test_models_list_and_show_read_a_real_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = ModelStoreLayout(tmp_path / "models")
    write_version(layout, "m-1", "published", 0.61)
    write_version(layout, "m-2", "rejected", 0.40)
    write_version(layout, "m-3", "published", 0.66)
    layout.current_file.write_text(json.dumps({"version": "m-3", "history": ["m-1", "m-3"]}))

    assert main(["ops", "models", "list", "--store", str(layout.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  m-1  published")
    assert "0.6100" in lines[0]
    assert lines[1].startswith("  m-2  rejected")
    assert lines[2].startswith("* m-3  published")

    assert main(["ops", "models", "show", "m-2", "--store", str(layout.root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["current"] is False
    assert shown["status"]["verdict"] == "rejected"
    assert shown["labels"] == ["Disease"]
    assert shown["metrics"] == [{"dataset": "gold", "strict_f1": 0.4}]

    assert main(["ops", "models", "show", "m-9", "--store", str(layout.root)]) == 2
    assert "no model version 'm-9'" in capsys.readouterr().err
    assert main(["ops", "models", "list", "--store", str(tmp_path / "none")]) == 2


def test_policy_prints_the_bound_for_the_configured_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNTHNER_BROKER_NAMESPACE", "clinic")
    assert main(["ops", "policy", "--vhost", "v1", "--max-length", "500", "--json"]) == 0
    definition = json.loads(capsys.readouterr().out)
    assert definition["vhost"] == "v1"
    assert definition["name"] == "clinic.held-queues"
    assert definition["definition"] == {"max-length": 500, "max-length-bytes": 1024**3, "overflow": "reject-publish"}
    assert main(["ops", "policy"]) == 0
    assert capsys.readouterr().out.startswith("rabbitmqctl set_policy -p synthner --apply-to queues --priority 10")


def test_the_policy_pattern_takes_the_held_queues_and_nothing_else() -> None:
    import re  # noqa: PLC0415

    pattern = re.compile(HeldQueuePolicy("synthner").pattern)
    held = ["synthner.annotator.dlq", "synthner.ner-api.dlq", "synthner.job-progress.dlq", "synthner.quarantine"]
    work = ["synthner.annotator", "synthner.ner-api.pod-1", "synthner.quarantine.dlq.x", "other.annotator.dlq"]
    assert all(pattern.match(name) for name in held)
    retries = ["synthner.annotator.retry.1000ms", "synthner.annotator.retry.1000"]  # the old name too
    assert not any(pattern.match(name) for name in [*work, *retries, "synthner.model-history"])


def test_ops_needs_no_service_package_so_it_runs_in_the_light_generator_image() -> None:
    """The generator image (no torch, no trainer, no NER API) carries the CLI for operators: the ops commands and the
    parser must import nothing of the other services."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    probe = (
        "import sys; from synthner.main import build_parser; build_parser(); import synthner.operations; "
        "import synthner_shared.model_store; "
        "heavy = {'torch', 'transformers', 'synthner_trainer', 'synthner_ner_api', 'synthner_annotator', "
        "'synthner_generator'}; print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_the_printed_policy_is_the_one_the_broker_definitions_carry(capsys: pytest.CaptureFixture[str]) -> None:
    from synthner_shared.broker_users import definitions, rabbitmqctl_commands  # noqa: PLC0415

    assert main(["ops", "policy"]) == 0
    (carried,) = [c for c in rabbitmqctl_commands(definitions()) if " set_policy " in c]
    assert capsys.readouterr().out.strip() == carried
    assert main(["ops", "policy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == definitions()["policies"][0]
