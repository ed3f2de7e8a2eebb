"""The page for people in headless Chromium: type a note, press the button, see the entities highlighted."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from ner_api_support import USER_KEY, load_lexicon_model
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from synthner_ner_api.app import create_app
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromium-driver (make test installs)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(settings: NerApiSettings) -> Iterator[str]:
    """The app on a real HTTP port in a background thread, until the test ends."""
    registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
    port = free_port()
    app = create_app(settings, registry)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and registry.current is not None):  # uvicorn offers no start event to wait on
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        assert thread.is_alive(), "the server thread died"
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_pasted_note_comes_back_with_highlighted_entities(served: str, tmp_path: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=str(CHROMEDRIVER)), options=options)
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
