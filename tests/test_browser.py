"""The app in a real browser: Debian's Chromium driven by Playwright shows the four tabs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import RunningApp


def test_browser_shows_the_four_tabs(app: RunningApp, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(app.url)  # never "networkidle": tab timers keep an event stream open
        tabs = page.get_by_role("tab")
        tabs.first.wait_for(timeout=30_000)
        names = [name.strip() for name in tabs.all_inner_texts()]
        for expected in ("Data", "Fine-tune", "Chat", "Carbon"):
            assert expected in names, names
        assert "Model Garden" in page.title()
        page.get_by_role("tab", name="Carbon").click()
        page.locator("#carbon-totals").wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "carbon.png"))
    finally:
        page.close()
