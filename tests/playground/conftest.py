"""A real headless Chromium (Debian's, driven by Playwright) against a live ltxserve.

Requirements: ``apt-get install chromium`` and ``pip install playwright`` (the PyPI package
only; ``playwright install`` is never run: the browser is the system one). Without
/usr/bin/chromium the browser tests are skipped; without the playwright package they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import live  # noqa: F401  (the live server fixture, shared)

CHROMIUM = Path(os.environ.get("LTXSERVE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Autoplay rules never matter here, and media must load without a user gesture.
    "--autoplay-policy=no-user-gesture-required",
]
VIEWPORT = {"width": 1200, "height": 800}
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "playground"
README_SHOT = ROOT / "docs" / "playground.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium to run the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # a missing dev dependency must not pass as a skip
        pytest.fail("the browser tests need the playwright package: pip install playwright")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageProbe:
    """A page plus what it did: console errors (CSP violations land there) and request URLs."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []  # uncaught exceptions in the page's scripts
        self.request_urls: list[str] = []
        self.sent: list[str] = []  # WebSocket frames the page sent
        self.received: list[str] = []  # WebSocket frames it received
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", lambda request: self.request_urls.append(request.url))
        page.on("websocket", self._websocket)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _websocket(self, ws: Any) -> None:
        ws.on("framesent", lambda payload: self.sent.append(str(payload)))
        ws.on("framereceived", lambda payload: self.received.append(str(payload)))

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def probe(browser: Any) -> Iterator[PageProbe]:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(30_000)
    probe = PageProbe(page)
    yield probe
    context.close()
    # CSP violations, failed loads and the page's own errors all land on the console.
    assert not probe.console_errors, f"errors on the page's console: {probe.console_errors}"
    assert not probe.page_errors, f"uncaught errors in the page: {probe.page_errors}"


def save_readme_shot(source: Path) -> None:
    """Write a screenshot to docs/playground.png for the README, as a 256-colour PNG: the page is
    flat UI colours, so this keeps it crisp at a fraction of the size (the tiny model's noise
    frame is most of what is left).

    Only when the file is missing or LTXSERVE_UPDATE_DOCS=1: every run makes a new seed and
    taskUUID, and a binary that changes on each test run would churn the repository."""
    from PIL import Image

    if README_SHOT.exists() and os.environ.get("LTXSERVE_UPDATE_DOCS") != "1":
        return
    README_SHOT.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as shot:
        small = shot.convert("RGB").quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
        small.save(README_SHOT, "PNG", optimize=True)
