"""Which of two note sets makes the better model, under one teacher: a lever on the notes measured without the
teacher's run-to-run spread.

Two demo runs (or any two generations) differ in their notes and in their teachers; one run against another mixes
both. This labels both note files anew with one teacher (the annotator's encoder backend, as the demo does), keeps the
notes with at least ``--min-entities`` entities (the demo's filter), and trains the demo's model per seed on each for
the same time (``--seconds``, default the demo's bound; ``--baseline-seconds`` where the baseline's notes leave the
model a different time), scored on the dev split (where the choice is made) and, with
``--test``, on the test split (reported, not chosen on). The last line is ``gain=… dev_f1=… baseline_dev_f1=…
notes=… baseline_notes=… entities=… baseline_entities=… epochs=… baseline_epochs=… tokens_per_s=…
[test_f1=… baseline_test_f1=…] seeds=… seconds=…`` (means over seeds; gain is dev_f1 - baseline_dev_f1).

    python benchmarks/notes_compare.py --baseline-notes A/notes.jsonl --notes B/notes.jsonl --teacher B/teacher \\
        --dev ../shared/data/ncbi_disease/dev.jsonl --test ../shared/data/ncbi_disease/test.jsonl --workdir W
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from budget_schedule import PairedFigures, add_paired_arguments, demo_config, train
from teacher_budget import relabel, with_entities

from synthner_shared.offline import stay_offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-notes", type=Path, required=True, help="the notes measured against (JSONL)")
    parser.add_argument("--notes", type=Path, required=True, help="the variant's notes (JSONL)")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher that labels both (model folder)")
    parser.add_argument("--workdir", type=Path, required=True, help="where the relabelled notes go")
    parser.add_argument("--min-entities", type=int, default=1, help="notes the model trains on, as in the demo")
    parser.add_argument("--seconds", type=float, help="time budget of each training (default: the demo's)")
    parser.add_argument(
        "--baseline-seconds", type=float, help="the baseline's budget where it differs (the time its notes leave)"
    )
    add_paired_arguments(parser, seeds=2)
    arguments = parser.parse_args(argv)
    stay_offline()
    figures = PairedFigures(arguments)
    labels = sorted({entity.label for document in figures.dev for entity in document.entities})
    arguments.workdir.mkdir(parents=True, exist_ok=True)
    kept = {}
    for name, notes in (("baseline", arguments.baseline_notes), ("variant", arguments.notes)):
        relabelled = arguments.workdir / f"{name}.jsonl"
        relabel(notes, arguments.teacher, relabelled, labels)
        kept[name] = with_entities(relabelled, arguments.min_entities)
    for seed in figures.seeds:
        config, default_seconds = demo_config("student", arguments.teacher, seed)
        budgets = {"variant": arguments.seconds or default_seconds}
        budgets["baseline"] = arguments.baseline_seconds or budgets["variant"]
        for name, documents in kept.items():
            entities = sum(len(d.entities) for d in documents)
            title = f"seed {seed} {name:8s}: {len(documents)} notes, {entities} entities,"
            figures.record(title, name, train(config, documents, figures.dev, budgets[name], labels), budgets[name])
    counts = " ".join(
        f"{prefix}notes={len(kept[name])} {prefix}entities={sum(len(d.entities) for d in kept[name])}"
        for prefix, name in (("", "variant"), ("baseline_", "baseline"))
    )
    print(figures.last_line("variant", f" {counts}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
