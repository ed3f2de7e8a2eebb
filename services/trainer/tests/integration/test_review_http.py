"""The review service over real HTTP on 127.0.0.1: API keys as the NER API, one-line client errors without note
text, a saved review in the store at the offsets sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from synthner_shared.auth import hash_key
from synthner_shared.documents import Document, DocumentEntity
from synthner_trainer.review.app import ReviewSettings, create_app
from synthner_trainer.review.queue import QueuePolicy
from synthner_trainer.review.store import ReviewStore
from synthner_trainer.review.testing import annotated, served
from synthner_trainer.store import DatasetStore

KEY = "review-test-key-ann"
TEXT = "Лихорадка 🙂 и астма. " * 200 + "Final: asthma."  # long, non-Latin, an astral character


@pytest.fixture
def review(tmp_path: Path) -> Iterator[tuple[str, ReviewStore, str]]:
    (tmp_path / "keys").write_text(f"ann:user:{hash_key(KEY)}\n", encoding="utf-8")
    dataset = DatasetStore(tmp_path / "store.sqlite3")
    start = TEXT.rindex("asthma")
    machine = Document(id="n", text=TEXT, entities=[DocumentEntity(start=start, end=start + 4, label="Disease")])
    message = annotated(machine, ["Disease"])
    dataset.add(message)
    store = ReviewStore(dataset, owns_dataset=True)
    store.enqueue(dataset.create_version().version, QueuePolicy(share=1.0))
    settings = ReviewSettings(data_dir=tmp_path, api_keys_file=tmp_path / "keys")
    with served(create_app(settings, store)) as url:
        yield url, store, message.note_id
    store.close()


def test_a_review_saved_over_http_is_stored_with_the_key_name_as_reviewer(review: tuple[str, ReviewStore, str]) -> None:
    url, store, note_id = review
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        queue = client.get("/v1/queue", headers=auth).json()
        assert [(i["note_id"], i["reason"]) for i in queue["items"]] == [(note_id, "sample")]
        assert queue["labels"] == ["Disease"]
        note = client.get(f"/v1/notes/{note_id}", headers={"X-API-Key": KEY}).json()
        assert note["text"] == TEXT
        assert note["annotations"][0]["annotator"] == "lexicon"
        start = TEXT.rindex("asthma")
        saved = client.put(
            f"/v1/notes/{note_id}/review",
            headers=auth,
            json={"entities": [{"start": start, "end": start + 6, "label": "Disease"}]},
        )
        assert saved.status_code == 200
        assert (saved.json()["reviewer"], saved.json()["provenance"]) == ("ann", "human")
        page = client.get("/")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert 'src="http' not in page.text
        assert 'href="http' not in page.text
    (gold,) = store.gold()
    assert gold.mentions() == ["asthma"]
    assert store.dataset.documents(store.dataset.versions()[-1].version)[0].mentions() == ["asth"]


def test_bad_requests_get_one_line_errors_without_note_text(review: tuple[str, ReviewStore, str]) -> None:
    url, _store, note_id = review
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/v1/queue").status_code == 401
        assert client.get("/v1/queue", headers={"X-API-Key": "wrong"}).json() == {"detail": "invalid API key"}
        beyond = client.put(
            f"/v1/notes/{note_id}/review",
            headers={"X-API-Key": KEY},
            json={"entities": [{"start": 5, "end": len(TEXT) + 5, "label": "Disease"}]},
        )
        assert beyond.status_code == 422
        detail = beyond.json()["detail"]
        assert "\n" not in detail
        assert "астма" not in detail
        assert "not a non-empty span inside the text" in detail
        missing = client.get("/v1/notes/" + "0" * 64, headers={"X-API-Key": KEY})
        assert missing.status_code == 404
        assert client.get("/v1/queue?version=ds-9999", headers={"X-API-Key": KEY}).status_code == 404
