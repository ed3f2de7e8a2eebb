"""``synthner review serve|queue|gold|stats``: human review inside the trainer's dataset store.

``queue`` marks notes of a dataset version for review, ``serve`` runs the clinician's review page on 127.0.0.1,
``gold`` writes the reviewed documents as a gold JSONL (for ``synthner annotate score --gold`` or any gold option),
``stats`` prints agreement figures (and writes them as HTML). The logic lives in :mod:`synthner_trainer.review`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _default_data_dir() -> Path:
    return Path(os.environ.get("SYNTHNER_TRAINER_DATA_DIR", "var/trainer"))


def add_actions(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The store-backed review actions, beside ``export``/``import`` (Label Studio)."""

    def data_dir(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=_default_data_dir(),
            help="the trainer's data folder holding store.sqlite3 (default: $SYNTHNER_TRAINER_DATA_DIR or var/trainer)",
        )

    queue = actions.add_parser("queue", help="mark notes of a dataset version for review")
    data_dir(queue)
    queue.add_argument("--version", help="dataset version (default: the newest)")
    queue.add_argument("--share", type=float, default=0.0, help="this share of the notes, chosen at random (0..1)")
    queue.add_argument("--disagreement", action="store_true", help="every note where annotators' spans differ")
    queue.add_argument("--min-confidence", type=float, help="every note with a span scored below this (0..1)")
    queue.add_argument("--seed", type=int, default=13, help="seed of the random share")
    queue.set_defaults(handler=run_queue)
    serve = actions.add_parser("serve", help="the review page and its API on 127.0.0.1")
    data_dir(serve)
    serve.add_argument("--api-keys-file", type=Path, required=True, help="hashed keys, as the NER API reads them")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--labels", help="comma-separated labels a reviewer may give (default: the dataset's)")
    serve.set_defaults(handler=run_serve)
    gold = actions.add_parser("gold", help="write the reviewed documents as gold JSONL")
    data_dir(gold)
    gold.add_argument("output", type=Path, help="JSONL to write (must not exist)")
    gold.set_defaults(handler=run_gold)
    stats = actions.add_parser("stats", help="agreement: annotators against reviewed spans, kappa between them")
    data_dir(stats)
    stats.add_argument("--html", type=Path, help="also write the figures as a self-contained HTML report")
    stats.set_defaults(handler=run_stats)


def _store_path(args: argparse.Namespace) -> Path:
    path: Path = args.data_dir / "store.sqlite3"
    if not path.is_file():
        raise ValueError(f"{args.data_dir}: no dataset store (store.sqlite3) there")
    return path


def run_queue(args: argparse.Namespace) -> int:
    from synthner_trainer.review.queue import QueuePolicy
    from synthner_trainer.review.store import ReviewStore
    from synthner_trainer.store import UnknownDatasetVersionError

    try:
        if not (args.share or args.disagreement or args.min_confidence is not None):
            raise ValueError("choose what to review: --share, --disagreement and/or --min-confidence")
        policy = QueuePolicy(args.share, args.disagreement, args.min_confidence, args.seed)
        with ReviewStore.open(_store_path(args)) as store:
            versions = store.dataset.versions()
            version = args.version or (versions[-1].version if versions else None)
            if version is None:
                raise ValueError("the store holds no dataset version yet (synthner dataset snapshot)")
            items = store.enqueue(version, policy)
    except UnknownDatasetVersionError as exc:
        print(f"synthner review: {exc.args[0]}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"synthner review: {exc}", file=sys.stderr)
        return 2
    reasons: dict[str, int] = {}
    for item in items:
        reasons[item.reason] = reasons.get(item.reason, 0) + 1
    counts = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) or "none"
    reviewed = sum(item.reviews > 0 for item in items)
    print(f"{version}: {len(items)} notes queued for review ({counts}); {reviewed} reviewed")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from synthner_shared.auth import KeyFileError
    from synthner_trainer.review.app import ReviewSettings, create_app

    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    try:
        _store_path(args)
        settings = ReviewSettings(data_dir=args.data_dir, api_keys_file=args.api_keys_file, labels=labels)
        app = create_app(settings)
    except (ValueError, OSError, KeyFileError) as exc:
        print(f"synthner review: {exc}", file=sys.stderr)
        return 2
    print(f"review page: http://{args.host}:{args.port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def run_gold(args: argparse.Namespace) -> int:
    from synthner.commands.convert import check_paths
    from synthner_shared.documents import write_documents
    from synthner_trainer.review.store import ReviewStore

    try:
        check_paths(_store_path(args), args.output)
        with ReviewStore.open(_store_path(args)) as store:
            gold = store.gold()
        if not gold:
            raise ValueError(f"{args.data_dir}: no reviewed documents yet (synthner review serve)")
        write_documents(args.output, gold)
    except (ValueError, OSError) as exc:
        print(f"synthner review: {exc}", file=sys.stderr)
        return 2
    spans = sum(len(d.entities) for d in gold)
    print(f"{len(gold)} reviewed documents ({spans} spans) -> {args.output}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from synthner_shared.files import write_text_atomic
    from synthner_trainer.review.agreement import agreement, agreement_lines
    from synthner_trainer.review.report import agreement_html
    from synthner_trainer.review.store import ReviewStore

    try:
        with ReviewStore.open(_store_path(args)) as store:
            result = agreement(store.gold(), store.annotated_documents(), store.reviewer_documents())
        if args.html is not None:
            write_text_atomic(args.html, agreement_html(result))
    except (ValueError, OSError) as exc:
        print(f"synthner review: {exc}", file=sys.stderr)
        return 2
    print("\n".join(agreement_lines(result)))
    if args.html is not None:
        print(f"report: {args.html}")
    return 0
