"""Leak-gate benchmark: memorised passages planted into notes must be caught; notes without them must pass.

The reference is built (as ``synthner leakcheck build-reference`` does) from a gold JSONL file standing in for the real
notes a generator was adapted on. The "fresh" notes are the documents of a second, disjoint file, with their gold
entity spans (for MEDDOCAN: the PHI) replaced by ``[LABEL]`` placeholders, so they are same-domain text without
identifiers: the hardest stand-in available for synthetic notes. Each fresh note is checked twice through the whole
gate (identifier detectors and n-gram memorisation):

- as it is: a failure is a false positive;
- with a passage of L tokens copied verbatim from a random reference document (a window free of gold entities,
  so the n-gram check alone must catch it) inserted at a sentence boundary: a pass is a miss.

L cycles through ``--lengths``. The last line is ``recall=<share> fpr=<share>`` (goal recall >= 0.99, fpr <= 0.01).

    python benchmarks/leak_gate.py --reference ../shared/data/meddocan/train.jsonl \\
        --fresh ../shared/data/meddocan/dev.jsonl
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

from synthner_shared.documents import Document, read_documents
from synthner_shared.leakgate import LeakGate
from synthner_shared.ngrams import DEFAULT_N, NgramReference

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOKEN = re.compile(r"\w+")


def masked(document: Document) -> str:
    """The text with every gold entity replaced by its label in brackets."""
    text, pieces, last = document.text, [], 0
    for entity in sorted(document.entities, key=lambda e: e.start):
        pieces += [text[last : entity.start], f"[{entity.label}]"]
        last = entity.end
    return "".join([*pieces, text[last:]])


def passage(document: Document, length: int, rng: random.Random) -> str | None:
    """A verbatim window of ``length`` tokens overlapping no gold entity, or None if the document has none."""
    tokens = list(TOKEN.finditer(document.text))
    covered = [any(e.start < t.end() and t.start() < e.end for e in document.entities) for t in tokens]
    starts = [i for i in range(len(tokens) - length + 1) if not any(covered[i : i + length])]
    if not starts:
        return None
    first = rng.choice(starts)
    return document.text[tokens[first].start() : tokens[first + length - 1].end()]


def plant(note: str, text: str, rng: random.Random) -> str:
    boundaries = [m.end() for m in re.finditer(r"[.!?]\s", note)] or [len(note)]
    at = rng.choice(boundaries)
    return f"{note[:at]}{text} {note[at:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=DATA / "meddocan" / "train.jsonl", help="real notes")
    parser.add_argument("--fresh", type=Path, default=DATA / "meddocan" / "dev.jsonl", help="disjoint notes")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"n-gram size (default {DEFAULT_N})")
    parser.add_argument("--min-run", type=int, default=20, help="verbatim run that fails a note (default 20)")
    parser.add_argument("--lengths", default="20,30,50,80,120", help="planted passage lengths in tokens")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    lengths = [int(v) for v in args.lengths.split(",")]

    references = list(read_documents(args.reference))
    fresh = [masked(d) for d in read_documents(args.fresh)]
    started = time.perf_counter()
    reference = NgramReference.build((d.text for d in references), n=args.n)
    built = time.perf_counter() - started
    gate = LeakGate(reference, min_run_tokens=args.min_run)

    false_positives: Counter[str] = Counter()
    caught: Counter[int] = Counter()
    planted: Counter[int] = Counter()
    started = time.perf_counter()
    for index, note in enumerate(fresh):
        result = gate.check(note)
        if result.status == "failed":
            false_positives.update(reason.split(":")[0] for reason in result.reasons)
        length = lengths[index % len(lengths)]
        text = None
        while text is None:
            text = passage(rng.choice(references), length, rng)
        planted[length] += 1
        caught[length] += gate.check(plant(note, text, rng)).status == "failed"
    checked = time.perf_counter() - started

    flagged = sum(1 for note in fresh if gate.check(note).status == "failed")
    print(
        f"reference: {args.reference.name} ({len(references)} documents, {len(reference.hashes)} hashed "
        f"{args.n}-grams, built in {built:.2f}s); fresh: {args.fresh.name} ({len(fresh)} documents)"
    )
    print(f"gate: min verbatim run {args.min_run} tokens; {2 * len(fresh) / checked:.0f} notes/s")
    for length in lengths:
        print(f"planted {length:>4} tokens: caught {caught[length]}/{planted[length]}")
    print(f"false positives by detector: {dict(false_positives) or 'none'}")
    recall = sum(caught.values()) / sum(planted.values())
    print(f"recall={recall:.4f} fpr={flagged / len(fresh):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
