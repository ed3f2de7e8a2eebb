"""F1 per share of the training data (the papers' data-amount experiment), one line per fraction.

    python benchmarks/learning_curve.py [--fractions 0.1 0.25 0.5 1] [--train/--dev/--test FILE] [--epochs 3]

Defaults to NCBI-disease from ``../shared/data``. Each line: ``fraction=… documents=… strict_f1=… partial_f1=…
seconds=…``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from synthner_shared.documents import read_documents
from synthner_trainer.base_model import default_base_model
from synthner_trainer.learning_curve import learning_curve
from synthner_trainer.settings import TrainingConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ncbi_disease"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=DATA / "train.jsonl")
    parser.add_argument("--dev", type=Path, default=DATA / "dev.jsonl")
    parser.add_argument("--test", type=Path, default=DATA / "test.jsonl")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    parser.add_argument("--dev-docs", type=int, default=30, help="first N dev documents for early stopping")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = TrainingConfig(
        epochs=args.epochs, learning_rate=args.learning_rate, max_length=args.max_length, stride=args.stride
    )
    train, test = list(read_documents(args.train)), list(read_documents(args.test))
    dev = list(read_documents(args.dev))[: args.dev_docs]
    for point in learning_curve(
        train, dev, test, args.fractions, base_model=default_base_model(), config=config, device=args.device
    ):
        print(
            f"fraction={point.fraction:g} documents={point.documents} strict_f1={point.strict_f1:.4f}"
            f" partial_f1={point.partial_f1:.4f} seconds={point.seconds:.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
