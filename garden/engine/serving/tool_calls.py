"""An answer's tool calls: kept out of its streamed text and handed over as typed calls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from garden.engine.serving.types import ChatDelta
from garden.engine.training.tool_template import (
    TOOL_CALL_OPEN,
    scan_tool_calls,
    strip_tool_calls,
)


def visible_text(text: str) -> str:
    """The answer so far without its tool calls, nor a ``<tool_call>`` tag still arriving."""
    shown = strip_tool_calls(text)
    for size in range(len(TOOL_CALL_OPEN) - 1, 0, -1):
        if shown.endswith(TOOL_CALL_OPEN[:size]):
            return shown[:-size].rstrip()
    return shown


def with_tool_calls(steps: Iterator[ChatDelta]) -> Iterator[ChatDelta]:
    """The steps with ``<tool_call>`` blocks kept out of the text; the last carries the calls."""
    shown = ""
    for step in steps:
        if step.done:
            calls, problems = scan_tool_calls(step.text)
            text = strip_tool_calls(step.text)
            yield replace(step, delta="", text=text, tool_calls=calls, tool_problems=problems)
            return
        text = visible_text(step.text)
        if text != shown and text.startswith(shown):
            yield replace(step, delta=text[len(shown) :], text=text)
            shown = text
