"""``synthner leakcheck build-reference``: the hashed n-gram reference of real notes for the generator's leak gate."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "leakcheck",
        help="build the leak gate's memorisation reference",
        description=(
            "Build the leak gate's reference: keyed hashes of the word n-grams of real notes (no readable text).\n\n"
            "example:\n  synthner leakcheck build-reference notes.jsonl --out var/leak-reference.npz"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build-reference", help="hash the n-grams of document JSONL files")
    build.add_argument("files", nargs="+", type=Path, help="JSONL documents: the real notes the generator saw")
    build.add_argument("--out", type=Path, required=True, help="reference file to write (.npz)")
    build.add_argument("--n", type=int, default=8, help="words per n-gram (default 8)")
    build.set_defaults(handler=run_build_reference)


def run_build_reference(args: argparse.Namespace) -> int:
    from synthner_shared.documents import read_documents
    from synthner_shared.ngrams import NgramReference

    texts = (document.text for path in args.files for document in read_documents(path))
    reference = NgramReference.build(texts, n=args.n)
    reference.save(args.out)
    print(f"{args.out}: {len(reference.hashes)} hashed {reference.n}-grams from {reference.documents} documents")
    return 0
