"""``synthner convert IN OUT``: documents between JSONL and CoNLL/BIO, BRAT, spaCy DocBin and Label Studio JSON."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthner_shared.documents import Document

FORMATS = ("jsonl", "conll", "brat", "spacy", "label-studio")
SUFFIXES = {".jsonl": "jsonl", ".conll": "conll", ".bio": "conll", ".spacy": "spacy", ".json": "label-studio"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert documents between JSONL, CoNLL/BIO, BRAT, spaCy DocBin and Label Studio JSON",
        description=(
            "Convert annotated documents between formats. The format comes from --from/--to or the name:\n"
            ".jsonl (the document format), .conll/.bio (token<TAB>IOB2 tag), .spacy (spaCy DocBin, needs the\n"
            "`spacy` extra), .json (Label Studio tasks: entities are written as predictions, to review; read back\n"
            "from the latest completed annotation, else the first prediction; `synthner review` is the review round\n"
            "trip), a folder (BRAT: <id>.txt + <id>.ann). OUT must not exist;\n"
            "it appears only once it is complete. CoNLL keeps tokens, not the original whitespace; DocBin keeps the\n"
            "text, the exact offsets and the document ids.\n\n"
            "examples:\n  synthner convert train.jsonl train.conll\n  synthner convert brat-folder/ docs.jsonl\n"
            "  synthner convert train.jsonl train.spacy   # then: python -m spacy train ... --paths.train train.spacy"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--from", dest="source_format", choices=FORMATS)
    parser.add_argument("--to", dest="target_format", choices=FORMATS)
    parser.set_defaults(handler=run_convert)


def guess(path: Path, given: str | None, *, existing: bool) -> str:
    if given:
        return given
    if (existing and path.is_dir()) or (not existing and not path.suffix):
        return "brat"
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValueError(f"cannot tell the format of {path} from its name: pass --from/--to ({', '.join(FORMATS)})")
    return found


def read(path: Path, fmt: str) -> list[Document]:
    import json

    from synthner_shared.documents import read_documents
    from synthner_shared.formats import from_conll, from_label_studio, read_brat_folder

    if fmt == "jsonl":
        return list(read_documents(path))
    if fmt == "conll":
        with path.open(encoding="utf-8") as lines:
            return list(from_conll(lines, str(path)))
    if fmt == "spacy":
        from synthner.docbin import from_docbin

        return from_docbin(path.read_bytes(), str(path))
    if fmt == "brat":
        if not path.is_dir():
            raise ValueError(f"{path} is not a folder of BRAT .txt/.ann files")
        return list(read_brat_folder(path))
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return list(from_label_studio(tasks, str(path)))


def write(path: Path, fmt: str, documents: Iterable[Document]) -> None:
    """Write into a temporary sibling, then rename: a failed conversion leaves no partial output."""
    from synthner_shared.documents import write_documents
    from synthner_shared.formats import dump_label_studio, to_brat, to_conll

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        target = staging / "out"
        if fmt == "jsonl":
            write_documents(target, documents)
        elif fmt == "conll":
            target.write_text("".join(line + "\n" for line in to_conll(documents)), encoding="utf-8")
        elif fmt == "spacy":
            from synthner.docbin import to_docbin

            target.write_bytes(to_docbin(documents))
        elif fmt == "label-studio":
            target.write_text(dump_label_studio(documents), encoding="utf-8")
        else:
            target.mkdir()
            for document in documents:
                text, ann = to_brat(document)
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in document.id)
                (target / f"{safe}.txt").write_text(text, encoding="utf-8")
                (target / f"{safe}.ann").write_text(ann, encoding="utf-8")
        os.replace(target, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_paths(source: Path, target: Path) -> None:
    """The input exists and the output does not (a command never writes over an existing path)."""
    if not source.exists():
        raise ValueError(f"{source} not found")
    if target.exists():
        raise ValueError(f"{target} exists: remove it or choose another output")


def run_convert(args: argparse.Namespace) -> int:
    from synthner_shared.formats import FormatError

    try:
        check_paths(args.input, args.output)
        source = guess(args.input, args.source_format, existing=True)
        target = guess(args.output, args.target_format, existing=False)
        documents = read(args.input, source)
        write(args.output, target, documents)
    except (ValueError, FormatError, OSError) as exc:
        print(f"synthner convert: {exc}", file=sys.stderr)
        return 2
    print(f"{len(documents)} documents: {args.input} ({source}) -> {args.output} ({target})")
    return 0
