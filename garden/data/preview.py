"""Previews of processed samples: what a person checks before training on them.

A preview is a dict: ``kind``; ``rendered`` (through the model's chat template, tools passed,
as training sees it); for pairs ``prompt`` (its last turn), ``chosen``, ``rejected`` and
``rendered_prompt``; for labelled answers also ``label`` (the answer is in ``chosen``); for tool
conversations ``tools`` (declared names) and ``calls`` (``name({...})``); ``reasoning`` (the
answers' reasoning traces, one paragraph each: a pair's chosen answer's) for any conversation.
"""

from __future__ import annotations

import json
from typing import Any

from garden.config import Settings, get_settings
from garden.data.kinds import row_kind
from garden.data.reasoning import reasoning_text
from garden.data.tokens import get_tokenizer, render, render_messages


def _last_text(turns: list[dict[str, Any]]) -> str:
    return str(turns[-1].get("content") or "") if turns else ""


def _answer_text(turns: list[dict[str, Any]]) -> str:
    return "\n".join(str(turn.get("content") or "") for turn in turns)


def preview_sample(tokenizer: Any, sample: dict[str, Any]) -> dict[str, Any]:
    kind = row_kind(sample)
    rendered = render(tokenizer, sample)
    if kind == "text":
        return {"kind": kind, "rendered": rendered}
    if kind in ("preference", "feedback"):
        prompt = sample["prompt"]
        answers = (sample["chosen"], sample["rejected"]) if kind == "preference" else (
            sample["completion"], [],
        )  # fmt: skip
        return {
            "kind": kind, "rendered": rendered, "prompt": _last_text(prompt),
            "chosen": _answer_text(answers[0]), "rejected": _answer_text(answers[1]),
            "rendered_prompt": render_messages(tokenizer, prompt, add_generation_prompt=True),
            "label": sample.get("label") if kind == "feedback" else None,
            "reasoning": reasoning_text(answers[0]),
        }  # fmt: skip
    calls = [
        f"{call['function']['name']}({json.dumps(call['function']['arguments'], ensure_ascii=False)})"
        for message in sample["messages"]
        for call in message.get("tool_calls") or []
    ]
    tools = [tool["function"]["name"] for tool in sample.get("tools") or []]
    return {
        "kind": kind, "rendered": rendered, "tools": tools, "calls": calls,
        "reasoning": reasoning_text(sample["messages"]),
    }  # fmt: skip


def preview_samples(
    samples: list[dict[str, Any]], model: str | None = None, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """Previews of processed samples, rendered with ``model``'s tokenizer and chat template."""
    tokenizer = get_tokenizer(model, settings or get_settings())
    return [preview_sample(tokenizer, sample) for sample in samples]
