"""Our training loop against a plain ``transformers.Trainer``: same model, data, encoding and hyper-parameters.

Both start from the same base model with the same seed, train on the same windows (our encoding: first sub-token
labelled, overlapping windows), for the same number of steps with AdamW, linear warm-up/decay, weight decay and
gradient clipping; both are scored on the test documents with the same span decoding and evaluation. Tokens/s counts
the real (non-padding) tokens of the training batches over the optimisation time only. Ours differs in batching:
length-grouped batches (less padding).

Each seed (``--seeds``, default 3) trains both; the order alternates from seed to seed so neither always runs on a
warmer or quieter machine. "Equal within noise" is judged against the seed-to-seed spread: ``f1_gap`` is the
difference of the mean F1s, ``f1_sd`` the pooled standard deviation of one run's F1 across seeds, ``f1_gap_se`` the
standard error of the gap and ``f1_p`` the two-sided p-value of Welch's t-test that the two mean F1s are equal
(``f1_p`` ≥ 0.05: no detectable difference at this number of seeds). Last line:
``ratio=<ours/hf mean tokens/s> f1_ours=<mean> f1_hf=<mean> f1_gap=… f1_sd=… f1_gap_se=… f1_p=… seeds=…``.

    python benchmarks/trainer_vs_hf.py [--train-docs 100 --epochs 2 --seeds 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from scipy import stats
from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

from synthner_shared.documents import Document, read_documents
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.ner import iob2_tags
from synthner_shared.ner.predictor import SpanPredictor
from synthner_trainer.base_model import default_base_model
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import (
    TrainingPlan,
    encode_documents,
    fine_tune,
    load_for_training,
    prepare,
    seed_everything,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ncbi_disease"


class Windows(torch.utils.data.Dataset[dict[str, list[int]]]):
    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


def run_hf(plan: TrainingPlan, test: list[Document], workdir: Path) -> tuple[float, float]:
    """tokens/s and test strict F1 of a plain transformers.Trainer run."""
    config = plan.config
    seed_everything(config.seed)
    tokenizer, model = load_for_training(plan)
    tag_ids = {t: i for i, t in enumerate(iob2_tags(plan.labels))}
    windows = encode_documents(plan.train, tokenizer, tag_ids, config)
    items = [{"input_ids": w.input_ids, "attention_mask": [1] * len(w.input_ids), "labels": w.labels} for w in windows]
    steps = max(1, math.ceil(math.ceil(len(items) / config.batch_size) * config.epochs))
    arguments = TrainingArguments(
        output_dir=str(workdir),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=round(steps * config.warmup_ratio),
        max_grad_norm=1.0,
        seed=config.seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=Windows(items),
        data_collator=DataCollatorForTokenClassification(tokenizer),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    epochs_done = steps * config.batch_size / len(items)
    tokens = sum(len(i["input_ids"]) for i in items) * epochs_done
    predictor = SpanPredictor(
        model, tokenizer, max_length=config.max_length, stride=config.stride, subtokens=config.subtokens
    )
    f1 = evaluate_spans(test, predictor.predict_documents(test), "test").strict_micro.f1
    return tokens / seconds, f1


def run_ours(plan: TrainingPlan, test: list[Document]) -> tuple[float, float]:
    result = fine_tune(plan, device="auto", patience=0)
    f1 = evaluate_spans(test, result.predictor().predict_documents(test), "test").strict_micro.f1
    return result.tokens_per_second, f1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=DATA / "train.jsonl")
    parser.add_argument("--dev", type=Path, default=DATA / "dev.jsonl")
    parser.add_argument("--test", type=Path, default=DATA / "test.jsonl")
    parser.add_argument("--train-docs", type=int, default=100, help="first N training documents (0: all)")
    parser.add_argument("--test-docs", type=int, default=50)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3, help="train both this many times, seeds first-seed, +1, …")
    parser.add_argument("--first-seed", type=int, default=13)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    train = list(read_documents(args.train))[: args.train_docs or None]
    dev = list(read_documents(args.dev))[:20]
    test = list(read_documents(args.test))[: args.test_docs]
    config = TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
        stride=args.stride,
        calibrate_outside_bias=False,  # the same decoding on both sides: no O bias chosen on dev,
        abbreviations="off",  # and no abbreviation step
        crf=False,  # the same loss (per-token cross-entropy on every sub-token) as transformers.Trainer's
        subtokens="all",
    )
    plan = prepare(train, dev, default_base_model(), config)
    print(f"load before: {os.getloadavg()}", flush=True)
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "hf": []}
    for index in range(args.seeds):
        seeded = replace(plan, config=config.model_copy(update={"seed": args.first_seed + index}))
        order = ["hf", "ours"] if index % 2 == 0 else ["ours", "hf"]
        for name in order:
            if name == "hf":
                with tempfile.TemporaryDirectory() as workdir:
                    tps, f1 = run_hf(seeded, test, Path(workdir))
            else:
                tps, f1 = run_ours(seeded, test)
            runs[name].append((tps, f1))
            print(f"seed {seeded.config.seed} {name}: {tps:.0f} tokens/s, test strict F1 {f1:.4f}", flush=True)
    print(f"load after: {os.getloadavg()}", flush=True)
    tps_ours, tps_hf = (statistics.fmean(t for t, _ in runs[n]) for n in ("ours", "hf"))
    f1_ours, f1_hf = (statistics.fmean(f for _, f in runs[n]) for n in ("ours", "hf"))
    spread, gap_se, p_value = f1_spread([f for _, f in runs["ours"]], [f for _, f in runs["hf"]])
    print(
        f"ratio={tps_ours / tps_hf:.2f} f1_ours={f1_ours:.4f} f1_hf={f1_hf:.4f}"
        f" f1_gap={f1_ours - f1_hf:+.4f} f1_sd={spread:.4f} f1_gap_se={gap_se:.4f} f1_p={p_value:.3f}"
        f" seeds={args.seeds}"
    )
    return 0


def f1_spread(ours: list[float], hf: list[float]) -> tuple[float, float, float]:
    """Pooled SD of one run's F1, standard error of the mean gap, and Welch's two-sided p-value (NaN with one seed)."""
    if len(ours) < 2 or len(hf) < 2:
        return float("nan"), float("nan"), float("nan")
    var_ours, var_hf = statistics.variance(ours), statistics.variance(hf)
    spread = math.sqrt((var_ours + var_hf) / 2)
    gap_se = math.sqrt(var_ours / len(ours) + var_hf / len(hf))
    if gap_se == 0:
        return spread, gap_se, 1.0 if statistics.fmean(ours) == statistics.fmean(hf) else 0.0
    p_value = float(stats.ttest_ind(ours, hf, equal_var=False).pvalue)
    return spread, gap_se, p_value


if __name__ == "__main__":
    sys.exit(main())
