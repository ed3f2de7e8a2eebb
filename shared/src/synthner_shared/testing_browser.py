"""Test support for pages tested in a real browser: an ASGI app on a real port of 127.0.0.1 in a background thread,
and Debian's headless Chromium driven by chromedriver (the NER API's page, the review page)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = "needs Debian's chromium and chromium-driver (make test installs them)"
"""The skip reason where either is missing (``pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, ...)``)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served_app(app: Any, ready: Callable[[], bool] = lambda: True, deadline_seconds: float = 30.0) -> Iterator[str]:
    """``app`` on a free port of 127.0.0.1 until the block ends; yields its base URL once it accepts requests and
    ``ready()`` holds."""
    import uvicorn  # noqa: PLC0415 - a test-only dependency

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + deadline_seconds
    while not (server.started and ready()):  # uvicorn offers no start event to wait on
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the app did not start on 127.0.0.1:{port} within {deadline_seconds:g} s")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def headless_chromium(profile: Path) -> WebDriver:
    """Debian's Chromium, headless, with a profile of its own and no background traffic."""
    from selenium import webdriver  # noqa: PLC0415 - a test-only dependency
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    if CHROMIUM is None or CHROMEDRIVER is None:
        raise RuntimeError(NO_BROWSER)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
