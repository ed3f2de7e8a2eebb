"""What decaying the learning rate to the time budget buys a time-bounded training: the same training twice.

The demo's teacher (≤ 300 s) and its model on the notes (≤ 210 s) are bounded by time, not epochs, and on a 2-core
CPU the bound ends them before their planned epochs: the teacher ran 3 of 5 on a Xeon. With the learning rate
scheduled over the planned steps, such a run stops at 40-60% of its peak rate, never having annealed. With
``TrainingConfig.decay_to_budget`` (the default) the rate warms up and decays over whichever ends first, the steps or
the budget. This trains one of the demo's two models twice per seed, on the same documents and budget, in this run:
first the schedule over steps (the baseline), then over the budget, and scores both on the dev split (where the choice
is made). With ``--test`` both are scored on it too, for the report. The last line is
``gain=… dev_f1=… baseline_dev_f1=… epochs=… baseline_epochs=… tokens_per_s=… seconds=…`` (means over seeds; gain
is dev_f1 - baseline_dev_f1).

    python benchmarks/budget_schedule.py --role teacher --train GOLD_TRAIN.jsonl --dev DEV.jsonl [--seconds 300]
    python benchmarks/budget_schedule.py --role student --train NOTES.jsonl --dev DEV.jsonl --teacher DIR \\
        [--seconds 210]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from synthner.demo.options import add_arguments, options_from
from synthner.demo.stages import STUDENT_SECONDS, student_config
from synthner.demo.teacher import teacher_config
from synthner_shared.documents import Document, read_documents
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.offline import stay_offline
from synthner_trainer.base_model import default_base_model
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import TrainingResult, fine_tune, prepare


def demo_config(role: str, teacher: Path | None, seed: int) -> tuple[TrainingConfig, float]:
    """The demo's training settings for ``role`` and its default time budget."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = options_from(parser.parse_args(["--seed", str(seed)]))
    if role == "teacher":
        assert options.teacher_seconds is not None
        return teacher_config(options), options.teacher_seconds
    if teacher is None:
        raise SystemExit("--role student needs --teacher (the teacher's model folder, whose soft labels it learns)")
    config = student_config(options).model_copy(update={"distill_from": teacher, "seed": seed})
    return config, STUDENT_SECONDS


def train(
    config: TrainingConfig, train_docs: list[Document], dev: list[Document], seconds: float, labels: list[str]
) -> TrainingResult:
    plan = prepare(train_docs, dev, default_base_model(), config, labels=labels)
    return fine_tune(plan, device="cpu", patience=0, max_seconds=seconds)


def add_paired_arguments(parser: argparse.ArgumentParser, *, seeds: int) -> None:
    """The arguments every baseline-against-variant benchmark here takes: the splits and the seeds."""
    parser.add_argument("--dev", type=Path, required=True, help="gold JSONL scored after each epoch (the choice)")
    parser.add_argument("--test", type=Path, help="gold JSONL both are scored on at the end (reported, not chosen on)")
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--first-seed", type=int, default=7)


class PairedFigures:
    """The figures of a baseline and a variant trained in turn, per seed: each run's line printed as it ends, the
    figures kept for their means (``<name>_dev``, ``_test`` when a test split is given, ``_epochs``,
    ``_tokens_per_s``) and the last line made of them."""

    def __init__(self, arguments: argparse.Namespace) -> None:
        """The splits and seeds of :func:`add_paired_arguments`, read."""
        self.dev = list(read_documents(arguments.dev))
        self.test = list(read_documents(arguments.test)) if arguments.test else []
        self.seeds = range(arguments.first_seed, arguments.first_seed + arguments.seeds)
        self.values: dict[str, list[float]] = {}
        self.started = time.perf_counter()

    def record(self, title: str, name: str, result: TrainingResult, seconds: float) -> None:
        dev_f1 = result.dev_result.strict_micro.f1
        line = (
            f"{title} dev strict F1 {dev_f1:.4f}, {result.epochs_run} epochs (best {result.best_epoch}) in"
            f" {seconds:.0f} s at {result.tokens_per_second:.0f} tokens/s"
        )
        if self.test:
            scored = result.predictor().predict_documents(self.test)
            test_f1 = evaluate_spans(self.test, scored, "test").strict_micro.f1
            self.values.setdefault(f"{name}_test", []).append(test_f1)
            line += f", test {test_f1:.4f}"
        print(line, flush=True)
        self.values.setdefault(f"{name}_dev", []).append(dev_f1)
        self.values.setdefault(f"{name}_epochs", []).append(result.epochs_run)
        self.values.setdefault(f"{name}_tokens_per_s", []).append(result.tokens_per_second)

    def mean(self, key: str) -> float:
        return statistics.fmean(self.values[key])

    def last_line(self, variant: str, counts: str = "") -> str:
        """``gain=… dev_f1=… baseline_dev_f1=…[ counts] epochs=… baseline_epochs=… tokens_per_s=…[ test_f1=…
        baseline_test_f1=…] seeds=… seconds=…``: means over seeds of ``variant`` against the baseline."""
        mean = self.mean
        tail = (
            f" test_f1={mean(f'{variant}_test'):.4f} baseline_test_f1={mean('baseline_test'):.4f}" if self.test else ""
        )
        return (
            f"gain={mean(f'{variant}_dev') - mean('baseline_dev'):.4f} dev_f1={mean(f'{variant}_dev'):.4f}"
            f" baseline_dev_f1={mean('baseline_dev'):.4f}{counts} epochs={mean(f'{variant}_epochs'):.1f}"
            f" baseline_epochs={mean('baseline_epochs'):.1f} tokens_per_s={mean(f'{variant}_tokens_per_s'):.0f}{tail}"
            f" seeds={len(self.seeds)} seconds={time.perf_counter() - self.started:.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["teacher", "student"], required=True, help="which of the demo's models")
    parser.add_argument("--train", type=Path, required=True, help="JSONL it trains on (gold train, or the notes)")
    parser.add_argument("--teacher", type=Path, help="the teacher's model folder (role student)")
    parser.add_argument("--seconds", type=float, help="time budget (default: the demo's, 300 teacher / 210 student)")
    add_paired_arguments(parser, seeds=1)
    arguments = parser.parse_args(argv)
    stay_offline()
    train_docs = list(read_documents(arguments.train))
    figures = PairedFigures(arguments)
    dev = figures.dev
    labels = sorted({entity.label for document in [*train_docs, *dev] for entity in document.entities})
    for seed in figures.seeds:
        config, default_seconds = demo_config(arguments.role, arguments.teacher, seed)
        seconds = arguments.seconds or default_seconds
        for name, over_budget in (("baseline", False), ("budget", True)):
            result = train(config.model_copy(update={"decay_to_budget": over_budget}), train_docs, dev, seconds, labels)
            figures.record(f"seed {seed} {name:8s}:", name, result, seconds)
    print(figures.last_line("budget"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
