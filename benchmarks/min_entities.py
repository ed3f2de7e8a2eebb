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
from pathlib import Path

from budget_schedule import PairedFigures, add_paired_arguments, demo_config, train

from synthner_shared.documents import read_documents
from synthner_shared.offline import stay_offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=Path, required=True, help="the teacher-labelled notes (the demo's notes.jsonl)")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's model folder (its soft labels)")
    parser.add_argument("--min-entities", type=int, default=1, help="the filter measured against none (default 1)")
    parser.add_argument("--seconds", type=float, help="time budget of each training (default: the demo's)")
    add_paired_arguments(parser, seeds=2)
    arguments = parser.parse_args(argv)
    stay_offline()
    notes = list(read_documents(arguments.notes))
    kept = [note for note in notes if len(note.entities) >= arguments.min_entities]
    figures = PairedFigures(arguments)
    dev = figures.dev
    labels = sorted({entity.label for document in [*notes, *dev] for entity in document.entities})
    for seed in figures.seeds:
        config, default_seconds = demo_config("student", arguments.teacher, seed)
        seconds = arguments.seconds or default_seconds
        for name, documents in (("baseline", notes), ("filtered", kept)):
            result = train(config, documents, dev, seconds, labels)
            figures.record(f"seed {seed} {name:8s}: {len(documents)} notes,", name, result, seconds)
    print(figures.last_line("filtered", f" notes={len(kept)} baseline_notes={len(notes)}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
