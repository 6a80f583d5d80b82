"""Reasoning traces: kept apart from the answer on assistant turns (``"reasoning"``), read from
a leading ``<think>…</think>`` block of the answer too, dropped when asked, and handed to a chat
template the way it takes them (``reasoning_content``/``thinking``, or ``<think>`` markers)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from garden.data.row_errors import RowError

ReasoningMode = Literal["keep", "drop"]
REASONING_MODES: tuple[ReasoningMode, ...] = ("keep", "drop")
TEMPLATE_KEYS = ("reasoning_content", "thinking")
ANSWER_LISTS = ("messages", "chosen", "rejected", "completion")

_LEADING_THINK = re.compile(r"\A\s*<think>(.*?)</think>\s*", re.DOTALL)
_TEMPLATE_USES = {
    "reasoning_content": re.compile(r"reasoning_content"),
    "thinking": re.compile(r"\.thinking\b|\[\s*['\"]thinking['\"]\s*\]"),
}
_KEYS_BY_TEMPLATE: dict[str, tuple[str, ...]] = {}


def split_think(text: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a text that may open with a ``<think>…</think>`` block."""
    match = _LEADING_THINK.match(text)
    if match is None:
        return "", text
    return match.group(1).strip(), text[match.end() :]


def with_reasoning(text: str, reasoning: str) -> str:
    """An assistant answer with its reasoning before it, in ``<think>`` markers (the form the
    chat templates of reasoning models render)."""
    if not reasoning.strip():
        return text
    thought = f"<think>\n{reasoning.strip()}\n</think>"
    return f"{thought}\n\n{text}" if text.strip() else thought


def assistant_turns(sample: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The assistant turns of a processed sample (a conversation, a pair's or a label's answers)."""
    for key in ANSWER_LISTS:
        for turn in sample.get(key) or []:
            if isinstance(turn, dict) and turn.get("role") == "assistant":
                yield turn


def settle_reasoning(sample: dict[str, Any], mode: ReasoningMode) -> bool:
    """Put each assistant turn's reasoning in its ``reasoning`` field (a leading ``<think>``
    block of its content moved there), or remove it when ``mode`` is ``drop``; in place.

    Returns whether the sample carried reasoning. Raises ``RowError`` when dropping leaves an
    assistant turn with no answer and no tool call.
    """
    found = False
    for turn in assistant_turns(sample):
        thought, answer = split_think(str(turn.get("content") or ""))
        reasoning = "\n".join(filter(None, (str(turn.get("reasoning") or "").strip(), thought)))
        turn["content"] = answer
        turn.pop("reasoning", None)
        if not reasoning:
            continue
        found = True
        if mode == "keep":
            turn["reasoning"] = reasoning
        elif not answer.strip() and not turn.get("tool_calls"):
            raise RowError(
                "has an assistant turn with only reasoning, left empty once the reasoning is "
                "dropped; keep the reasoning, or drop the invalid rows"
            )
    return found


def reasoning_text(turns: Sequence[Mapping[str, Any]]) -> str:
    """The reasoning of the assistant turns among ``turns``, one paragraph each."""
    return "\n\n".join(
        str(turn["reasoning"])
        for turn in turns
        if turn.get("role") == "assistant" and turn.get("reasoning")
    )


def template_keys(template: Any) -> tuple[str, ...]:
    """The message keys (``reasoning_content``, ``thinking``) through which a chat template
    renders an assistant turn's reasoning; none for a template without thinking support."""
    if isinstance(template, dict):
        template = "\n".join(str(value) for value in template.values())
    if not isinstance(template, str):
        return ()
    if template not in _KEYS_BY_TEMPLATE:
        _KEYS_BY_TEMPLATE[template] = tuple(
            key for key, pattern in _TEMPLATE_USES.items() if pattern.search(template)
        )
    return _KEYS_BY_TEMPLATE[template]


def for_template(
    messages: Sequence[Mapping[str, Any]], keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The messages as a chat template takes them: the reasoning under ``keys`` when the
    template renders reasoning (a ``<think>`` block of an older saved answer moved there too),
    else inside ``<think>`` markers before the answer."""
    out = []
    for message in messages:
        turn = dict(message)
        reasoning = str(turn.pop("reasoning", None) or "")
        if turn.get("role") == "assistant":
            content = str(turn.get("content") or "")
            if keys:
                thought, turn["content"] = split_think(content)
                reasoning = "\n".join(filter(None, (reasoning, thought)))
                if reasoning:
                    turn.update(dict.fromkeys(keys, reasoning))
            elif reasoning:
                turn["content"] = with_reasoning(content, reasoning)
        out.append(turn)
    return out
