"""The main job until the full `synthner demo` lands: a gold document set through the real message path.

Every document of a gold JSONL file is published as a ``DocumentAnnotated`` message (the trainer's input) through
RabbitMQ with confirms; a consumer service on the trainer's queue stores each one it receives; at the end the stored
set is written as JSONL and compared with the input, document by document and span by span. This exercises the
contracts, the topology, confirmed publishing and the consumer runner exactly as the services use them.

    python scripts/demo.py [--gold FILE] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from synthner_shared.contracts import (
    AlignmentStats,
    AnnotatorRecord,
    DocumentAnnotated,
    EntitySpan,
    Envelope,
    content_id,
)
from synthner_shared.documents import Document, read_documents, write_documents
from synthner_shared.messaging import TRAINER, Broker, BrokerSettings, Consumer, Service
from synthner_shared.testing import running_service

DEFAULT_GOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ncbi_disease" / "dev.jsonl"


def as_message(document: Document, labels: list[str], job_id: str) -> DocumentAnnotated:
    return DocumentAnnotated(
        correlation_id=job_id,
        producer="demo",
        note_id=content_id(document.text),
        text=document.text,
        language="en",
        provenance="real",
        labels=labels,
        entities=[EntitySpan(start=e.start, end=e.end, label=e.label, source="gold") for e in document.entities],
        annotator=AnnotatorRecord(backend="gold"),
        alignment=AlignmentStats(
            mentions_found=len(document.entities), mentions_aligned=len(document.entities), mentions_dropped=0
        ),
    )


async def run(gold: Path, workdir: Path) -> int:
    documents = list(read_documents(gold))
    ids_by_note = {content_id(d.text): d.id for d in documents}
    labels = sorted({e.label for d in documents for e in d.entities})
    job_id = f"demo-{uuid.uuid4().hex[:8]}"
    settings = BrokerSettings(namespace=f"demo-{uuid.uuid4().hex[:8]}")
    print(f"gold set: {gold} ({len(documents)} documents, labels {labels})")
    print(f"broker:   {settings.redacted_url} (namespace {settings.namespace})")

    stored: dict[str, DocumentAnnotated] = {}
    all_stored = asyncio.Event()

    async def store(message: DocumentAnnotated) -> Sequence[Envelope]:
        stored[message.note_id] = message
        if len(stored) == len(ids_by_note):
            all_stored.set()
        return []

    started = time.perf_counter()
    service = Service(settings, "demo-store", [Consumer(TRAINER, (DocumentAnnotated,), store, lambda m: m.note_id)])
    async with running_service(service), Broker(settings, "demo-publisher") as broker:
        await broker.publisher.publish_many(as_message(d, labels, job_id) for d in documents)
        print(f"published {len(documents)} messages with confirms", flush=True)
        await asyncio.wait_for(all_stored.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    async with Broker(settings, "demo-cleanup") as broker:
        await broker.topology.delete(broker.publish_channel)

    received = [
        Document(
            id=ids_by_note[m.note_id],
            text=m.text,
            entities=[{"start": e.start, "end": e.end, "label": e.label} for e in m.entities],  # type: ignore[misc]
        )
        for m in stored.values()
    ]
    order = {d.id: i for i, d in enumerate(documents)}
    received.sort(key=lambda d: order[d.id])
    out = workdir / "roundtrip.jsonl"
    write_documents(out, received)
    identical = [d.model_dump() for d in documents] == [d.model_dump() for d in received]
    spans = sum(len(d.entities) for d in received)
    print(f"stored {len(received)} documents with {spans} spans in {elapsed:.1f}s -> {out}")
    print(f"round trip identical to the gold file: {identical}")
    print(f"documents={len(received)} spans={spans} identical={str(identical).lower()} seconds={elapsed:.1f}")
    return 0 if identical else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help="gold JSONL file (default: NCBI-disease dev)")
    parser.add_argument("--workdir", type=Path, default=Path("out"), help="where artifacts go (default: out/)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.gold, args.workdir))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
