"""What caching the teacher's soft labels buys a distilled student: the same training with and without the cache.

A student that learns the teacher's token probabilities (``TrainingConfig.distill_from``) used to run the teacher on
every batch of every epoch; the trainer now computes them once per training window (``SoftLabels``) and reuses them.
This trains the same student twice on the same documents, seed and epochs: the baseline with the teacher run on every
batch (as before), then with the cache; both timed in this run, on this machine. The dev F1s should agree (the
cached logits are the teacher's, computed on smaller batches: float noise only). The last line is
``ratio=… tokens_per_s=… baseline_tokens_per_s=… dev_f1=… baseline_dev_f1=… epochs=…``.

    python benchmarks/soft_label_cache.py --train NOTES.jsonl --dev DEV.jsonl --teacher DIR [--epochs 3]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthner_shared.documents import read_documents
from synthner_shared.offline import stay_offline
from synthner_trainer.base_model import default_base_model
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import Optimizer, TrainingResult, fine_tune, prepare


def train(arguments: argparse.Namespace, *, cached: bool) -> TrainingResult:
    config = TrainingConfig(
        epochs=arguments.epochs,
        batch_size=arguments.batch_size,
        learning_rate=3e-4,
        max_length=arguments.max_length,
        stride=64,
        seed=arguments.seed,
        distill_from=arguments.teacher,
        distill_weight=0.5,
        distill_temperature=2.0,
    )
    documents = list(read_documents(arguments.train))
    labels = sorted({entity.label for document in documents for entity in document.entities})
    plan = prepare(documents, list(read_documents(arguments.dev)), default_base_model(), config, labels=labels)
    step = Optimizer.step
    if not cached:

        def uncached(
            self: Optimizer,
            batch: dict[str, Any],
            windows: Sequence[int] | None = None,
            progress: float | None = None,
        ) -> float:
            return step(self, batch, None, progress)  # the teacher runs on the batch, as before the cache

        Optimizer.step = uncached  # type: ignore[method-assign]
    try:
        return fine_tune(plan, device="cpu", patience=0)
    finally:
        Optimizer.step = step  # type: ignore[method-assign]


def dev_f1(result: TrainingResult) -> float:
    return result.dev_result.strict_micro.f1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="annotated JSONL the student trains on")
    parser.add_argument("--dev", type=Path, required=True, help="gold JSONL the student is scored on each epoch")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's model folder (same base model)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=4, help="default 4, the demo's")
    parser.add_argument("--max-length", type=int, default=256, help="default 256, the demo's")
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args(argv)
    stay_offline()
    baseline = train(arguments, cached=False)
    print(f"teacher on every batch: {baseline.tokens_per_second:.0f} tokens/s, dev {dev_f1(baseline):.4f}")
    cached = train(arguments, cached=True)
    print(f"soft labels cached:     {cached.tokens_per_second:.0f} tokens/s, dev {dev_f1(cached):.4f}")
    print(
        f"ratio={cached.tokens_per_second / baseline.tokens_per_second:.2f}"
        f" tokens_per_s={cached.tokens_per_second:.0f} baseline_tokens_per_s={baseline.tokens_per_second:.0f}"
        f" dev_f1={dev_f1(cached):.4f} baseline_dev_f1={dev_f1(baseline):.4f}"
        f" epochs={cached.epochs_run}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
