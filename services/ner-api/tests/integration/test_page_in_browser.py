"""The page for people in headless Chromium: type a note, press the button, see the entities highlighted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ner_api_support import USER_KEY, load_lexicon_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from synthner_ner_api.app import create_app
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.testing_browser import CHROMEDRIVER, CHROMIUM, NO_BROWSER, headless_chromium, served_app

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=NO_BROWSER)


@pytest.fixture
def served(settings: NerApiSettings) -> Iterator[str]:
    """The app on a real HTTP port in a background thread, until the test ends."""
    registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
    with served_app(create_app(settings, registry), ready=lambda: registry.current is not None) as url:
        yield url


def test_a_pasted_note_comes_back_with_highlighted_entities(served: str, tmp_path: Path) -> None:
    driver = headless_chromium(tmp_path / "profile")
    try:
        driver.get(served + "/")
        driver.find_element(By.ID, "key").send_keys(USER_KEY)
        driver.find_element(By.ID, "note").send_keys("Señora 🙂 with diabetes and asthma.")
        driver.find_element(By.ID, "run").click()
        WebDriverWait(driver, 30).until(
            expected_conditions.text_to_be_present_in_element((By.ID, "status"), "entities")
        )
        marks = driver.find_elements(By.CSS_SELECTOR, "#result mark")
        assert [m.get_attribute("data-label") for m in marks] == ["Disease", "Disease"]
        assert [m.text.replace("Disease", "").strip() for m in marks] == ["diabetes", "asthma"]
        assert driver.find_element(By.ID, "result").text.startswith("Señora 🙂 with")
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
