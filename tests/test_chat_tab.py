"""The Chat tab in the real app and a real browser: a reply streams in, compare fills two panes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed"),
]


APP_LOGS: list[Path] = []


def app_log_tail() -> str:
    """The end of the app's own log, for failure messages."""
    return APP_LOGS[-1].read_text(errors="replace")[-3000:] if APP_LOGS else ""


@pytest.fixture(scope="module")
def app_url(default_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = tmp_path_factory.mktemp("chat-app") / "app.log"
    APP_LOGS.append(log)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        assert process.poll() is None, log.read_text()[-3000:]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_chat_tab_streams_a_reply_and_compares(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Chat", exact=True).click(timeout=60_000)
            page.locator("#chat-backend").get_by_text("transformers", exact=True).click()
            box = page.locator("#chat-input textarea")
            box.fill("Name three flowers.")
            box.press("Enter")

            bot = page.locator("#chat-a [data-testid='bot']").last
            stats = page.locator("#chat-stats-a")
            snapshots: list[str] = []
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if bot.count():
                    text = bot.inner_text().strip()
                    if text and (not snapshots or text != snapshots[-1]):
                        snapshots.append(text)
                if "tok/s" in stats.inner_text():
                    break
                time.sleep(0.05)
            assert "tok/s" in stats.inner_text(), (
                page.locator("#chat-status").inner_text(),
                stats.inner_text(),
                snapshots[-3:],
                app_log_tail(),
            )
            assert "transformers" in stats.inner_text()
            assert len(snapshots) >= 3, snapshots  # the reply grew on screen while streaming
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
            browser.close()
