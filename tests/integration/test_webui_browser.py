"""The web UI in real headless Chromium (Debian's), checked with axe-core (issue 6).

Playwright drives /usr/bin/chromium; it never downloads a browser of its own. The screenshot
of the page is kept in test-artifacts/webui/ for a person to look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.webui_support import WebUi, webui

playwright = pytest.importorskip("playwright.sync_api")
axe_module = pytest.importorskip("axe_playwright_python.sync_playwright")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "webui"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
GIB = 2**30
__all__ = ["webui"]


@pytest.fixture
def page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/dev.sh installs it)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1000, "height": 1400})
        finally:
            browser.close()


def serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the current page."""
    results = axe_module.Axe().run(page)
    found = results.response["violations"]
    return [f"{v['id']}: {v['help']}" for v in found if v.get("impact") in ("serious", "critical")]


def entitlement(ui: WebUi) -> dict[str, Any]:
    """The daemon's own figures, through `rms status --json` (Playwright holds this thread's
    event loop, so no asyncio here)."""
    section: dict[str, Any] = json.loads(ui.daemon.rms("status", "--json").stdout)["entitlement"]
    return section


def test_the_page_is_live_accessible_and_changes_the_contribution(webui: WebUi, page: Any) -> None:
    page.goto(webui.url)
    assert page.url.rstrip("/") == webui.base
    live = entitlement(webui)
    assert live["entitlement"]["storage_bytes"] == 4 * GIB
    table = page.locator("#entitlement table").inner_text()
    assert "20.0 GiB" in table and "4.0 GiB" in table and "100.00 %" in table
    assert page.get_by_role("img", name="Storage: what you offer and what you may use").count() == 1
    assert serious(page) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)

    page.get_by_label("Storage to contribute").fill("30 GiB")
    page.get_by_role("button", name="Show the new entitlement").click()
    after = page.locator("table").inner_text()
    assert "4.0 GiB" in after and "6.0 GiB" in after
    assert entitlement(webui)["contribution"]["storage_bytes"] == 20 * GIB  # not applied yet
    assert serious(page) == []
    page.screenshot(path=str(ARTIFACTS / "preview.png"), full_page=True)

    page.get_by_role("button", name="Apply this contribution").click()
    assert page.get_by_role("status").inner_text() == "Your contribution was changed."
    assert "30.0 GiB" in page.locator("#entitlement table").inner_text()
    now = entitlement(webui)
    assert now["contribution"]["storage_bytes"] == 30 * GIB
    assert now["entitlement"]["storage_bytes"] == 6 * GIB


def test_a_bad_size_is_explained_next_to_the_field(webui: WebUi, page: Any) -> None:
    page.goto(webui.url)
    page.get_by_label("Storage to contribute").fill("lots")
    page.get_by_role("button", name="Show the new entitlement").click()
    assert "is not a size" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Storage to contribute").get_attribute("aria-invalid") == "true"
    assert serious(page) == []
    assert entitlement(webui)["contribution"]["storage_bytes"] == 20 * GIB
