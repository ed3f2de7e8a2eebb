"""What leaving entity-free notes out buys the demo's model: the same training on all notes and on those with an entity.

SmolLM2 continuing the opening words of an abstract often leaves medicine (code, arithmetic, games), and the teacher
finds no entity in such a note; about half of the demo's notes. The trainer's ``min_entities`` setting leaves them out
of a new dataset version. This trains the demo's model (its settings and time budget, the teacher's soft labels) on
the same notes twice per seed, in this run: first on every note (the baseline), then on the notes with at least
``--min-entities`` entities, and scores both on the dev split (where the choice is made) and, with ``--test``, on the
test split (reported, not chosen on). The last line is
``gain=… dev_f1=… baseline_dev_f1=… notes=… baseline_notes=… epochs=… baseline_epochs=… tokens_per_s=… seeds=…
seconds=…`` (means over seeds; gain is dev_f1 - baseline_dev_f1; ``test_f1``/``baseline_test_f1`` with ``--test``).

    python benchmarks/min_entities.py --notes out/demo/notes.jsonl --teacher out/demo/teacher \\
        --dev ../shared/data/ncbi_disease/dev.jsonl [--test ../shared/data/ncbi_disease/test.jsonl] [--seeds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from budget_schedule import PairedFigures, demo_config, train

from synthner_shared.documents import read_documents
from synthner_shared.offline import stay_offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=Path, required=True, help="the teacher-labelled notes (the demo's notes.jsonl)")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's model folder (its soft labels)")
    parser.add_argument("--dev", type=Path, required=True, help="gold JSONL the choices are made on")
    parser.add_argument("--test", type=Path, help="gold JSONL both are scored on at the end (reported, not chosen on)")
    parser.add_argument("--min-entities", type=int, default=1, help="the filter measured against none (default 1)")
    parser.add_argument("--seconds", type=float, help="time budget of each training (default: the demo's)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=7)
    arguments = parser.parse_args(argv)
    stay_offline()
    notes = list(read_documents(arguments.notes))
    kept = [note for note in notes if len(note.entities) >= arguments.min_entities]
    dev = list(read_documents(arguments.dev))
    test = list(read_documents(arguments.test)) if arguments.test else []
    labels = sorted({entity.label for document in [*notes, *dev] for entity in document.entities})
    started = time.perf_counter()
    figures = PairedFigures(test)
    for seed in range(arguments.first_seed, arguments.first_seed + arguments.seeds):
        config, default_seconds = demo_config("student", arguments.teacher, seed)
        seconds = arguments.seconds or default_seconds
        for name, documents in (("baseline", notes), ("filtered", kept)):
            result = train(config, documents, dev, seconds, labels)
            figures.record(f"seed {seed} {name:8s}: {len(documents)} notes,", name, result, seconds)
    mean = figures.mean
    tail = f" test_f1={mean('filtered_test'):.4f} baseline_test_f1={mean('baseline_test'):.4f}" if test else ""
    print(
        f"gain={mean('filtered_dev') - mean('baseline_dev'):.4f} dev_f1={mean('filtered_dev'):.4f}"
        f" baseline_dev_f1={mean('baseline_dev'):.4f} notes={len(kept)} baseline_notes={len(notes)}"
        f" epochs={mean('filtered_epochs'):.1f} baseline_epochs={mean('baseline_epochs'):.1f}"
        f" tokens_per_s={mean('filtered_tokens_per_s'):.0f}{tail} seeds={arguments.seeds}"
        f" seconds={time.perf_counter() - started:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
