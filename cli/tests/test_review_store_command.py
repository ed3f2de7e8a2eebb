"""``synthner review queue|gold|stats`` over a real dataset store: the queue per dataset version, the reviewed set as
a gold file that ``synthner annotate score --gold`` reads, agreement figures in text and HTML, one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from synthner.main import main
from synthner_shared.auth import hash_key
from synthner_shared.documents import Document, DocumentEntity, read_documents
from synthner_shared.local_llm import free_port
from synthner_trainer.review.store import ReviewStore
from synthner_trainer.review.testing import annotated
from synthner_trainer.store import DatasetStore

TEXTS = ["Asthma and gout.", "No asthma today.", "Fever 🙂 only."]


def spans(text: str, *words: str) -> list[DocumentEntity]:
    return [DocumentEntity(start=text.index(w), end=text.index(w) + len(w), label="Disease") for w in words]


def store_folder(tmp_path: Path) -> Path:
    dataset = DatasetStore(tmp_path / "store.sqlite3")
    lexicon = [spans(TEXTS[0], "Asthma"), spans(TEXTS[1], "asthma"), []]
    encoder = [spans(TEXTS[0], "Asthma", "gout"), spans(TEXTS[1], "asthma"), spans(TEXTS[2], "Fever")]
    for text, lex, enc in zip(TEXTS, lexicon, encoder, strict=True):
        dataset.add(annotated(Document(id="x", text=text, entities=lex), ["Disease"], backend="lexicon"))
        dataset.add(annotated(Document(id="x", text=text, entities=enc), ["Disease"], backend="encoder", model="m1"))
    dataset.create_version()
    dataset.close()
    return tmp_path


def test_queue_review_gold_and_score_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = store_folder(tmp_path)
    assert main(["review", "queue", "--data-dir", str(folder), "--disagreement"]) == 0
    assert "2 notes queued for review (2 disagreement); 0 reviewed" in capsys.readouterr().out
    store = ReviewStore.open(folder / "store.sqlite3")
    for item in store.queue(store.dataset.versions()[-1].version):
        text = store.note(item.note_id).text
        store.save_review(item.note_id, "ann", spans(text, *(w for w in ("Asthma", "gout", "Fever") if w in text)))
    store.close()

    gold = tmp_path / "reviewed.jsonl"
    assert main(["review", "gold", "--data-dir", str(folder), str(gold)]) == 0
    documents = list(read_documents(gold))
    assert [d.mentions() for d in documents] == [["Asthma", "gout"], ["Fever"]]
    assert all((d.model_extra or {}).get("provenance") == "human" for d in documents)
    capsys.readouterr()

    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("asthma\n", encoding="utf-8")
    assert main(["annotate", "score", "--gold", str(gold), "--terms", f"Disease={lexicon}"]) == 0
    micro = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("micro"))
    assert micro.split()[1:4] == ["1.000", "0.333", "0.500"]

    report = tmp_path / "agreement.html"
    assert main(["review", "stats", "--data-dir", str(folder), "--html", str(report)]) == 0
    out = capsys.readouterr().out
    assert "encoder:m1 against the reviewed spans (2 documents):" in out
    assert "lexicon ~ encoder:m1" in out or "encoder:m1 ~ lexicon" in out
    assert "between reviewers: none share a document" in out
    assert "Cohen's kappa" in report.read_text(encoding="utf-8")


def test_bad_input_is_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", "queue", "--data-dir", str(tmp_path), "--share", "0.1"]) == 2
    assert capsys.readouterr().err.strip() == f"synthner review: {tmp_path}: no dataset store (store.sqlite3) there"
    folder = store_folder(tmp_path)
    assert main(["review", "queue", "--data-dir", str(folder)]) == 2
    assert "choose what to review" in capsys.readouterr().err
    assert main(["review", "queue", "--data-dir", str(folder), "--share", "2"]) == 2
    assert "share must be within 0..1" in capsys.readouterr().err
    assert main(["review", "queue", "--data-dir", str(folder), "--share", "1", "--version", "ds-9"]) == 2
    assert capsys.readouterr().err.strip() == "synthner review: no dataset version 'ds-9'"
    assert main(["review", "gold", "--data-dir", str(folder), str(tmp_path / "g.jsonl")]) == 2
    assert "no reviewed documents yet" in capsys.readouterr().err


def test_serve_runs_the_review_page_until_sigterm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = store_folder(tmp_path)
    assert main(["review", "queue", "--data-dir", str(folder), "--share", "1"]) == 0
    keys = tmp_path / "keys"
    assert main(["review", "serve", "--data-dir", str(folder), "--api-keys-file", str(keys)]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # a missing key file: one line
    keys.write_text(f"ann:user:{hash_key('serve-test-key')}\n", encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "synthner", "review", "serve", "--data-dir", str(folder)]
    command += ["--api-keys-file", str(keys), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "synthner review serve exited"
            assert time.monotonic() < deadline, "synthner review serve did not answer within 60 s"
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/v1/queue", headers={"X-API-Key": "serve-test-key"}, timeout=5
                )
                break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        assert answer.status_code == 200
        assert len(answer.json()["items"]) == 3
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the process ends by SIGTERM.
        assert server.wait(timeout=30) == -signal.SIGTERM
