"""How well mention alignment recovers gold spans from the mention list an LLM would return.

For each gold document: the mention list (label + surface text, in order of appearance) is aligned with the project's
aligner, and the share of gold spans recovered exactly (same start, end, label) is counted. Then again with the
mentions perturbed the way LLMs perturb them: case changes, collapsed whitespace, Unicode quote/dash variants, and
the list shuffled. Gold spans whose surface text also occurs unannotated in the document are ambiguous without
offsets (which occurrence did the annotator mean?); the shares over the other spans are printed too. Last line:
``exact=<share> perturbed=<share> exact_unambiguous=<share> perturbed_unambiguous=<share>``.

    python benchmarks/alignment.py --gold ../shared/data/ncbi_disease/dev.jsonl
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

from synthner_annotator.alignment import ProposedMention, align_mentions
from synthner_shared.documents import Document, read_documents

_VARIANTS = {"'": "\u2019", '"': "\u201c", "-": "\u2013"}
_REVERSE = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}


def perturb(text: str, rng: random.Random) -> str:
    """One LLM-like rewrite of a mention: case, whitespace, and quote/dash variants."""
    choice = rng.random()
    if choice < 0.25:
        text = text.upper()
    elif choice < 0.5:
        text = text.lower()
    elif choice < 0.6:
        text = text.title()
    text = re.sub(r"\s+", " ", text)
    return "".join(_VARIANTS.get(c, _REVERSE.get(c, c)) if rng.random() < 0.8 else c for c in text)


Key = tuple[int, int, str]


def ambiguous(document: Document) -> set[Key]:
    """Gold spans whose exact surface text occurs more often (on word boundaries) than it is annotated: a mention
    list without offsets cannot say which occurrence is meant, so these bound what any aligner can recover."""
    by_surface: dict[str, list[Key]] = {}
    for e in document.entities:
        by_surface.setdefault(document.text[e.start : e.end], []).append((e.start, e.end, e.label))
    unclear: set[Key] = set()
    for surface, keys in by_surface.items():
        pattern = rf"(?<!\w){re.escape(surface)}(?!\w)" if surface[:1].isalnum() and surface[-1:].isalnum() else None
        occurs = len(re.findall(pattern, document.text)) if pattern else document.text.count(surface)
        if occurs > len(keys):
            unclear.update(keys)
    return unclear


def recovered(document: Document, mentions: list[ProposedMention]) -> set[Key]:
    labels = sorted({e.label for e in document.entities}) or ["X"]
    report = align_mentions(document.text, mentions, labels)
    gold = {(e.start, e.end, e.label) for e in document.entities}
    return gold & {s.key for s in report.spans}


def share(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, required=True, help="gold document JSONL file")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    documents = list(read_documents(args.gold))
    total = exact = perturbed = unclear = clear_exact = clear_perturbed = 0
    started = time.perf_counter()
    for document in documents:
        mentions = [ProposedMention(e.label, document.text[e.start : e.end]) for e in document.entities]
        total += len(mentions)
        unsure = ambiguous(document)
        unclear += len(unsure)
        found = recovered(document, mentions)
        changed = [ProposedMention(m.label, perturb(m.text, rng)) for m in mentions]
        rng.shuffle(changed)
        found_perturbed = recovered(document, changed)
        exact += len(found)
        perturbed += len(found_perturbed)
        clear_exact += len(found - unsure)
        clear_perturbed += len(found_perturbed - unsure)
    elapsed = time.perf_counter() - started
    clear = total - unclear
    print(f"{args.gold}: {len(documents)} documents, {total} gold spans, {elapsed:.2f}s")
    print(f"gold spans whose surface text also occurs unannotated (ambiguous without offsets): {unclear}")
    print(f"recovered exactly: {exact}/{total}; with perturbed, shuffled mentions: {perturbed}/{total}")
    print(f"of the {clear} unambiguous spans: {clear_exact} exactly, {clear_perturbed} perturbed")
    print(
        f"exact={share(exact, total):.4f} perturbed={share(perturbed, total):.4f}"
        f" exact_unambiguous={share(clear_exact, clear):.4f} perturbed_unambiguous={share(clear_perturbed, clear):.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
