"""The Label Studio review round trip on a gold set: do reviewed documents come back exactly as the reviewer left them?

The gold documents are turned into "machine" labels (spans dropped, shrunk or relabelled, with scores), exported
with ``synthner review export``, and a simulated reviewer applies the gold as corrections the way Label Studio's JSON
export records them: each task gets an older completed annotation (the machine's spans, unchanged), a newer cancelled
one (noise), and the newest completed one with the gold spans, in shuffled order; predictions are listed as ids, as
Label Studio exports them; a few extra tasks stay unreviewed. ``synthner review import`` reads them back, and every
reviewed document is compared with its gold document (id, text, spans) and its kept machine entities with the
machine labels. Last line: ``documents=<n> spans=<gold spans> exact=<share of documents equal to the gold>``.

    python benchmarks/review_roundtrip.py --gold ../shared/data/ncbi_disease/dev.jsonl [--astral]
    python benchmarks/review_roundtrip.py --gold ../shared/data/ncbi_disease/dev.jsonl --via http \
        [--annotations lexicon.jsonl ...] [--astral]

``--via http`` goes through synthner's own review page instead: the perturbed labels (and the documents of every
``--annotations`` file, as further annotators named by the file's stem) go into a fresh dataset store, ``synthner
review queue`` queues every note, the review app runs on 127.0.0.1 and a simulated reviewer ("ann") saves the gold as
corrections through the page's HTTP API (``GET /v1/queue``, ``GET /v1/notes/{id}``, ``PUT /v1/notes/{id}/review``);
a second reviewer ("bob") reviews a fifth of the notes first with one span dropped, so kappa between reviewers has
notes to count. ``synthner review gold`` reads the reviewed set back (compared with the gold by text and spans) and
``synthner review stats`` prints the agreement figures before the last line.

``--astral`` first puts emoji and astral CJK characters into every text (before the first span and after each
one), so every offset differs between code points and JavaScript's UTF-16 units.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from synthner.main import main as synthner
from synthner_shared.auth import hash_key
from synthner_shared.contracts.envelope import content_id
from synthner_shared.documents import Document, DocumentEntity, read_documents, write_documents
from synthner_trainer.review.app import ReviewSettings, create_app
from synthner_trainer.review.testing import annotated, served
from synthner_trainer.store import DatasetStore

UNREVIEWED = 5
HEADER = "🩺 患者 𠀋 👩\u200d⚕️ "


def with_astral_characters(document: Document) -> Document:
    """``document`` with non-BMP characters before and after every span (``--astral``): the text starts with
    emoji and an astral CJK character, and an emoji follows each span, so every offset past the first differs
    between code points and UTF-16 code units."""
    text, position = HEADER, 0
    entities: list[DocumentEntity] = []
    for entity in document.entities:
        text += document.text[position : entity.end] + "😷"
        start = len(HEADER) + entity.start + len(entities)
        entities.append(entity.model_copy(update={"start": start, "end": start + entity.end - entity.start}))
        position = entity.end
    text += document.text[position:]
    return document.model_copy(update={"text": text, "entities": entities})


def machine_labels(gold: Document, rng: random.Random) -> Document:
    """The gold document as an imperfect model would label it: some spans dropped, shrunk or relabelled."""
    entities: list[dict[str, Any]] = []
    for entity in gold.entities:
        roll = rng.random()
        if roll < 0.15:
            continue
        start, end, label = entity.start, entity.end, entity.label
        if roll < 0.3 and end - start > 1:
            end -= 1
        elif roll < 0.4:
            label = f"{label}-guess"
        entities.append({"start": start, "end": end, "label": label, "score": round(rng.uniform(0.3, 1.0), 3)})
    return Document.model_validate(
        {"id": gold.id, "text": gold.text, "entities": entities, "annotator": "perturbed-gold"}
    )


def region(text: str, entity: DocumentEntity | dict[str, Any], number: int) -> dict[str, Any]:
    item = entity.model_dump() if isinstance(entity, DocumentEntity) else entity
    start, end = item["start"], item["end"]
    return {
        "id": f"r{number}",
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "origin": "manual",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": [item["label"]]},
    }


def reviewed_task(task: dict[str, Any], gold: Document, number: int, rng: random.Random) -> dict[str, Any]:
    """``task`` as Label Studio's JSON export returns it after the reviewer corrected it to ``gold``."""
    text = task["data"]["text"]
    machine = task["predictions"][0]["result"]

    def annotation(ident: int, result: list[dict[str, Any]], day: int, *, cancelled: bool) -> dict[str, Any]:
        return {
            "id": ident,
            "result": result,
            "was_cancelled": cancelled,
            "ground_truth": False,
            "created_at": f"2024-06-0{day}T09:00:00.000000Z",
            "updated_at": f"2024-06-0{day}T09:30:00.000000Z",
            "lead_time": round(rng.uniform(5, 90), 3),
            "task": number,
            "completed_by": 1 + day,
        }

    annotations = [
        annotation(3 * number, machine, 1, cancelled=False),
        annotation(3 * number + 1, [], 3, cancelled=True),
        annotation(3 * number + 2, [region(text, e, n) for n, e in enumerate(gold.entities)], 2, cancelled=False),
    ]
    rng.shuffle(annotations)
    return {"id": number, "data": task["data"], "annotations": annotations, "predictions": [10_000 + number]}


def run(gold_path: Path, seed: int, *, astral: bool = False) -> tuple[int, int, float]:
    rng = random.Random(seed)
    gold = list(read_documents(gold_path))
    if astral:
        gold = [with_astral_characters(document) for document in gold]
    machine = [machine_labels(document, rng) for document in gold]
    changed = sum(
        [(e.start, e.end, e.label) for e in m.entities] != [(e.start, e.end, e.label) for e in g.entities]
        for m, g in zip(machine, gold, strict=True)
    )
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_documents(work / "machine.jsonl", machine)
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            if synthner(["review", "export", str(work / "machine.jsonl"), str(work / "tasks.json")]) != 0:
                raise SystemExit("review export failed")
        tasks = json.loads((work / "tasks.json").read_text(encoding="utf-8"))
        if any("annotations" in task for task in tasks):
            raise SystemExit("the export wrote annotations")
        by_id = {document.id: document for document in gold}
        done = [reviewed_task(t, by_id[t["data"]["id"]], n, rng) for n, t in enumerate(tasks, start=1)]
        for extra in range(UNREVIEWED):  # tasks nobody reviewed: skipped, not imported
            task = tasks[extra % len(tasks)]
            waiting = {**task["data"], "id": f"{task['data']['id']}-unreviewed"}
            done.append({"id": len(done) + 1, "data": waiting, "annotations": [], "predictions": [1]})
        (work / "export.json").write_text(json.dumps(done, ensure_ascii=False), encoding="utf-8")
        with contextlib.redirect_stdout(quiet):
            if synthner(["review", "import", str(work / "export.json"), str(work / "reviewed.jsonl")]) != 0:
                raise SystemExit("review import failed")
        print(quiet.getvalue().strip().splitlines()[-1].replace(f"{work}{os.sep}", ""))
        reviewed = {document.id: document for document in read_documents(work / "reviewed.jsonl")}
    if len(reviewed) != len(gold):
        print(f"reviewed {len(reviewed)} documents for {len(gold)} gold documents", file=sys.stderr)
    exact = 0
    kept = 0
    for g, m in zip(gold, machine, strict=True):
        r = reviewed.get(g.id)
        if r is None:
            continue
        spans = [(e.start, e.end, e.label) for e in r.entities]
        if r.text == g.text and spans == [(e.start, e.end, e.label) for e in g.entities]:
            exact += 1
        kept += (r.model_extra or {}).get("machine_entities") == [e.model_dump(mode="json") for e in m.entities]
    print(f"machine labels differing from the gold: {changed} of {len(gold)} documents")
    print(f"machine entities kept beside the reviewed ones: {kept} of {len(gold)} documents")
    return len(gold), sum(len(d.entities) for d in gold), exact / len(gold) if gold else 0.0


def review_over_http(folder: Path, gold: list[Document], rng: random.Random) -> int:
    """The simulated reviewers: every queued note gets the gold's spans through the review API (bob first on some
    notes, one span short); returns the number of saves."""
    keys = {"ann": "benchmark-reviewer-ann", "bob": "benchmark-reviewer-bob"}
    (folder / "keys").write_text("".join(f"{n}:user:{hash_key(k)}\n" for n, k in keys.items()), encoding="utf-8")
    by_text = {document.text: document for document in gold}
    saves = 0
    with (
        served(create_app(ReviewSettings(data_dir=folder, api_keys_file=folder / "keys"))) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        for item in client.get("/v1/queue", headers={"X-API-Key": keys["ann"]}).raise_for_status().json()["items"]:
            note = client.get(f"/v1/notes/{item['note_id']}", headers={"X-API-Key": keys["ann"]}).raise_for_status()
            spans = [e.model_dump(include={"start", "end", "label"}) for e in by_text[note.json()["text"]].entities]
            reviews = [("bob", spans[1:]), ("ann", spans)] if spans and rng.random() < 0.2 else [("ann", spans)]
            for reviewer, entities in reviews:
                client.put(
                    f"/v1/notes/{item['note_id']}/review",
                    headers={"Authorization": f"Bearer {keys[reviewer]}"},
                    json={"entities": entities},
                ).raise_for_status()
                saves += 1
    return saves


def run_http(gold_path: Path, seed: int, annotations: list[Path], *, astral: bool = False) -> tuple[int, int, float]:
    """The round trip through the dataset store and the review page's HTTP API (``--via http``)."""
    rng = random.Random(seed)
    gold = list(read_documents(gold_path))
    if astral:
        gold = [with_astral_characters(document) for document in gold]
    machine = [machine_labels(document, rng) for document in gold]
    others = {path.stem: list(read_documents(path)) for path in annotations}
    everything = [*gold, *machine, *(d for documents in others.values() for d in documents)]
    labels = sorted({e.label for d in everything for e in d.entities})
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        store = DatasetStore(folder / "store.sqlite3")
        for document in machine:
            store.add(annotated(document, labels, backend="perturbed-gold"))
        texts = {document.text for document in gold}
        for stem, documents in others.items():
            for document in documents:
                if document.text in texts:  # the same note, as another annotator labelled it
                    store.add(annotated(document, labels, backend=stem))
        store.create_version()
        store.close()
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            if synthner(["review", "queue", "--data-dir", str(folder), "--share", "1"]) != 0:
                raise SystemExit("review queue failed")
        saves = review_over_http(folder, gold, rng)
        with contextlib.redirect_stdout(quiet):
            if synthner(["review", "gold", "--data-dir", str(folder), str(folder / "reviewed.jsonl")]) != 0:
                raise SystemExit("review gold failed")
        reviewed = {document.id: document for document in read_documents(folder / "reviewed.jsonl")}
        stats = io.StringIO()
        with contextlib.redirect_stdout(stats):
            if synthner(["review", "stats", "--data-dir", str(folder)]) != 0:
                raise SystemExit("review stats failed")
    print(f"{saves} reviews saved through the review API; {len(reviewed)} reviewed documents read back")
    print(stats.getvalue().rstrip())
    exact = 0
    for g in gold:
        r = reviewed.get(content_id(g.text))
        if r is None:
            continue
        spans = [(e.start, e.end, e.label) for e in r.entities]
        kept = (r.model_extra or {}).get("provenance") == "human"
        exact += kept and r.text == g.text and spans == [(e.start, e.end, e.label) for e in g.entities]
    return len(gold), sum(len(d.entities) for d in gold), exact / len(gold) if gold else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, required=True, help="gold documents (JSONL)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--astral", action="store_true", help="put emoji and astral CJK characters around every span")
    parser.add_argument(
        "--via",
        choices=["label-studio", "http"],
        default="label-studio",
        help="Label Studio's export format (default) or synthner's own review page's HTTP API",
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        action="append",
        default=[],
        help="--via http: another annotator's documents (JSONL) of the same notes, for the agreement figures",
    )
    args = parser.parse_args()
    if args.via == "http":
        documents, spans, exact = run_http(args.gold, args.seed, args.annotations, astral=args.astral)
    else:
        documents, spans, exact = run(args.gold, args.seed, astral=args.astral)
    print(f"documents={documents} spans={spans} exact={exact:.4f}")


if __name__ == "__main__":
    main()
