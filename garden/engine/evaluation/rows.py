"""Held-out rows of every kind as what evaluation needs: rows to score, prompts to answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garden.data.kinds import row_kind


@dataclass(frozen=True)
class HeldOutPrompt:
    """A conversation up to the answer, the answer expected, and the tools it may call."""

    messages: list[dict[str, Any]]
    reference: str
    tools: list[dict[str, Any]] | None = None


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def loss_row(row: dict[str, Any]) -> dict[str, Any] | None:
    """The row as a ``chat`` or ``text`` row to score: preference rows by prompt + chosen,
    feedback rows only when labelled good."""
    kind = row_kind(row)
    if kind == "preference":
        return {"messages": [*row["prompt"], *row["chosen"]]}
    if kind == "feedback":
        return {"messages": [*row["prompt"], *row["completion"]]} if row["label"] else None
    return row


def _answer_text(turn: dict[str, Any]) -> str:
    if turn.get("content"):
        return str(turn["content"])
    calls = turn.get("tool_calls") or []
    return json.dumps([call.get("function", call) for call in calls]) if calls else ""


def held_out_prompt(row: dict[str, Any]) -> HeldOutPrompt | None:
    """The prompt and reference answer of a chat, preference or good feedback row; None for
    text rows and rows without an assistant answer."""
    kind = row_kind(row)
    if kind == "text" or (kind == "feedback" and not row["label"]):
        return None
    if kind == "chat":
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=0)
        prompt, answer = messages[:last], messages[last] if last else None
    else:
        prompt = row["prompt"]
        answers = row["chosen"] if kind == "preference" else row["completion"]
        answer = answers[0] if answers else None
    reference = _answer_text(answer) if answer else ""
    if not prompt or not reference:
        return None
    return HeldOutPrompt(list(prompt), reference, row.get("tools"))


def prompt_text(prompt: HeldOutPrompt) -> str:
    """The last user turn (what the side-by-side table shows)."""
    users = [m for m in prompt.messages if m.get("role") == "user"]
    return str((users[-1] if users else prompt.messages[-1]).get("content") or "")
