"""Text is text: HTML in a dataset row or a chat message does nothing in a real browser.

A dataset whose rows and field names hold ``<script>`` and ``<img onerror>`` is inspected in the
Data tab (summary, raw rows, rendered samples), then the same payloads go through a chat
exchange; Chromium must fire no dialog and run none of the injected handlers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

IMG = "<img src=x onerror=\"window.__xss=(window.__xss||0)+1;alert('img')\">"
SCRIPT = "<script>window.__xss=(window.__xss||0)+1;alert('script')</script>"
FIELD = "<img src=y onerror=alert('field')>"


def payload_rows() -> list[dict[str, str]]:
    return [
        {
            "instruction": f"Row {i}: {SCRIPT} what?",
            "input": IMG,
            "output": f"{IMG} ```",
            FIELD: "x",
        }
        for i in range(6)
    ]


def watch(page: Any) -> list[str]:
    dialogs: list[str] = []

    def record(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    return dialogs


def injected(page: Any) -> int:
    return int(page.evaluate("() => window.__xss || 0"))


def test_dataset_and_chat_payloads_fire_nothing(app: Any, browser: Any, tmp_path: Path) -> None:
    upload = tmp_path / "xss.jsonl"
    upload.write_text("\n".join(json.dumps(row) for row in payload_rows()) + "\n")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs = watch(page)
    try:
        page.goto(app.url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Data", exact=True).click(timeout=60_000)
        page.get_by_text("Upload a file", exact=True).click()
        page.locator("#data-upload input[type=file]").set_input_files(str(upload))
        page.get_by_role("button", name="Inspect", exact=True).click()
        summary = page.locator("#data-summary")
        page.wait_for_function(
            "() => (document.querySelector('#data-summary')?.innerText || '').includes('Format')",
            timeout=120_000,
        )
        assert "onerror" in summary.inner_text()  # the field name, shown as text
        raw = page.locator("#data-raw")
        page.wait_for_function(
            "() => (document.querySelector('#data-raw')?.innerText || '').includes('onerror')",
            timeout=30_000,
        )
        assert "<script>" in raw.inner_text()
        page.get_by_role("tab", name="Chat samples (rendered)").click()
        rendered = page.locator("#data-rendered")
        page.wait_for_function(
            "() => (document.querySelector('#data-rendered')?.innerText || '').includes('onerror')",
            timeout=30_000,
        )
        assert "<script>" in rendered.inner_text()
        time.sleep(1)
        assert dialogs == [] and injected(page) == 0, dialogs

        page.get_by_role("tab", name="Chat", exact=True).click()
        page.locator("#chat-backend").get_by_text("transformers", exact=True).click()
        box = page.locator("#chat-input textarea")
        box.fill(f"Repeat exactly: {IMG} {SCRIPT}")
        box.press("Enter")
        bot = page.locator("#chat-a [data-testid='bot']").last
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (bot.count() and bot.inner_text().strip()):
            time.sleep(0.2)
        answer = bot.inner_text() if bot.count() else ""
        status = page.locator("#chat-stats-a").inner_text()
        assert answer.strip(), (status, page.locator("#chat-status").inner_text(), app.log_tail())
        time.sleep(1)
        page.locator("#chat-stop").click()  # the answer need not finish: it is on screen
        user = page.locator("#chat-a [data-testid='user']").last.inner_text()
        assert "Repeat exactly" in user
        assert dialogs == [] and injected(page) == 0, (dialogs, user, answer)
    finally:
        page.close()
