"""The Fine-tune form is the preset it shows: Start submits exactly that preset's spec."""

from __future__ import annotations

from typing import Any

import pytest

from garden.services import training

DATASET = "garden-facts"


def _start(app: Any) -> Any:
    """The Start button's event of the real app: its handler and its input components."""
    starts = [fn for fn in app.fns.values() if fn.api_name == "start_training"]
    assert len(starts) == 1
    return starts[0]


def _as_submitted(component: Any, value: Any) -> Any:
    """A value as a page holds it (the component's config) and sends it back (preprocessed)."""
    return component.preprocess(value)


def _page_values(start: Any, overrides: dict[Any, Any] | None = None) -> list[Any]:
    overrides = overrides or {}
    values = []
    for component in start.inputs:
        shown = overrides.get(component, component.get_config().get("value"))
        values.append(_as_submitted(component, shown))
    return values


@pytest.fixture(scope="module")
def app() -> Any:
    from garden.ui import build_app

    return build_app()


def _submitted(start: Any, dataset_component: Any, overrides: dict[Any, Any]) -> dict[str, Any]:
    values = _page_values(start, {**overrides, dataset_component: DATASET})
    return start.fn.__self__.submission(*values)


def test_an_untouched_form_submits_the_shown_preset(app: Any) -> None:
    start = _start(app)
    tab = start.fn.__self__
    assert tab.form.preset.value == "Quick CPU demo"
    given = _submitted(start, tab.form.dataset, {})
    submitted = training.build_spec(given)
    expected = training.build_spec({"dataset": DATASET}, preset="Quick CPU demo")
    assert submitted.model_dump() == expected.model_dump()
    assert submitted.time_budget_s == expected.time_budget_s is not None


@pytest.mark.parametrize("preset", [p.name for p in training.presets()])
def test_picking_a_preset_submits_exactly_that_preset(app: Any, preset: str) -> None:
    start = _start(app)
    tab = start.fn.__self__
    shown = tab.apply_preset(preset)
    given = _submitted(start, tab.form.dataset, shown)
    submitted = training.build_spec(given)
    expected = training.build_spec({"dataset": DATASET}, preset=preset)
    assert submitted.model_dump() == expected.model_dump()


def test_loss_switch_and_budget_fields_round_trip() -> None:
    from garden.ui.finetune_tab import form_values, spec_values

    for loss in (None, True, False):
        values = {"assistant_only_loss": loss, "time_budget_s": 90.0, "co2_budget_g": 0.5}
        back = spec_values(form_values(values))
        assert back.get("assistant_only_loss") is loss
        assert back["time_budget_s"] == 90.0 and back["co2_budget_g"] == 0.5
    assert "time_budget_s" not in spec_values({"time_budget_min": 0, "co2_budget_g": 0})


def test_api_callers_may_still_send_the_loss_switch_as_a_boolean(app: Any) -> None:
    start = _start(app)
    tab = start.fn.__self__
    for sent, meant in ((True, True), (False, False), ("on", True), ("off", False)):
        values = _page_values(start, {tab.form.assistant_only_loss: sent})
        assert tab.submission(*values)["assistant_only_loss"] is meant
    auto = _page_values(start, {tab.form.assistant_only_loss: "auto"})
    assert "assistant_only_loss" not in tab.submission(*auto)
