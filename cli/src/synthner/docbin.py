"""Documents to and from spaCy's DocBin (``.spacy``), the format ``spacy train`` reads.

spaCy is an optional dependency (``pip install "synthner[spacy]"``); without it both directions fail with one line
that says so. Texts are tokenised by ``spacy.blank(lang)`` (default ``xx``, multi-language rules), and a token that an
entity starts or ends inside is split there, so every entity keeps its exact character offsets and the text is kept
whole, whitespace included. The document id (and any extra keys) travel in each Doc's ``user_data``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.formats import FormatError

if TYPE_CHECKING:
    from spacy.language import Language

USER_DATA_KEY = "synthner"
"""``doc.user_data["synthner"]``: ``{"id": ..., "extra": {...}}`` of the document."""


def _blank(lang: str) -> Language:
    """``spacy.blank(lang)``: a tokenizer and vocabulary, no trained pipeline."""
    try:
        import spacy  # noqa: PLC0415 - optional dependency, imported only when a DocBin is read or written
    except ImportError:
        raise FormatError('spaCy DocBin needs spaCy: pip install "synthner[spacy]" (make install has it)') from None
    return spacy.blank(lang)


def to_docbin(documents: Iterable[Document], lang: str = "xx") -> bytes:
    """The DocBin bytes of ``documents``; each Doc's entities are exactly the documents' spans."""
    nlp = _blank(lang)
    from spacy.tokens import Doc, DocBin  # noqa: PLC0415

    docbin = DocBin(attrs=["ORTH", "ENT_IOB", "ENT_TYPE"], store_user_data=True)
    for document in documents:
        cuts = {e.start for e in document.entities} | {e.end for e in document.entities}
        words: list[str] = []
        spaces: list[bool] = []
        for token in nlp.make_doc(document.text):
            start, end = token.idx, token.idx + len(token.text)
            inner = sorted(c for c in cuts if start < c < end)
            bounds = [start, *inner, end]
            for i in range(len(bounds) - 1):
                words.append(document.text[bounds[i] : bounds[i + 1]])
                spaces.append(bool(token.whitespace_) and i == len(bounds) - 2)
        doc = Doc(nlp.vocab, words=words, spaces=spaces)
        ents = []
        for entity in document.entities:
            span = doc.char_span(entity.start, entity.end, label=entity.label, alignment_mode="strict")
            if span is None:  # an entity that starts or ends on a space that spaCy keeps as trailing whitespace
                raise FormatError(
                    f"document {document.id}: entity {entity.start}-{entity.end} ({entity.label}) starts or ends "
                    "on whitespace, which a spaCy token cannot"
                )
            ents.append(span)
        doc.ents = ents
        extra = document.model_extra or {}
        doc.user_data[USER_DATA_KEY] = {"id": document.id, "extra": extra}
        docbin.add(doc)
    data: bytes = docbin.to_bytes()
    return data


def from_docbin(data: bytes, source: str = "<docbin>", lang: str = "xx") -> list[Document]:
    """Documents from DocBin bytes; a Doc without our id gets ``<source stem>-<n>``."""
    vocab = _blank(lang).vocab
    from spacy.tokens import DocBin  # noqa: PLC0415

    try:
        docbin = DocBin(store_user_data=True).from_bytes(data)
    except Exception as exc:  # noqa: BLE001 - msgpack/zlib errors of a file that is not a DocBin
        raise FormatError(f"{source}: not a spaCy DocBin ({type(exc).__name__})") from None
    documents = []
    for number, doc in enumerate(docbin.get_docs(vocab), start=1):
        ours = doc.user_data.get(USER_DATA_KEY) if isinstance(doc.user_data, dict) else None
        ours = ours if isinstance(ours, dict) else {}
        entities = [DocumentEntity(start=e.start_char, end=e.end_char, label=e.label_) for e in doc.ents]
        extra = ours.get("extra")
        if not isinstance(extra, dict):
            extra = {}
        documents.append(
            Document(
                **extra,
                id=str(ours.get("id") or f"{Path(source).stem}-{number}"),
                text=doc.text,
                entities=entities,
            )
        )
    return documents
