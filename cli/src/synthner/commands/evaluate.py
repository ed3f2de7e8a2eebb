"""``synthner evaluate --model DIR --gold FILE [--json] [--report report.html]``: score a model on gold documents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHUNK = 32
"""Documents predicted per progress step."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a token-classification model folder on gold documents (strict and partial F1)",
        description=(
            "Predict entity spans for every gold document (whole documents, overlapping windows) and score them:\n"
            "seqeval strict IOB2 over character spans, per label, micro and macro, plus partial overlap.\n\n"
            "example:\n  synthner evaluate --model models/ncbi --gold test.jsonl --report report.html"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, required=True, help="Hugging Face token-classification folder")
    parser.add_argument("--gold", type=Path, required=True, help="gold documents (JSONL)")
    parser.add_argument("--json", action="store_true", help="print the EvaluationResult as JSON")
    parser.add_argument("--report", type=Path, help="write an HTML report here")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from synthner.progress import bar
    from synthner_shared.documents import read_documents
    from synthner_shared.evaluation import evaluate_spans
    from synthner_shared.ner.predictor import ModelFolderError, SpanPredictor
    from synthner_trainer.report import render_report

    gold = list(read_documents(args.gold))
    try:
        predictor = SpanPredictor.load(args.model, device=args.device)
    except ModelFolderError as exc:
        print(f"synthner: {exc}", file=sys.stderr)
        return 2
    predicted = []
    with bar(len(gold), "predicting", enabled=args.show_progress) as progress:
        # In chunks so the bar moves; each chunk is still batched by length inside the predictor.
        for start in range(0, len(gold), CHUNK):
            chunk = gold[start : start + CHUNK]
            predicted += predictor.predict_documents(chunk)
            progress.advance(len(chunk))
    result = evaluate_spans(gold, predicted, args.gold.name)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        for name, scores in (
            ("strict micro", result.strict_micro),
            ("strict macro", result.strict_macro),
            ("partial micro", result.partial_micro),
        ):
            print(f"{name:14} P={scores.precision:.4f} R={scores.recall:.4f} F1={scores.f1:.4f} n={scores.support}")
        for label, scores in sorted(result.strict_per_label.items()):
            print(f"  {label:20} strict F1={scores.f1:.4f} n={scores.support}")
    if args.report:
        args.report.write_text(render_report(result, gold, predicted, args.model.name), encoding="utf-8")
        if not args.json:
            print(f"report written to {args.report}")
    return 0
