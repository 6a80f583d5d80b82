"""The Chat tab in the real app and a real browser: a reply streams in, compare fills two panes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningApp, running_app

pytestmark = pytest.mark.slow


@pytest.fixture
def app(default_model_path: Path, tmp_path: Path) -> Iterator[RunningApp]:
    """An app of its own: after the security tests' many refused events on the shared app, a
    chat stream there once stopped updating the page (see docs/reliability.md, known limits)."""
    with running_app(tmp_path) as running:
        yield running


RECORD_REPLY_FRAMES = """() => {
  window.replyFrames = [];
  const record = () => {
    const bots = document.querySelectorAll("#chat-a [data-testid='bot']");
    const text = bots.length ? bots[bots.length - 1].innerText.trim() : "";
    if (text && window.replyFrames[window.replyFrames.length - 1] !== text) {
      window.replyFrames.push(text);
    }
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, characterData: true,
  });
}"""


def test_chat_tab_streams_a_reply_and_compares(
    app: RunningApp, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app.url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Chat", exact=True).click(timeout=60_000)
        page.locator("#chat-backend").get_by_text("transformers", exact=True).click()
        box = page.locator("#chat-input textarea")
        # Every text the reply shows, recorded by the page itself as it draws it: polling from
        # here missed the frames of a short answer while the other worker loaded the machine.
        page.evaluate(RECORD_REPLY_FRAMES)
        box.fill("Name three flowers.")
        box.press("Enter")

        stats = page.locator("#chat-stats-a")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "tok/s" not in stats.inner_text():
            time.sleep(0.1)
        snapshots: list[str] = page.evaluate("() => window.replyFrames")
        assert "tok/s" in stats.inner_text(), (
            page.locator("#chat-status").inner_text(),
            stats.inner_text(),
            snapshots[-3:],
            app.log_tail(),
        )
        assert "transformers" in stats.inner_text()
        # The reply grew on screen while streaming: a part of it, then more.
        assert len(snapshots) >= 2, snapshots
        assert len(snapshots[0]) < len(snapshots[-1])  # markdown may re-flow between frames

        page.locator("#chat-compare input").check()
        page.locator("#chat-b").wait_for(state="visible", timeout=10_000)
        box.fill("What is the capital of France?")
        box.press("Enter")
        page.wait_for_function(
            "() => ['#chat-stats-a', '#chat-stats-b'].every("
            "s => (document.querySelector(s)?.innerText || '').includes('tok/s'))",
            timeout=180_000,
        )
        assert page.locator("#chat-b [data-testid='bot']").count() == 1
        assert page.locator("#chat-a [data-testid='bot']").count() == 2
        page.screenshot(path=str(tmp_path / "chat.png"))
    finally:
        page.close()
