"""``synthner annotate run|score``: annotate a document file offline with any annotator, or score annotators on gold.

The annotator comes from ``--config FILE`` (JSON with the annotator service's settings: ``labels``, ``annotator``)
or from the quick options (``--lexicon-from``/``--terms`` for a lexicon, ``--encoder-model`` for a token-classification
model folder, ``--base-url``/``--model`` for an LLM).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthner_annotator.backends.base import Annotator
    from synthner_annotator.offline import Outcome
    from synthner_annotator.settings import AnnotatorSettings
    from synthner_shared.contracts import EvaluationResult, Scores
    from synthner_shared.documents import Document

EPILOG = """examples:
  synthner annotate run notes.jsonl out.jsonl --labels Disease --base-url http://127.0.0.1:8080/v1 --model local \\
      --internal
  synthner annotate score --gold ../shared/data/ncbi_disease/dev.jsonl \\
      --lexicon-from ../shared/data/ncbi_disease/train.jsonl
  synthner annotate score --gold dev.jsonl --config ensemble.json --predictions other-annotator.jsonl
  synthner annotate score --gold ../shared/data/ncbi_disease/dev.jsonl --encoder-model models/versions/v1
"""


def _annotator_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("annotator (a --config file, or the quick options below)")
    group.add_argument("--config", type=Path, help="JSON file with 'labels' and 'annotator' (the service's settings)")
    group.add_argument("--labels", help="comma-separated label set (default: the labels of the gold/input file)")
    group.add_argument(
        "--lexicon-from",
        type=Path,
        action="append",
        default=[],
        metavar="JSONL",
        help="lexicon backend: entity texts of an annotated document file become terms",
    )
    group.add_argument(
        "--terms",
        action="append",
        default=[],
        metavar="LABEL=FILE",
        help="lexicon backend: a term file (one term a line) for a label",
    )
    group.add_argument("--case-sensitive", action="store_true", help="lexicon backend: match case")
    group.add_argument(
        "--encoder-model", type=Path, metavar="DIR", help="encoder backend: a token-classification model folder"
    )
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="encoder backend: device")
    group.add_argument("--base-url", help="LLM backend: OpenAI-compatible API root, e.g. http://127.0.0.1:8080/v1")
    group.add_argument("--model", help="LLM backend: model name")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY", help="LLM backend: variable holding the API key")
    group.add_argument("--prompt", choices=["json_mentions", "inline_markup"], default="json_mentions")
    group.add_argument(
        "--structured-output",
        choices=["json_schema", "json_object", "json_object_schema", "none"],
        default="json_schema",
    )
    group.add_argument(
        "--internal",
        action="store_true",
        help="LLM backend: the endpoint is inside the hospital (default: treated as external)",
    )
    parser.add_argument("--language", default="en", help="language of the documents (BCP-47), default en")
    parser.add_argument(
        "--provenance",
        choices=["real", "synthetic"],
        default="real",
        help="declare the documents synthetic (default: real, kept from external endpoints); a synthetic document "
        "still goes to an external endpoint only when the leak gate, run on it here, passes it (--leak-reference)",
    )
    parser.add_argument(
        "--leak-reference",
        type=Path,
        metavar="NPZ",
        help="hashed n-gram reference of real notes (synthner leakcheck build-reference) for the leak gate; without "
        "it synthetic documents are 'unchecked' and refused by external endpoints",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="documents in flight (default 8)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "annotate",
        help="annotate document files offline, score annotators on gold",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    run = actions.add_parser(
        "run",
        help="annotate a JSONL document file",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", type=Path, help="JSONL documents (existing entities are replaced)")
    run.add_argument("output", type=Path, help="JSONL file to write")
    _annotator_options(run)
    run.set_defaults(handler=run_annotate)
    score = actions.add_parser(
        "score",
        help="strict/partial P/R/F1 per label and agreement between annotators",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("--gold", type=Path, required=True, help="gold JSONL documents")
    score.add_argument(
        "--predictions",
        type=Path,
        action="append",
        default=[],
        metavar="JSONL",
        help="also score an existing prediction file (repeatable)",
    )
    score.add_argument("--no-annotator", action="store_true", help="only score the --predictions files")
    _annotator_options(score)
    score.set_defaults(handler=run_score)


def _settings(args: argparse.Namespace, default_labels: list[str]) -> AnnotatorSettings:
    from pydantic import SecretStr

    from synthner_annotator.backends.encoder import EncoderSettings
    from synthner_annotator.backends.lexicon import LexiconSettings
    from synthner_annotator.backends.llm import LLMAnnotatorSettings
    from synthner_annotator.endpoint import EndpointSettings
    from synthner_annotator.prompts import PromptSettings
    from synthner_annotator.settings import AnnotatorSettings

    # The settings as JSON (a --config file), the quick options' values added; the settings class validates it.
    config: dict[str, object] = json.loads(args.config.read_text(encoding="utf-8")) if args.config else {}
    if args.labels:
        config["labels"] = [label.strip() for label in args.labels.split(",") if label.strip()]
    config.setdefault("labels", default_labels)
    if args.leak_reference:
        config["leak_reference"] = str(args.leak_reference)
    if "internal_hosts" not in config and os.environ.get("SYNTHNER_INTERNAL_HOSTS"):
        config["internal_hosts"] = os.environ["SYNTHNER_INTERNAL_HOSTS"]
    if "annotator" not in config:
        if args.base_url:
            if not args.model:
                raise SystemExit("synthner annotate: --base-url needs --model")
            endpoint = EndpointSettings(
                base_url=args.base_url,
                model=args.model,
                api_key=SecretStr(os.environ.get(args.api_key_env, "not-needed")),
                external=not args.internal,
                structured_output=args.structured_output,
                max_concurrency=args.concurrency,
            )
            config["annotator"] = LLMAnnotatorSettings(endpoint=endpoint, prompt=PromptSettings(name=args.prompt))
        elif args.encoder_model:
            config["annotator"] = EncoderSettings(model_dir=args.encoder_model, device=args.device)
        elif args.lexicon_from or args.terms:
            term_files: dict[str, list[Path]] = {}
            for item in args.terms:
                label, _, path = item.partition("=")
                if not path:
                    raise SystemExit(f"synthner annotate: --terms wants LABEL=FILE, got {item!r}")
                term_files.setdefault(label, []).append(Path(path))
            config["annotator"] = LexiconSettings(
                document_files=args.lexicon_from, term_files=term_files, case_sensitive=args.case_sensitive
            )
        else:
            raise SystemExit(
                "synthner annotate: give --config, --encoder-model, --lexicon-from/--terms, or --base-url and --model"
            )
    return AnnotatorSettings.model_validate(config)


def _labels_of(documents: list[Document]) -> list[str]:
    return sorted({entity.label for document in documents for entity in document.entities})


async def _annotate(
    args: argparse.Namespace, documents: list[Document], labels: list[str]
) -> tuple[Annotator, list[Outcome]]:
    from synthner.progress import bar
    from synthner_annotator.app import egress_policy
    from synthner_annotator.errors import ConfigurationError
    from synthner_annotator.factory import build_annotator
    from synthner_annotator.offline import annotate_documents
    from synthner_shared.ngrams import ReferenceError as LeakReferenceError

    settings = _settings(args, labels)
    try:
        egress = egress_policy(settings)
        annotator = build_annotator(settings.annotator, settings.labels, egress)
    except (ConfigurationError, LeakReferenceError) as exc:
        raise SystemExit(f"synthner annotate: {exc}") from exc
    try:
        with bar(len(documents), "annotating", enabled=args.show_progress) as progress:
            failed = 0

            def done(outcome: Outcome) -> None:
                nonlocal failed
                if outcome.failure is not None:
                    failed += 1
                    progress.note(failed=failed)
                progress.advance()

            outcomes = await annotate_documents(
                annotator,
                documents,
                language=args.language,
                provenance=args.provenance,
                concurrency=args.concurrency,
                gate=egress.gate,
                on_done=done,
            )
    finally:
        await annotator.aclose()
    usage = annotator.usage()
    if usage:
        print(f"usage: {json.dumps(usage)}", file=sys.stderr)
    return annotator, outcomes


def _report_failures(outcomes: list[Outcome]) -> int:
    failed = [o for o in outcomes if o.failure is not None]
    for outcome in failed[:20]:
        print(f"synthner annotate: document {outcome.document.id}: {outcome.failure}", file=sys.stderr)
    if len(failed) > 20:
        print(f"synthner annotate: ... and {len(failed) - 20} more failed documents", file=sys.stderr)
    return len(failed)


def run_annotate(args: argparse.Namespace) -> int:
    from synthner_annotator.offline import with_spans
    from synthner_shared.documents import read_documents, write_documents

    documents = list(read_documents(args.input))
    if not args.labels and not args.config:
        raise SystemExit("synthner annotate run: give --labels (or a --config with labels)")
    _, outcomes = asyncio.run(_annotate(args, documents, []))
    written = write_documents(
        args.output, (with_spans(o.document, o.annotation.spans) for o in outcomes if o.annotation is not None)
    )
    spans = sum(len(o.annotation.spans) for o in outcomes if o.annotation is not None)
    failed = _report_failures(outcomes)
    print(f"{args.output}: {written} documents, {spans} spans; {failed} documents failed (not written)")
    return 1 if failed else 0


def _print_result(name: str, result: EvaluationResult) -> None:
    def row(label: str, strict: Scores, partial: Scores | None) -> str:
        cells = f"{strict.precision:6.3f} {strict.recall:6.3f} {strict.f1:6.3f}"
        cells += f"   {partial.precision:6.3f} {partial.recall:6.3f} {partial.f1:6.3f}" if partial else " " * 24
        return f"  {label:<32} {cells} {strict.support:7d}"

    print(f"{name}: {result.documents} documents")
    print(f"  {'label':<32} {'strict P':>6} {'R':>6} {'F1':>6}   {'part. P':>6} {'R':>6} {'F1':>6} {'support':>7}")
    for label in sorted(set(result.strict_per_label) | set(result.partial_per_label)):
        strict = result.strict_per_label.get(label)
        partial = result.partial_per_label.get(label)
        if strict is not None:
            print(row(label, strict, partial))
    print(row("micro", result.strict_micro, result.partial_micro))
    print(row("macro (strict)", result.strict_macro, None))


def pairwise_agreement(systems: dict[str, list[Document]]) -> list[tuple[str, str, float]]:
    """Strict micro F1 of each pair of annotators against each other (symmetric)."""
    from synthner_shared.evaluation import evaluate_spans

    rows = []
    for (first, a), (second, b) in itertools.combinations(systems.items(), 2):
        rows.append((first, second, evaluate_spans(a, b, f"{first} vs {second}").strict_micro.f1))
    return rows


def run_score(args: argparse.Namespace) -> int:
    from synthner_annotator.offline import predictions
    from synthner_shared.documents import read_documents
    from synthner_shared.evaluation import evaluate_spans

    gold = list(read_documents(args.gold))
    systems: dict[str, list[Document]] = {}
    failed = 0
    if not args.no_annotator:
        annotator, outcomes = asyncio.run(_annotate(args, gold, _labels_of(gold)))
        failed = _report_failures(outcomes)
        systems[annotator.name] = predictions(outcomes)
        for member in outcomes[0].annotation.members if outcomes and outcomes[0].annotation else {}:
            systems[member] = predictions(outcomes, member)
    for path in args.predictions:
        systems[path.stem] = list(read_documents(path))
    if not systems:
        raise SystemExit("synthner annotate score: nothing to score (drop --no-annotator or add --predictions)")
    for name, predicted in systems.items():
        _print_result(name, evaluate_spans(gold, predicted, name))
    if failed:
        print(f"{failed} documents failed to annotate and were scored as having no entities")
    if len(systems) > 1:
        print("agreement between annotators (strict micro F1):")
        for first, second, f1 in pairwise_agreement(systems):
            print(f"  {first} ~ {second}: {f1:.3f}")
    return 0
