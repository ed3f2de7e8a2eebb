"""``synthner dataset list|show|export``: inspect the trainer's dataset store."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthner_trainer.store import DatasetStore


def _default_store() -> Path:
    return Path(os.environ.get("SYNTHNER_TRAINER_DATA_DIR", "var/trainer")) / "store.sqlite3"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="list, show and export dataset versions of the trainer's store",
        description=(
            "Inspect the trainer's dataset store (default: $SYNTHNER_TRAINER_DATA_DIR/store.sqlite3).\n\n"
            "examples:\n  synthner dataset list\n  synthner dataset snapshot\n"
            "  synthner dataset export ds-0001-0123456789ab out.jsonl"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", type=Path, default=None, help="the store's SQLite file")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="stored documents and dataset versions")
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="a dataset version's manifest as JSON")
    show.add_argument("version")
    show.add_argument("--ids", action="store_true", help="also list the document ids")
    show.set_defaults(handler=run_show)
    snapshot = actions.add_parser("snapshot", help="freeze every stored document into a new dataset version")
    snapshot.set_defaults(handler=run_snapshot)
    export = actions.add_parser("export", help="write a dataset version as document JSONL")
    export.add_argument("version")
    export.add_argument("out", type=Path)
    export.set_defaults(handler=run_export)


def _open(args: argparse.Namespace) -> DatasetStore:
    from synthner_trainer.store import DatasetStore

    path = args.store or _default_store()
    if not path.is_file():
        raise SystemExit(f"synthner: no dataset store at {path} (use --store or SYNTHNER_TRAINER_DATA_DIR)")
    return DatasetStore(path)


def run_list(args: argparse.Namespace) -> int:
    store = _open(args)
    print(f"{store.count()} documents stored")
    for manifest in store.versions():
        labels = ", ".join(f"{k} {v}" for k, v in manifest.label_counts.items()) or "no entities"
        print(f"{manifest.version}: {manifest.document_count} documents ({labels})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    store = _open(args)
    print(store.manifest(args.version).model_dump_json(indent=2))
    if args.ids:
        for note_id in store.document_ids(args.version):
            print(note_id)
    return 0


def run_snapshot(args: argparse.Namespace) -> int:
    manifest = _open(args).create_version()
    print(f"{manifest.version}: {manifest.document_count} documents")
    return 0


def run_export(args: argparse.Namespace) -> int:
    count = _open(args).export(args.version, args.out)
    print(f"{count} documents written to {args.out}")
    return 0
