"""``synthner ops ...``: operator control of a running deployment, over the broker (``AMQP_URL``) and its stores.

- ``ops train``: request a training (``TrainingRequested``) of a dataset version;
- ``ops models list|show|rollback``: the model store's versions, and a cluster-wide rollback;
- ``ops dlq count|peek|replay|purge`` and ``ops quarantine count|peek|purge``: messages that wait for an operator;
- ``ops policy``: the RabbitMQ policy that bounds those queues.

Message bodies are never printed: they carry notes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from synthner.operations import QueueOperations, Selection, SweepReport
    from synthner_shared.contracts import Envelope, ModelRollbackRequested, ModelRolledBack
    from synthner_shared.messaging import BrokerSettings

PRODUCER = "synthner-ops"
T = TypeVar("T")
DEFAULT_PEEK = 20

# --- parser ----------------------------------------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ops",
        help="operate a running deployment: trainings, model versions, dead letters, quarantine",
        description=(
            "Operator control of a running deployment over its broker (AMQP_URL, SYNTHNER_BROKER_NAMESPACE) and its\n"
            "model store. Message bodies are never printed (they carry notes): ids, types, jobs and reasons only.\n\n"
            "examples:\n"
            "  synthner ops train --dataset-version ds-0003-0123456789ab --epochs 5\n"
            "  synthner ops models list --store /var/lib/synthner/models\n"
            "  synthner ops dlq count\n"
            "  synthner ops dlq peek annotator\n"
            "  synthner ops dlq replay annotator --id 7c0f...\n"
            "  synthner ops quarantine purge --yes"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    _register_train(groups)
    _register_models(groups)
    _register_dlq(groups)
    _register_quarantine(groups)
    _register_policy(groups)


def _register_train(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = groups.add_parser(
        "train",
        help="request a training (TrainingRequested) from the trainer",
        description="Publish TrainingRequested; the trainer queues it and trains when it is free. Prints the "
        "request's message id. Without --dataset-version the trainer freezes everything stored now into a new version.",
    )
    train.add_argument("--dataset-version", default=None, help="an existing dataset version (synthner dataset list)")
    train.add_argument("--annotators", type=_csv, default=[], help="only documents from these annotators (comma list)")
    train.add_argument("--max-documents", type=int, default=None)
    train.add_argument("--base-model", default=None, help="base-model folder as the trainer sees it (default: its own)")
    train.add_argument("--epochs", type=float, default=None)
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--max-length", type=int, default=None, help="window length in tokens")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument(
        "--max-seconds", type=float, default=None, help="bound on the training's time (the trainer's own holds too)"
    )
    train.add_argument("--job-id", default=None, help="correlation id (default: a new ops-... id)")
    train.set_defaults(handler=run_train)
    trainings = groups.add_parser(
        "trainings",
        help="status of training requests (pending, running, done, failed) in the trainer's store",
        description="Read a request's status from the trainer's dataset store, read-only (in a cluster: kubectl exec "
        "deploy/trainer -- synthner ops trainings ID). 'done' names the version and its verdict; 'failed' the reason.",
    )
    trainings.add_argument("request_ids", nargs="+", metavar="REQUEST_ID", help="as printed by `synthner ops train`")
    trainings.add_argument(
        "--store",
        type=Path,
        default=None,
        help="the store's SQLite file (default $SYNTHNER_TRAINER_DATA_DIR/store.sqlite3)",
    )
    trainings.set_defaults(handler=run_trainings)


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="the model store folder (default SYNTHNER_NER_API_MODEL_STORE, else "
        "$SYNTHNER_TRAINER_DATA_DIR/models, else var/trainer/models)",
    )


def _register_models(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = groups.add_parser("models", help="list, show and roll back model versions")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every version with its gate verdict; * marks the current one")
    _store_argument(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per version")
    listing.set_defaults(handler=run_models_list)
    show = actions.add_parser("show", help="a version's gate verdict, metrics and dataset manifest as JSON")
    _store_argument(show)
    show.add_argument("version")
    show.set_defaults(handler=run_models_show)
    rollback = actions.add_parser(
        "rollback",
        help="make an earlier published version current in the whole cluster (ModelRollbackRequested)",
        description="Ask the trainer, the model store's one writer, to make VERSION current and pin it there; it "
        "announces ModelRolledBack and every NER API replica, restarted ones included, serves VERSION. The pin holds "
        "until an operator releases it: newer versions are kept but not served meanwhile. With a model store at "
        "hand (--store, or the default), VERSION is checked there first.",
    )
    _store_argument(rollback)
    rollback.add_argument("version")
    rollback.add_argument("--by", default=None, help="who asks, recorded in the store (default $USER)")
    rollback.add_argument("--reason", default="", help="why, in a few words (recorded; no note text)")
    rollback.add_argument(
        "--wait", type=float, default=120.0, help="seconds to wait for ModelRolledBack (default 120; 0: do not wait)"
    )
    rollback.set_defaults(handler=run_models_rollback)
    release = actions.add_parser(
        "release",
        help="release a rollback's pin (ModelPinReleaseRequested): the next published version is served again",
        description="Ask the trainer to release the rollback's pin: the pinned version stays current until the "
        "next training that passes the gate, which is then made current and announced. Check with "
        "`synthner ops models list` (no 'pinned' line).",
    )
    release.add_argument("--by", default=None, help="who asks, logged by the trainer (default $USER)")
    release.add_argument("--reason", default="", help="why, in a few words (no note text)")
    release.set_defaults(handler=run_models_release)


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", dest="ids", action="append", default=[], help="only this message id (repeatable)")
    parser.add_argument("--reason", default=None, help="only messages whose dead-letter reason contains this text")


def _register_dlq(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = groups.add_parser(
        "dlq",
        help="dead-letter queues: count, peek, replay, purge",
        description="A role's dead-letter queue is <ns>.<role>.dlq (roles: generator, annotator, trainer, failures, "
        "quarantine, job-progress, ner-api).",
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    count = actions.add_parser("count", help="ready messages in every dead-letter queue and the quarantine")
    count.set_defaults(handler=run_count)
    peek = actions.add_parser("peek", help="ids, types, jobs and reasons of a DLQ's first messages (never their text)")
    peek.add_argument("role")
    peek.add_argument(
        "--limit", type=_positive, default=DEFAULT_PEEK, help=f"messages to show (default {DEFAULT_PEEK})"
    )
    peek.set_defaults(handler=run_dlq_peek)
    replay = actions.add_parser(
        "replay", help="move messages back to the work queue they were dead-lettered from (confirmed, then acked)"
    )
    replay.add_argument("role")
    _selection_arguments(replay)
    replay.set_defaults(handler=run_dlq_replay)
    purge = actions.add_parser("purge", help="delete a DLQ's messages (all, or by --id / --reason); needs --yes")
    purge.add_argument("role")
    _selection_arguments(purge)
    purge.add_argument("--yes", action="store_true", help="really delete them")
    purge.set_defaults(handler=run_dlq_purge)


def _register_quarantine(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quarantine = groups.add_parser(
        "quarantine",
        help="notes the leak gate stopped: count, peek, purge (no replay)",
        description="<ns>.quarantine holds generated notes that failed the leak gate (possibly memorised real text). "
        "They are for a person's review and are never replayed to the annotators; purge them once reviewed.",
    )
    actions = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    count = actions.add_parser("count", help="notes waiting in the quarantine")
    count.set_defaults(handler=run_quarantine_count)
    peek = actions.add_parser("peek", help="ids, jobs and leak-check reasons (never the text)")
    peek.add_argument("--limit", type=_positive, default=DEFAULT_PEEK, help=f"notes to show (default {DEFAULT_PEEK})")
    peek.set_defaults(handler=run_quarantine_peek)
    purge = actions.add_parser("purge", help="delete quarantined notes (all, or by --id); needs --yes")
    purge.add_argument("--id", dest="ids", action="append", default=[], help="only this message id (repeatable)")
    purge.add_argument("--yes", action="store_true", help="really delete them")
    purge.set_defaults(handler=run_quarantine_purge, reason=None)


def _register_policy(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = groups.add_parser(
        "policy",
        help="print the RabbitMQ policy that bounds the dead-letter and quarantine queues",
        description="Print the rabbitmqctl command (and the definitions JSON) of the policy that bounds every "
        "<ns>.*.dlq and <ns>.quarantine queue. A policy applies to queues that already exist, so an existing "
        "deployment adopts it without redeclaring anything. See docs/deploy.md, 'Dead letters and quarantine'.",
    )
    policy.add_argument("--vhost", default="synthner", help="the broker's virtual host (default synthner)")
    policy.add_argument("--max-length", type=_positive, default=None, help="messages per queue")
    policy.add_argument("--max-length-bytes", type=_positive, default=None, help="bytes per queue")
    policy.add_argument("--json", action="store_true", help="the policy as a definitions-file entry")
    policy.add_argument(
        "--apply",
        action="store_true",
        help="set it through the management API (--management-url or SYNTHNER_RABBITMQ_MANAGEMENT_URL)",
    )
    policy.add_argument(
        "--management-url",
        default=None,
        help="http(s)://user:password@host:15672[/vhost]; the user needs the policymaker or administrator tag",
    )
    policy.set_defaults(handler=run_policy)


# --- helpers ---------------------------------------------------------------------------------------------------------


def _broker_settings() -> BrokerSettings:
    from synthner_shared.messaging import BrokerSettings

    return BrokerSettings()


class CommandFailed(Exception):
    """Ends a handler with one line on stderr and an exit code (2: bad input, 1: the deployment failed)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = 2) -> int:
    print(f"synthner: {message}", file=sys.stderr)
    return code


def _reporting(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except CommandFailed as exc:
            return _fail(str(exc), exc.code)

    return run


def _on_broker(operation: Callable[[QueueOperations], Awaitable[T]]) -> T:
    """Run a queue operation on a connection of its own; errors become :class:`CommandFailed`."""
    from aio_pika.exceptions import AMQPError
    from pydantic import ValidationError

    from synthner.operations import OperationError, QueueOperations
    from synthner_shared.contracts import describe_validation_error

    async def connected() -> T:
        async with QueueOperations(_broker_settings()) as ops:
            return await operation(ops)

    try:
        return asyncio.run(connected())
    except ValidationError as exc:
        raise CommandFailed(f"invalid broker settings: {describe_validation_error(exc)}") from None
    except OperationError as exc:
        raise CommandFailed(str(exc)) from None
    except (OSError, TimeoutError, AMQPError) as exc:
        raise CommandFailed(f"broker not reachable or refused: {type(exc).__name__}: {exc}", 1) from None


def _print_refused(report: SweepReport) -> None:
    for line in report.refused:
        print(f"  not replayed: {line}")
    _print_handed_back(report)


def _print_handed_back(report: SweepReport) -> None:
    if report.handed_back:
        print(
            f"  {report.handed_back} message(s) handed back to the head of the queue: it is at its bound and refused "
            "their copies at its end"
        )
    if report.stopped:
        print(f"  {report.stopped}")


# --- train -----------------------------------------------------------------------------------------------------------


async def _publish(settings: BrokerSettings, message: Envelope) -> None:
    from synthner_shared.messaging import Broker

    async with Broker(settings, PRODUCER) as broker:
        await broker.publisher.publish(message)


def run_train(args: argparse.Namespace) -> int:
    import uuid

    from aio_pika.exceptions import AMQPError
    from pydantic import ValidationError

    from synthner_shared.contracts import TrainingRequested, describe_validation_error
    from synthner_shared.messaging import PublishError

    try:
        request = TrainingRequested.model_validate(
            {
                "correlation_id": args.job_id or f"ops-{uuid.uuid4().hex[:12]}",
                "producer": PRODUCER,
                "dataset": {
                    "dataset_version": args.dataset_version,
                    "annotators": args.annotators,
                    "max_documents": args.max_documents,
                },
                "base_model": args.base_model,
                "hyperparameters": {
                    "epochs": args.epochs,
                    "learning_rate": args.learning_rate,
                    "batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "seed": args.seed,
                    "max_seconds": args.max_seconds,
                },
            }
        )
        settings = _broker_settings()
    except ValidationError as exc:
        return _fail(f"invalid training request: {describe_validation_error(exc)}")
    try:
        asyncio.run(_publish(settings, request))
    except (PublishError, OSError, AMQPError) as exc:
        return _fail(f"training not requested: {type(exc).__name__}: {exc}", 1)
    dataset = args.dataset_version or "a new snapshot of everything stored"
    print(f"requested training {request.message_id} (job {request.correlation_id}) on {dataset}")
    return 0


@_reporting
def run_trainings(args: argparse.Namespace) -> int:
    import sqlite3

    from synthner_trainer.store import DatasetStore

    path = args.store or Path(os.environ.get("SYNTHNER_TRAINER_DATA_DIR", "var/trainer")) / "store.sqlite3"
    if not Path(path).is_file():
        raise CommandFailed(f"no dataset store at {path} (use --store or SYNTHNER_TRAINER_DATA_DIR)")
    store = DatasetStore(path, read_only=True)
    try:
        found = {request_id: store.request_status(request_id) for request_id in args.request_ids}
    except sqlite3.Error as exc:
        raise CommandFailed(f"cannot read the dataset store at {path}: {exc}", 1) from None
    finally:
        store.close()
    for request_id, status in found.items():
        if status is None:
            print(f"{request_id}: unknown (not received yet, or dead-lettered: synthner ops dlq peek trainer)")
        else:
            state, detail = status
            print(f"{request_id}: {state}" + (f" ({detail})" if detail else ""))
    return 1 if any(status is None for status in found.values()) else 0


# --- models ----------------------------------------------------------------------------------------------------------


def _model_store(args: argparse.Namespace) -> Path:
    if args.store is not None:
        return Path(args.store)
    if store := os.environ.get("SYNTHNER_NER_API_MODEL_STORE"):
        return Path(store)
    return Path(os.environ.get("SYNTHNER_TRAINER_DATA_DIR", "var/trainer")) / "models"


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_models_list(args: argparse.Namespace) -> int:
    from synthner_shared.model_store import ModelStoreError, ModelStoreLayout, read_current, read_status

    layout = ModelStoreLayout(_model_store(args))
    if not layout.versions_dir.is_dir():
        return _fail(f"no model store at {layout.root} (no versions/ folder; use --store)")
    try:
        current = read_current(layout)
        names = layout.version_names()
        statuses = {name: read_status(layout.version_dir(name)) for name in names}
    except ModelStoreError as exc:
        return _fail(str(exc))
    pinned = getattr(current, "pinned", None)
    for name in names:
        status = statuses[name]
        row = {
            "version": name,
            "current": name == current.version,
            "verdict": status.verdict,
            "metric": status.metric,
            "score": status.candidate,
            "reason": status.reason,
        }
        if args.json:
            print(json.dumps(row))
            continue
        mark = "*" if row["current"] else " "
        score = f"{status.candidate:.4f}" if status.candidate is not None else "-"
        print(f"{mark} {name}  {status.verdict:<9}  {score:>6}  {status.reason}")
    if not args.json:
        if not names:
            print("no model versions yet")
        elif current.version is None:
            print("no current version (nothing published yet)")
        if pinned is not None:
            print(f"current version pinned by a rollback: {_pin_line(pinned)}")
    return 0


def _pin_line(pinned: object) -> str:
    fields = pinned.model_dump(mode="json") if hasattr(pinned, "model_dump") else {"pin": str(pinned)}
    return ", ".join(f"{key} {value}" for key, value in fields.items() if value not in (None, ""))


def run_models_show(args: argparse.Namespace) -> int:
    from synthner_shared.model_store import ModelStoreError, ModelStoreLayout, read_current, read_status

    layout = ModelStoreLayout(_model_store(args))
    folder = layout.version_dir(args.version)
    try:
        status = read_status(folder)
        current = read_current(layout)
    except ModelStoreError as exc:
        return _fail(str(exc))
    config = _read_json(folder / "config.json")
    labels = sorted(
        {label.split("-", 1)[-1] for label in config.get("id2label", {}).values() if label != "O"}
        if isinstance(config, dict)
        else set()
    )
    shown = {
        "version": args.version,
        "current": args.version == current.version,
        "path": str(folder),
        "status": status.model_dump(mode="json"),
        "labels": labels,
        "metrics": _read_json(folder / "metrics.json"),
        "dataset": _read_json(folder / "dataset_manifest.json"),
    }
    print(json.dumps(shown, indent=2))
    return 0


async def _request_rollback(
    settings: BrokerSettings, request: ModelRollbackRequested, wait_s: float
) -> ModelRolledBack | None:
    """Publish the request; with ``wait_s`` > 0, return the trainer's ``ModelRolledBack`` for it (a queue of this
    command's own, bound before the request goes out, so the event cannot be missed)."""
    import uuid

    from synthner_shared.contracts import ModelRolledBack
    from synthner_shared.messaging import Broker

    async with Broker(settings, PRODUCER) as broker:
        channel = await broker.connection.channel()
        queue = None
        if wait_s > 0:
            name = f"{settings.namespace}.ops.{uuid.uuid4().hex[:12]}"
            queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
            await queue.bind(broker.topology.exchange, ModelRolledBack.routing_key)
        await broker.publisher.publish(request)
        if queue is None:
            return None
        async with asyncio.timeout(wait_s), queue.iterator(no_ack=True) as events:
            async for message in events:
                event = ModelRolledBack.model_validate_json(message.body)
                if event.correlation_id == request.correlation_id:
                    return event
    raise AssertionError("unreachable: the iterator ends only by the timeout")


@_reporting
def run_models_rollback(args: argparse.Namespace) -> int:
    import uuid

    from aio_pika.exceptions import AMQPError
    from pydantic import ValidationError

    from synthner_shared.contracts import ModelRollbackRequested, describe_validation_error
    from synthner_shared.messaging import PublishError
    from synthner_shared.model_store import ModelStoreError, ModelStoreLayout, read_verdict

    layout = ModelStoreLayout(_model_store(args))
    if layout.versions_dir.is_dir():  # the store at hand: refuse a version the trainer would refuse, at once
        try:
            verdict = read_verdict(layout.version_dir(args.version))
        except ModelStoreError as exc:
            raise CommandFailed(str(exc)) from None
        if verdict != "published":
            raise CommandFailed(f"model version {args.version} is {verdict}; only a published version can be served")
    by = _requested_by(args, "rolls back (recorded in the model store)")
    try:
        request = ModelRollbackRequested(
            correlation_id=f"rollback-{uuid.uuid4().hex[:12]}",
            producer=PRODUCER,
            model_version=args.version,
            requested_by=by,
            reason=args.reason,
        )
        settings = _broker_settings()
    except ValidationError as exc:
        raise CommandFailed(f"invalid rollback request: {describe_validation_error(exc)}") from None
    try:
        event = asyncio.run(_request_rollback(settings, request, args.wait))
    except TimeoutError:  # before OSError, of which it is a subclass
        raise CommandFailed(
            f"rollback to {args.version} requested ({request.correlation_id}), but no ModelRolledBack within "
            f"{args.wait:g}s: is the trainer running? A refused request is in its DLQ (synthner ops dlq peek trainer)",
            1,
        ) from None
    except (PublishError, OSError, AMQPError) as exc:
        raise CommandFailed(f"rollback not requested: {type(exc).__name__}: {exc}", 1) from None
    if event is None:
        print(f"requested rollback to {args.version} ({request.correlation_id})")
    else:
        print(
            f"rolled back to {event.model_version} (from {event.from_version or 'none'}) by {event.requested_by}; "
            "every NER API replica follows"
        )
    return 0


def _requested_by(args: argparse.Namespace, what: str) -> str:
    by = args.by or os.environ.get("USER")
    if not by:
        raise CommandFailed(f"say who {what}: --by NAME")
    return str(by)


@_reporting
def run_models_release(args: argparse.Namespace) -> int:
    import uuid

    from aio_pika.exceptions import AMQPError
    from pydantic import ValidationError

    from synthner_shared.contracts import ModelPinReleaseRequested, describe_validation_error
    from synthner_shared.messaging import PublishError

    try:
        request = ModelPinReleaseRequested(
            correlation_id=f"release-{uuid.uuid4().hex[:12]}",
            producer=PRODUCER,
            requested_by=_requested_by(args, "releases the pin"),
            reason=args.reason,
        )
        settings = _broker_settings()
    except ValidationError as exc:
        raise CommandFailed(f"invalid release request: {describe_validation_error(exc)}") from None
    try:
        asyncio.run(_publish(settings, request))
    except (PublishError, OSError, AMQPError) as exc:
        raise CommandFailed(f"release not requested: {type(exc).__name__}: {exc}", 1) from None
    print(f"requested the release of the rollback pin ({request.correlation_id}); see synthner ops models list")
    return 0


# --- dead letters and quarantine -------------------------------------------------------------------------------------


@_reporting
def run_count(args: argparse.Namespace) -> int:
    async def count(ops: QueueOperations) -> dict[str, int | None]:
        return await ops.count(ops.held_queues())

    for name, ready in _on_broker(count).items():
        print(f"{name}  {'absent' if ready is None else ready}")
    return 0


def _print_held(name: str, report: SweepReport) -> None:
    if not report.shown:
        print(f"{name}: empty")
    for held in report.shown:
        print(held.line())
    _print_handed_back(report)


@_reporting
def run_dlq_peek(args: argparse.Namespace) -> int:
    async def peek(ops: QueueOperations) -> tuple[str, SweepReport]:
        name = ops.dead_letter_queue(args.role)
        return name, await ops.peek(name, args.limit)

    _print_held(*_on_broker(peek))
    return 0


def _selection(args: argparse.Namespace) -> Selection:
    from synthner.operations import Selection

    return Selection(ids=tuple(args.ids), reason_contains=args.reason)


@_reporting
def run_dlq_replay(args: argparse.Namespace) -> int:
    selection = _selection(args)

    async def replay(ops: QueueOperations) -> tuple[str, SweepReport]:
        name = ops.dead_letter_queue(args.role)
        return name, await ops.replay(name, selection)

    name, report = _on_broker(replay)
    moved = sum(report.moved.values())
    targets = ", ".join(f"{count} to {queue}" for queue, count in sorted(report.moved.items()))
    print(f"{name}: replayed {moved} of {report.seen} message(s)" + (f": {targets}" if targets else ""))
    _print_refused(report)
    return 1 if report.refused or report.stopped else 0


def _purge(args: argparse.Namespace, quarantine: bool) -> int:
    selection = _selection(args)

    async def purge(ops: QueueOperations) -> tuple[str, int | None, SweepReport | None]:
        name = ops.quarantine_queue if quarantine else ops.dead_letter_queue(args.role)
        if not args.yes:
            return name, (await ops.count([name]))[name], None
        return name, None, await ops.purge(name, selection)

    name, ready, report = _on_broker(purge)
    if report is None:
        which = "the selected ones" if not selection.everything else "them all"
        raise CommandFailed(f"{name} holds {ready or 0} message(s); add --yes to delete {which}")
    print(f"{name}: deleted {report.dropped} message(s)")
    _print_handed_back(report)
    return 1 if report.stopped else 0


@_reporting
def run_dlq_purge(args: argparse.Namespace) -> int:
    return _purge(args, quarantine=False)


@_reporting
def run_quarantine_count(args: argparse.Namespace) -> int:
    async def count(ops: QueueOperations) -> tuple[str, int | None]:
        name = ops.quarantine_queue
        return name, (await ops.count([name]))[name]

    name, ready = _on_broker(count)
    print(f"{name}  {'absent' if ready is None else ready}")
    return 0


@_reporting
def run_quarantine_peek(args: argparse.Namespace) -> int:
    from synthner.operations import quarantine_reason

    async def peek(ops: QueueOperations) -> tuple[str, SweepReport]:
        name = ops.quarantine_queue
        return name, await ops.peek(name, args.limit, describe=quarantine_reason)

    _print_held(*_on_broker(peek))
    return 0


@_reporting
def run_quarantine_purge(args: argparse.Namespace) -> int:
    return _purge(args, quarantine=True)


# --- policy ----------------------------------------------------------------------------------------------------------


@_reporting
def run_policy(args: argparse.Namespace) -> int:
    from synthner.operations import ManagementEndpoint, OperationError, apply_policy
    from synthner_shared.held_queues import HeldQueuePolicy

    settings = _broker_settings()
    defaults = HeldQueuePolicy(settings.namespace)
    policy = HeldQueuePolicy(
        settings.namespace,
        max_length=args.max_length or defaults.max_length,
        max_length_bytes=args.max_length_bytes or defaults.max_length_bytes,
    )
    if not args.apply:
        print(json.dumps(policy.definition(args.vhost), indent=2) if args.json else policy.rabbitmqctl(args.vhost))
        return 0
    url = args.management_url or os.environ.get("SYNTHNER_RABBITMQ_MANAGEMENT_URL")
    if not url:
        raise CommandFailed("--apply needs --management-url or SYNTHNER_RABBITMQ_MANAGEMENT_URL")
    try:
        endpoint = ManagementEndpoint.parse(url)
        vhost = endpoint.vhost or args.vhost
        apply_policy(policy, endpoint, vhost)
    except OperationError as exc:
        raise CommandFailed(str(exc), 1) from None
    print(f"policy {policy.name} set in vhost {vhost}: {policy.pattern} -> {json.dumps(policy.definition_body)}")
    return 0
