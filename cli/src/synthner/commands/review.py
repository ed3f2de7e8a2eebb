"""``synthner review export|import``: the human-review round trip through Label Studio; ``queue|serve|gold|stats``
(review inside the trainer's dataset store, on synthner's own review page) are in :mod:`synthner.commands.review_store`.

``export`` writes machine-labelled documents as Label Studio tasks whose entities are ``predictions``
(pre-annotations, so no task counts as done); ``import`` reads Label Studio's JSON export back and keeps only the
tasks a reviewer completed, as reviewed documents (``provenance: "human"``, reviewer, review time, and the machine's
entities beside the corrected ones). The conversion itself lives in :mod:`synthner_shared.formats`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synthner.commands.convert import check_paths
from synthner.commands.review_store import add_actions

SHOWN_SKIPPED = 10


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "review",
        help="human review: queue notes, serve the review page, gold and agreement; or Label Studio export/import",
        description=(
            "Human review of machine annotations, in the trainer's dataset store or in Label Studio.\n\n"
            "queue: mark notes of a dataset version for review (a random share, annotator disagreement, low scores).\n"
            "serve: the review page and its API on 127.0.0.1 (API keys as the NER API; the key's name is the\n"
            "reviewer). gold: the reviewed documents as gold JSONL. stats: annotators against the reviewed spans\n"
            "(P/R/F1 per label) and token-level Cohen's kappa between annotators and between reviewers.\n"
            "export: documents (JSONL) -> Label Studio tasks (.json); entities go into `predictions` with the\n"
            "model version and scores, never into `annotations`, so the tasks wait for review.\n"
            "import: Label Studio's JSON export -> reviewed documents (JSONL): each task's latest annotation that\n"
            "was not cancelled, with provenance, reviewer and review time; the machine's entities are kept as\n"
            "`machine_entities`. Tasks without a completed annotation are skipped and counted.\n"
            "Offsets are Unicode code points on both sides. OUT must not exist; it appears only once complete.\n\n"
            "examples:\n"
            "  synthner review queue --data-dir var/trainer --share 0.05 --disagreement --min-confidence 0.5\n"
            "  synthner review serve --data-dir var/trainer --api-keys-file keys\n"
            "  synthner review gold --data-dir var/trainer reviewed.jsonl\n"
            "  synthner review stats --data-dir var/trainer --html agreement.html\n"
            "  synthner review export annotated.jsonl tasks.json --model-version lexicon-v2\n"
            "  synthner review import label-studio-export.json reviewed.jsonl"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="documents -> Label Studio tasks with the entities as predictions")
    export.add_argument("input", type=Path, help="machine-labelled documents (JSONL)")
    export.add_argument("output", type=Path, help="Label Studio tasks to write (JSON)")
    export.add_argument(
        "--model-version",
        help="model version of documents that name none (their `model_version` or `annotator` key wins)",
    )
    export.set_defaults(handler=run_export)
    back = actions.add_parser("import", help="completed Label Studio tasks -> reviewed documents")
    back.add_argument("input", type=Path, help="Label Studio JSON export (a list of tasks)")
    back.add_argument("output", type=Path, help="reviewed documents to write (JSONL)")
    back.set_defaults(handler=run_import)
    add_actions(actions)


def run_export(args: argparse.Namespace) -> int:
    from synthner_shared.documents import read_documents
    from synthner_shared.files import write_text_atomic
    from synthner_shared.formats import dump_label_studio

    try:
        check_paths(args.input, args.output)
        documents = list(read_documents(args.input))
        write_text_atomic(args.output, dump_label_studio(documents, model_version=args.model_version) + "\n")
    except (ValueError, OSError) as exc:
        print(f"synthner review: {exc}", file=sys.stderr)
        return 2
    spans = sum(len(d.entities) for d in documents)
    print(f"{len(documents)} tasks ({spans} predicted spans): {args.input} -> {args.output}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from synthner_shared.documents import write_documents
    from synthner_shared.formats import reviewed_from_label_studio

    try:
        check_paths(args.input, args.output)
        try:
            tasks = json.loads(args.input.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{args.input}: not JSON ({exc.msg} at line {exc.lineno})") from None
        reviewed = reviewed_from_label_studio(tasks, str(args.input))
        write_documents(args.output, reviewed.documents)
    except (ValueError, OSError) as exc:
        print(f"synthner review: {exc}", file=sys.stderr)
        return 2
    line = f"{len(reviewed.documents)} reviewed documents: {args.input} -> {args.output}"
    if reviewed.skipped:
        shown = ", ".join(map(str, reviewed.skipped[:SHOWN_SKIPPED]))
        more = ", ..." if len(reviewed.skipped) > SHOWN_SKIPPED else ""
        line += f"; {len(reviewed.skipped)} tasks without a completed annotation skipped (tasks {shown}{more})"
    print(line)
    return 0
