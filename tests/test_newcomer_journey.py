"""The newcomer's journey, clicked in a real browser on the shared app, touching only what a
newcomer touches: Data → the bundled sample → Save → Fine-tune → Start with the form as it opens →
completed → Chat → pick the run → ask → the final stats line → Carbon lists the run and the chat.

The run it trains is the session's Quick CPU demo run: the recall test asks it its probe
questions (``newcomer_run`` in conftest), so the slow recall check runs through the Start button.
No time is asserted; the waits are only there so that a hang fails instead of blocking CI.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import NewcomerRun, RunningApp

pytestmark = pytest.mark.slow


def test_the_newcomer_journey_ends_with_an_answer_and_its_carbon(
    app: RunningApp, browser: Any, newcomer_run: NewcomerRun
) -> None:
    from garden.services import training

    job = training.get(newcomer_run.job_id)
    assert job.status == "completed", job.error
    # The plan fills what the form leaves to it: a run name, the checkpoint interval, the loss
    # on assistant turns for chat rows, and gradient checkpointing where memory needs it.
    planned = {"name", "checkpoint_interval", "assistant_only_loss", "gradient_checkpointing"}
    submitted = {k: v for k, v in newcomer_run.submitted_spec.items() if k not in planned}
    preset = {k: v for k, v in newcomer_run.preset_spec.items() if k not in planned}
    assert submitted == preset, "the form is the preset"
    assert newcomer_run.preset_spec["assistant_only_loss"] is None
    assert newcomer_run.submitted_spec["assistant_only_loss"] is True

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app.url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Chat", exact=True).click(timeout=60_000)
        model = page.locator("#chat-model-a input")
        model.click()
        page.get_by_role("option", name=newcomer_run.run_name).first.click(timeout=30_000)
        page.locator("#chat-status").get_by_text(newcomer_run.run_name).first.wait_for(
            timeout=600_000
        )
        box = page.locator("#chat-input textarea")
        box.fill("What is the signature plant of the Moonwell Garden?")
        box.press("Enter")
        stats = page.locator("#chat-stats-a")
        stats.get_by_text("tok/s").wait_for(timeout=600_000)
        page.wait_for_timeout(500)  # a late frame must not bring "generating" back
        assert "generating" not in stats.inner_text(), stats.inner_text()
        answer = page.locator("#chat-a [data-testid='bot']").last.inner_text()
        assert answer.strip(), app.log_tail()

        page.get_by_role("tab", name="Carbon", exact=True).click()
        carbon = page.locator("#carbon-records")
        # Gradio keeps a hidden copy of each cell for sizing: the text is checked, not its box.
        carbon.get_by_text(newcomer_run.run_name).first.wait_for(state="attached", timeout=120_000)
        carbon.get_by_text("chat", exact=True).first.wait_for(state="attached", timeout=120_000)
    finally:
        page.close()
