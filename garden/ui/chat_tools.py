"""The Chat tab's Tools accordion (tool schemas as JSON) and its tool calls shown as calls."""

from __future__ import annotations

from typing import Any

import gradio as gr

from garden.errors import GardenError
from garden.services.chat import AnswerStream
from garden.services.tools import ToolSchema, parse_tools, sample_tools_json

TOOLS_SOURCE = "the Tools box"


class ToolsPanel:
    """A JSON editor for the tool schemas offered to the model, with a sample and a check line."""

    def __init__(self) -> None:
        with gr.Accordion("Tools", open=False, elem_id="chat-tools-panel"):
            gr.Markdown(
                "Offer the model tools (OpenAI-style function schemas, a JSON list). Its tool "
                "calls are shown as 🔧 calls. Leave empty for a plain chat."
            )
            self.code = gr.Code(
                value="",
                language="json",
                label="Tool schemas (JSON)",
                lines=8,
                interactive=True,
                elem_id="chat-tools",
            )
            with gr.Row():
                self.sample_btn = gr.Button(
                    "Sample", size="sm", scale=0, elem_id="chat-tools-sample"
                )
                self.clear_btn = gr.Button("Clear tools", size="sm", scale=0)
                self.check = gr.Markdown("No tools offered.", elem_id="chat-tools-check")

    def bind(self) -> None:
        self.sample_btn.click(sample_tools_json, None, self.code)
        self.clear_btn.click(lambda: "", None, self.code)
        self.code.change(tools_check, self.code, self.check, show_progress="hidden")


def tools_in_box(text: str | None) -> list[ToolSchema] | None:
    """The tools in the box (None when empty); raises ``ServingError`` when invalid."""
    return parse_tools(text or "", TOOLS_SOURCE) or None


def tools_check(text: str | None) -> str:
    """One line under the box: the tools it offers, or what is wrong with it."""
    try:
        tools = tools_in_box(text)
    except GardenError as exc:
        return f"❌ {exc}"
    if not tools:
        return "No tools offered."
    names = ", ".join(tool.function.name for tool in tools)
    return f"✅ {len(tools)} tool{'s' if len(tools) != 1 else ''}: {names}"


def show_tool_calls(stream: AnswerStream, history: list[Any]) -> str:
    """Put the answer's tool calls into its pane as 🔧 call blocks; a note on calls not read."""
    if stream.tool_calls and not str(history[-1].get("content") or "").strip():
        history.pop()
    for call in stream.tool_calls:
        history.append(
            gr.ChatMessage(
                role="assistant",
                content=call.as_text(),
                metadata={"title": call.title(), "status": "done"},
            )
        )
    return "".join(f" · ⚠️ {problem}" for problem in stream.tool_problems)
