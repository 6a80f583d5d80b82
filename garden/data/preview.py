"""Previews of processed samples: what a person checks before training on them.

Pairs show their prompt, chosen and rejected answers; labelled answers their label; tool
conversations their declared tools and calls. Every sample is also rendered through the
model's chat template with its tools passed, as training sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from garden.config import Settings, get_settings
from garden.data.kinds import DatasetKind, row_kind
from garden.data.tokens import get_tokenizer, render, render_messages


@dataclass(frozen=True)
class Preview:
    kind: DatasetKind
    rendered: str
    prompt: str = ""
    chosen: str = ""
    rejected: str = ""
    rendered_prompt: str = ""
    label: bool | None = None
    tools: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)


def _last_text(turns: list[dict[str, Any]]) -> str:
    return str(turns[-1].get("content") or "") if turns else ""


def _answer_text(turns: list[dict[str, Any]]) -> str:
    return "\n".join(str(turn.get("content") or "") for turn in turns)


def preview_sample(tokenizer: Any, sample: dict[str, Any]) -> Preview:
    kind = row_kind(sample)
    rendered = render(tokenizer, sample)
    if kind == "text":
        return Preview(kind, rendered)
    if kind in ("preference", "feedback"):
        prompt = sample["prompt"]
        answers = (sample["chosen"], sample["rejected"]) if kind == "preference" else (
            sample["completion"], [],
        )  # fmt: skip
        return Preview(
            kind, rendered, prompt=_last_text(prompt), chosen=_answer_text(answers[0]),
            rejected=_answer_text(answers[1]),
            rendered_prompt=render_messages(tokenizer, prompt, add_generation_prompt=True),
            label=sample.get("label") if kind == "feedback" else None,
        )  # fmt: skip
    calls = [
        f"{call['function']['name']}({json.dumps(call['function']['arguments'], ensure_ascii=False)})"
        for message in sample["messages"]
        for call in message.get("tool_calls") or []
    ]
    tools = [tool["function"]["name"] for tool in sample.get("tools") or []]
    return Preview(kind, rendered, tools=tools, calls=calls)


def preview_samples(
    samples: list[dict[str, Any]], model: str | None = None, settings: Settings | None = None
) -> list[Preview]:
    """Previews of processed samples, rendered with ``model``'s tokenizer and chat template."""
    tokenizer = get_tokenizer(model, settings or get_settings())
    return [preview_sample(tokenizer, sample) for sample in samples]
