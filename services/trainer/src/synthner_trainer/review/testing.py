"""Support for tests and the review benchmark: documents as annotators' messages, and the review app on a real port
of 127.0.0.1 in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from synthner_shared.contracts import AlignmentStats, AnnotatorRecord, DocumentAnnotated, EntitySpan, PromptRef
from synthner_shared.contracts.envelope import content_id
from synthner_shared.documents import Document


def annotated(
    document: Document,
    labels: Sequence[str],
    backend: str = "lexicon",
    model: str | None = None,
    prompt: tuple[str, str] | None = None,
) -> DocumentAnnotated:
    """``document`` as the message an annotator would send (note id: the text's hash; scores kept)."""
    entities = [
        EntitySpan(start=e.start, end=e.end, label=e.label, score=(e.model_extra or {}).get("score"))
        for e in document.entities
    ]
    return DocumentAnnotated(
        correlation_id="review-tests",
        producer="tests",
        note_id=content_id(document.text),
        text=document.text,
        language="en",
        provenance="synthetic",
        labels=list(labels),
        entities=entities,
        annotator=AnnotatorRecord(
            backend=backend, model=model, prompt=PromptRef(name=prompt[0], version=prompt[1]) if prompt else None
        ),
        alignment=AlignmentStats(mentions_found=len(entities), mentions_aligned=len(entities), mentions_dropped=0),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(app: FastAPI, deadline_seconds: float = 30.0) -> Iterator[str]:
    """``app`` on a free port of 127.0.0.1 until the block ends; yields its base URL once it accepts requests."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + deadline_seconds
    while not server.started:  # uvicorn offers no start event to wait on
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the review app did not start on 127.0.0.1:{port}")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
