"""What the demo's teacher budget trades: the teacher's time comes out of the model's.

The demo runs its stages one after another within 15 minutes, and the model on the notes gets what the teacher and
the notes leave (at most 210 s). Where the notes finish late, a longer teacher starves the model. Given a demo run's
notes and teacher, this trains a teacher with a shorter bound (``--teacher-seconds``) in this run, labels the same
notes with it (the annotator's encoder backend, as the demo does), and trains the demo's model per seed twice: first
on the run's own labels for ``--baseline-seconds`` (the bound the model had in that run: the demo's console prints it),
then on the short teacher's labels for ``--variant-seconds`` (that bound plus the teacher time saved). Both are scored
on the dev split (where the choice is made) and, with ``--test``, on the test split (reported, not chosen on). The
last line is ``gain=… dev_f1=… baseline_dev_f1=… teacher_f1=… epochs=… baseline_epochs=… tokens_per_s=…
[test_f1=… baseline_test_f1=…] seeds=… seconds=…`` (means over seeds; gain is dev_f1 - baseline_dev_f1; teacher_f1 is
the short teacher's strict F1 on ``--test``, or on dev without it).

    python benchmarks/teacher_budget.py --notes out/demo/notes.jsonl --teacher out/demo/teacher \\
        --train ../shared/data/ncbi_disease/train.jsonl --dev ../shared/data/ncbi_disease/dev.jsonl \\
        --test ../shared/data/ncbi_disease/test.jsonl --workdir W --baseline-seconds 109 --variant-seconds 219
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from budget_schedule import PairedFigures, add_paired_arguments, demo_config, train

from synthner.demo.options import TEACHER_SECONDS, add_arguments, options_from
from synthner.demo.teacher import teacher_folder, train_teacher
from synthner.main import main as synthner
from synthner_shared.documents import Document, read_documents
from synthner_shared.offline import stay_offline


def short_teacher(arguments: argparse.Namespace) -> tuple[Path, float]:
    """Train the demo's teacher within ``--teacher-seconds`` into ``--workdir``; its folder and strict F1."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    gold = arguments.test or arguments.dev
    options = options_from(
        parser.parse_args(
            [
                *("--workdir", str(arguments.workdir), "--teacher-seconds", str(arguments.teacher_seconds)),
                *("--lexicon-source", str(arguments.train), "--gold-dev", str(arguments.dev), "--gold", str(gold)),
            ]
        )
    )
    return teacher_folder(options), train_teacher(options, gold).strict_f1


def relabel(notes: Path, teacher: Path, out: Path, labels: list[str]) -> None:
    """Label ``notes`` anew with ``teacher``, as the demo's annotator does (``synthner annotate run``)."""
    backend = ["--encoder-model", str(teacher), "--labels", ",".join(labels), "--device", "cpu"]
    code = synthner(["annotate", "--no-progress", "run", str(notes), str(out), *backend])
    if code != 0:
        raise SystemExit(f"labelling the notes with {teacher} failed (exit {code})")


def with_entities(notes: Path, least: int) -> list[Document]:
    """The notes the demo's model trains on: those with at least ``least`` entities."""
    return [note for note in read_documents(notes) if len(note.entities) >= least]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=Path, required=True, help="a demo run's teacher-labelled notes (notes.jsonl)")
    parser.add_argument("--teacher", type=Path, required=True, help="that run's teacher folder (the baseline labels)")
    parser.add_argument("--train", type=Path, required=True, help="the gold train JSONL the short teacher learns")
    parser.add_argument("--workdir", type=Path, required=True, help="where the short teacher and its labels go")
    parser.add_argument("--teacher-seconds", type=float, default=TEACHER_SECONDS, help="the short teacher's bound")
    parser.add_argument("--baseline-seconds", type=float, required=True, help="the model's bound in the demo run")
    parser.add_argument("--variant-seconds", type=float, required=True, help="that bound plus the teacher time saved")
    parser.add_argument("--min-entities", type=int, default=1, help="notes the model trains on, as in the demo")
    add_paired_arguments(parser, seeds=2)
    arguments = parser.parse_args(argv)
    stay_offline()
    figures = PairedFigures(arguments)
    labels = sorted({entity.label for document in figures.dev for entity in document.entities})
    teacher, teacher_f1 = short_teacher(arguments)
    relabelled = arguments.workdir / "notes.jsonl"
    relabel(arguments.notes, teacher, relabelled, labels)
    runs = (
        (
            "baseline",
            with_entities(arguments.notes, arguments.min_entities),
            arguments.teacher,
            arguments.baseline_seconds,
        ),
        ("short", with_entities(relabelled, arguments.min_entities), teacher, arguments.variant_seconds),
    )
    for seed in figures.seeds:
        for name, kept, labeller, seconds in runs:
            config, _ = demo_config("student", labeller, seed)
            result = train(config, kept, figures.dev, seconds, labels)
            figures.record(f"seed {seed} {name:8s}: {len(kept)} notes, {seconds:.0f} s,", name, result, seconds)
    print(figures.last_line("short", f" teacher_f1={teacher_f1:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
