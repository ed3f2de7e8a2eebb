"""``synthner documents check FILE...``: validate document files (the JSONL format of DESIGN.md)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "documents",
        help="inspect document JSONL files",
        description=(
            "Inspect document JSONL files.\n\n"
            "example:\n  synthner documents check ../shared/data/ncbi_disease/dev.jsonl"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate files and print document, span and label counts")
    check.add_argument("files", nargs="+", type=Path, help="JSONL document files")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from synthner_shared.documents import read_documents

    for path in args.files:
        labels: Counter[str] = Counter()
        count = 0
        for document in read_documents(path):
            count += 1
            labels.update(e.label for e in document.entities)
        summary = ", ".join(f"{label} {n}" for label, n in sorted(labels.items())) or "no entities"
        print(f"{path}: {count} documents, {sum(labels.values())} spans ({summary})")
    return 0
