"""The Label Studio review round trip on a gold set: do reviewed documents come back exactly as the reviewer left them?

The gold documents are turned into "machine" labels (spans dropped, shrunk or relabelled, with scores), exported
with ``synthner review export``, and a simulated reviewer applies the gold as corrections the way Label Studio's JSON
export records them: each task gets an older completed annotation (the machine's spans, unchanged), a newer cancelled
one (noise), and the newest completed one with the gold spans, in shuffled order; predictions are listed as ids, as
Label Studio exports them; a few extra tasks stay unreviewed. ``synthner review import`` reads them back, and every
reviewed document is compared with its gold document (id, text, spans) and its kept machine entities with the
machine labels. Last line: ``documents=<n> spans=<gold spans> exact=<share of documents equal to the gold>``.

    python benchmarks/review_roundtrip.py --gold ../shared/data/ncbi_disease/dev.jsonl [--astral]

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

from synthner.main import main as synthner
from synthner_shared.documents import Document, DocumentEntity, read_documents, write_documents

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, required=True, help="gold documents (JSONL)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--astral", action="store_true", help="put emoji and astral CJK characters around every span")
    args = parser.parse_args()
    documents, spans, exact = run(args.gold, args.seed, astral=args.astral)
    print(f"documents={documents} spans={spans} exact={exact:.4f}")


if __name__ == "__main__":
    main()
