"""The review page in a real headless Chromium: reject a span, select text, move a span's boundaries, change a label,
add a missed entity, save; the store then holds the corrected spans at the right code-point offsets (an emoji before
the spans makes JavaScript's UTF-16 indices differ from them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from synthner_shared.auth import hash_key
from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.testing_browser import CHROMEDRIVER, CHROMIUM, NO_BROWSER, headless_chromium
from synthner_trainer.review.app import ReviewSettings, create_app
from synthner_trainer.review.queue import QueuePolicy
from synthner_trainer.review.store import ReviewStore
from synthner_trainer.review.testing import annotated, served
from synthner_trainer.store import DatasetStore

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=NO_BROWSER)
KEY = "review-browser-key"
TEXT = "🩺👩‍⚕️ Patient with cystic fibrosis, 𠀋 asthma and no fever."
LABELS = ["Disease", "Finding"]
SCREENSHOT_ENV = "SYNTHNER_REVIEW_SCREENSHOT"  # where to keep a screenshot of the page after the run (optional)

# Selects [start, end) of the note, in UTF-16 units of its text, across the marks the page drew.
SELECT = """
const [start, end] = arguments;
const box = document.getElementById('text');
const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
let seen = 0, range = document.createRange(), node;
while ((node = walker.nextNode())) {
  const length = node.data.length;
  if (seen <= start && start <= seen + length) range.setStart(node, start - seen);
  if (seen <= end && end <= seen + length) { range.setEnd(node, end - seen); break; }
  seen += length;
}
const selection = window.getSelection();
selection.removeAllRanges();
selection.addRange(range);
"""


def utf16(text: str, code_points: int) -> int:
    return len(text[:code_points].encode("utf-16-le")) // 2


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[str, ReviewStore, str]]:
    (tmp_path / "keys").write_text(f"dr.ann:user:{hash_key(KEY)}\n", encoding="utf-8")
    dataset = DatasetStore(tmp_path / "store.sqlite3")
    cystic, asthma = TEXT.index("cystic"), TEXT.index("asthma")
    machine = Document(
        id="n",
        text=TEXT,
        entities=[
            DocumentEntity(start=TEXT.index("Patient"), end=TEXT.index("Patient") + 7, label="Finding"),  # wrong
            DocumentEntity(start=cystic, end=cystic + 6, label="Disease"),  # boundary too short
            DocumentEntity(start=asthma, end=asthma + 6, label="Finding"),  # wrong label
        ],
    )
    message = annotated(machine, LABELS, backend="encoder", model="minilm-v3")
    dataset.add(message)
    store = ReviewStore(dataset, owns_dataset=True)
    store.enqueue(dataset.create_version().version, QueuePolicy(share=1.0))
    settings = ReviewSettings(data_dir=tmp_path, api_keys_file=tmp_path / "keys", labels=LABELS)
    with served(create_app(settings, store)) as url:
        yield url, store, message.note_id
    store.close()


def test_a_reviewer_corrects_spans_with_the_keyboard_and_the_store_holds_them(
    page: tuple[str, ReviewStore, str], tmp_path: Path
) -> None:
    url, store, note_id = page
    driver = headless_chromium(tmp_path / "profile")
    wait = WebDriverWait(driver, 30)
    try:
        driver.get(url + "/")
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.ID, "load").click()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "3 spans"))
        marks = driver.find_elements(By.CSS_SELECTOR, "#text mark")
        assert [(m.text, m.get_attribute("data-label")) for m in marks] == [
            ("Patient", "Finding"),
            ("cystic", "Disease"),
            ("asthma", "Finding"),
        ]
        assert "encoder:minilm-v3" in driver.find_element(By.ID, "who").text
        body = driver.find_element(By.TAG_NAME, "body")
        # v shows the annotator's own spans (read-only), v again is back to the review.
        body.send_keys("v")
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "layer"), "showing encoder:minilm-v3"))
        body.send_keys("v")
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "layer"), "your review"))
        # The first span is selected: reject it (x); "cystic" is selected next.
        body.send_keys("x")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#text mark")) == 2)

        # The first span is selected: select "cystic fibrosis" and move its boundaries there (b).
        cystic = TEXT.index("cystic")
        driver.execute_script(SELECT, utf16(TEXT, cystic), utf16(TEXT, cystic + len("cystic fibrosis")))
        body.send_keys("b")
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "span moved"))
        # Next span (j), change its label to the first label (1).
        body.send_keys("j")
        body.send_keys("1")
        # A missed entity: select "fever" (with a stray space before it) and add it (e), then label it Finding (2).
        fever = TEXT.index("fever")
        driver.execute_script(SELECT, utf16(TEXT, fever - 1), utf16(TEXT, fever + len("fever")))
        body.send_keys("e")
        body.send_keys("2")
        body.send_keys("s")
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "saved 3 spans as dr.ann"))
        driver.get_screenshot_as_file(os.environ.get(SCREENSHOT_ENV, str(tmp_path / "review-page.png")))
    finally:
        driver.quit()

    (gold,) = store.gold()
    asthma = TEXT.index("asthma")
    assert [(e.start, e.end, e.label) for e in gold.entities] == [
        (cystic, cystic + len("cystic fibrosis"), "Disease"),
        (asthma, asthma + len("asthma"), "Disease"),
        (fever, fever + len("fever"), "Finding"),
    ]
    assert gold.mentions() == ["cystic fibrosis", "asthma", "fever"]
    assert gold.model_extra is not None
    assert (gold.model_extra["reviewer"], gold.model_extra["provenance"]) == ("dr.ann", "human")
    machine = store.dataset.documents(store.dataset.versions()[-1].version)[0]
    assert machine.mentions() == ["Patient", "cystic", "asthma"]  # the machine annotation, never overwritten
    assert [e.label for e in machine.entities] == ["Finding", "Disease", "Finding"]
    assert note_id == gold.id
