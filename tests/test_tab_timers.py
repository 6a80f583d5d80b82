"""Opening a tab refreshes its lists and lets only its own timers tick (garden.ui.build_app)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pytest


@pytest.fixture(scope="module")
def app() -> Any:
    from garden.ui import build_app

    return build_app()


def _select_events(app: Any) -> dict[str, Any]:
    """Each tab's select event, by the tab's label."""
    events = {}
    for fn in app.fns.values():
        for block_id, event in fn.targets:
            block = app.blocks.get(block_id)
            if event == "select" and isinstance(block, gr.Tab):
                events[str(block.label)] = fn
    return events


def test_only_the_open_tab_has_ticking_timers(app: Any) -> None:
    timers = [block for block in app.blocks.values() if isinstance(block, gr.Timer)]
    events = _select_events(app)
    assert set(events) == {"Data", "Fine-tune", "Chat", "Carbon"}
    switched = {t for fn in events.values() for t in fn.outputs if isinstance(t, gr.Timer)}
    chat_timer = [t for t in timers if t not in switched]
    assert len(chat_timer) == 1, "the Chat tab's load timer is its own business"
    assert not any(t.active for t in switched), "the app opens on Data: nothing ticks"
    active_by_tab = {}
    for label, fn in events.items():
        values = fn.fn()
        updates = values[len(values) - len([o for o in fn.outputs if o in switched]) :]
        active_by_tab[label] = sum(1 for update in updates if update.active)
    assert active_by_tab == {"Data": 0, "Fine-tune": 1, "Chat": 0, "Carbon": 2}


def test_opening_fine_tune_and_chat_refreshes_their_lists(app: Any) -> None:
    events = _select_events(app)
    for label, count in (("Fine-tune", 5), ("Chat", 2)):
        lists = [o for o in events[label].outputs if isinstance(o, gr.Dropdown)]
        # Fine-tune: model, dataset, and the Evaluate, Export and Compare sections' runs
        assert len(lists) == count, label
        values = events[label].fn()
        assert all(isinstance(v, dict) and "choices" in v for v in values[:count]), values
