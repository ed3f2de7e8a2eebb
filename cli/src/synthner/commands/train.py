"""``synthner train --data FILE... --base-model PATH --out DIR``: fine-tune a token-classification model on files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a token-classification model on document JSONL files",
        description=(
            "Fine-tune a token-classification model on document JSONL files and write a Hugging Face folder with\n"
            "metrics.json, dataset_manifest.json and a model card. Without --dev, a share of --data is held out.\n\n"
            "example:\n  synthner train --data train.jsonl --dev dev.jsonl --gold test.jsonl --out models/ncbi"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="training document files (JSONL)")
    parser.add_argument("--base-model", type=Path, help="local base-model folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--out", type=Path, required=True, help="model folder to create (must not exist)")
    parser.add_argument("--dev", type=Path, help="dev documents for early stopping")
    parser.add_argument("--gold", type=Path, help="real gold documents to score the model on")
    parser.add_argument("--labels", nargs="+", help="entity label set (default: the labels in the data)")
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-length", type=int, help="window length in tokens")
    parser.add_argument("--stride", type=int, help="overlap between windows in tokens")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-seconds", type=float, help="bound on the training's time; the epoch then ends")
    parser.add_argument("--patience", type=int, default=2, help="epochs without dev gain before stopping")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from synthner.progress import bar, follow_training
    from synthner_shared.contracts import HyperParameters
    from synthner_shared.documents import read_documents
    from synthner_trainer.base_model import default_base_model
    from synthner_trainer.pipeline import GoldSet, train_to_folder
    from synthner_trainer.settings import TrainingConfig
    from synthner_trainer.training import log_progress

    train = [document for path in args.data for document in read_documents(path)]
    dev = list(read_documents(args.dev)) if args.dev else None
    gold = GoldSet.read(args.gold) if args.gold else None
    overrides = HyperParameters(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
        stride=args.stride,
        seed=args.seed,
        max_seconds=args.max_seconds,
    )
    config = TrainingConfig().override(overrides)
    try:
        with bar(None, "training", enabled=args.show_progress, unit="step") as steps:
            _, metrics = train_to_folder(
                train,
                args.out,
                args.base_model or default_base_model(),
                config,
                dev=dev,
                gold=gold,
                labels=args.labels,
                device=args.device,
                patience=args.patience,
                progress=follow_training(steps, log_progress),
            )
    except (ValueError, FileExistsError) as exc:  # bad input: empty data, labels outside the set, bad base model
        print(f"synthner: {exc}", file=sys.stderr)
        return 2
    for result in metrics:
        print(
            json.dumps(
                {"dataset": result.dataset, "strict_f1": result.strict_micro.f1, "partial_f1": result.partial_micro.f1}
            )
        )
    print(f"model written to {args.out}")
    return 0
