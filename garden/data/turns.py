"""Turns of a conversation normalised to ``kinds.py``'s chat turns, tool calls and results kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from garden.data.media import ONLY_MEDIA, is_media_part, strip_placeholders
from garden.data.reasoning import with_reasoning
from garden.data.row_errors import RowError
from garden.data.tool_calls import parse_calls, parse_json, result_name

TURN_ROLE_KEYS = ("role", "from", "speaker", "author", "sender")
TURN_CONTENT_KEYS = ("content", "value", "text", "message", "utterance")
CALL_ROLES = ("function_call", "tool_call")
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "person": "user",
    "customer": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "gpt-4": "assistant",
    "function_call": "assistant",
    "tool_call": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
    "function_response": "tool",
    "tool_response": "tool",
}


TEXT_PART_TYPES = ("text", "input_text", "output_text")
REASONING_PART_TYPES = ("reasoning", "thinking")
CALL_PART_TYPES = ("tool_call", "function_call")
PART_TEXT_KEYS = ("text", "value", "content")


@dataclass
class Parts:
    """A turn's content read from a string or from a list of typed parts."""

    text: str
    reasoning: str = ""
    calls: list[Any] = field(default_factory=list)
    media: bool = False


def _part_text(part: dict[str, Any], what: str, number: int) -> str:
    value = next((part[key] for key in PART_TEXT_KEYS if key in part), None)
    if value is None and part.get("type") in REASONING_PART_TYPES:
        value = part.get(str(part["type"]))
    if not isinstance(value, str):
        raise RowError(
            f"has a {part.get('type', 'text')} part (part {number}) with no text in {what}"
        )
    return value


def parts_of(value: list[Any], what: str) -> Parts:
    """Content given as parts (OpenAI's ``{"type": "text", "text": …}``, or ``"value"``):
    text parts joined, reasoning/thinking parts kept apart, tool-call parts collected, media
    parts noted (and left out); any other part type is a row error naming it."""
    parts = Parts(text="")
    texts, thoughts = [], []
    for number, part in enumerate(value, 1):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise RowError(f"has part {number} of {what} that is not an object with a type")
        kind = str(part.get("type", "text"))
        if kind in TEXT_PART_TYPES:
            texts.append(_part_text(part, what, number))
        elif kind in REASONING_PART_TYPES:
            thoughts.append(_part_text(part, what, number))
        elif kind in CALL_PART_TYPES:
            call = next((part[k] for k in PART_TEXT_KEYS if k in part), part)
            parts.calls.append(parse_json(call, f"the tool call in part {number} of {what}"))
        elif is_media_part(part):
            parts.media = True
        else:
            raise RowError(
                f"has a content part of the unknown type {kind!r} (part {number}) in {what}; "
                f"expected text, reasoning, tool_call or media"
            )
    parts.text, parts.reasoning = "\n".join(texts), "\n".join(thoughts)
    return parts


def read_content(value: Any, what: str, notes: list[str], *, required: bool = True) -> Parts:
    """A turn's content as text (its reasoning and tool-call parts apart); media left out (see
    ``media``)."""
    if value is None:
        if required:
            raise RowError(f"has no {what}")
        return Parts(text="")
    if isinstance(value, str):
        parts = Parts(text=value)
    elif isinstance(value, bool):
        raise RowError(f"has a true/false value as {what}, expected text")
    elif isinstance(value, int | float):
        notes.append(f"the number in {what} was used as text")
        parts = Parts(text=str(value))
    elif isinstance(value, list):
        parts = parts_of(value, what)
    else:
        kind = "an object" if isinstance(value, dict) else type(value).__name__
        raise RowError(f"has {kind} as {what}, expected text")
    stripped = strip_placeholders(parts.text)
    parts.media = parts.media or stripped != parts.text
    parts.text = stripped
    if required and not stripped.strip() and not parts.reasoning.strip() and not parts.calls:
        raise RowError(ONLY_MEDIA.format(what=what) if parts.media else f"has an empty {what}")
    return parts


def text_of(value: Any, what: str, notes: list[str], *, required: bool = True) -> str:
    """A field as text: content parts joined (reasoning in ``<think>`` markers, which an
    answer's ``settle_reasoning`` moves to its own field), media parts left out (see
    ``media``); tool-call parts are an error where no call may stand."""
    parts = read_content(value, what, notes, required=required)
    if parts.calls:
        raise RowError(f"has a tool_call part in {what}, where only an assistant turn may call")
    return with_reasoning(parts.text, parts.reasoning)


def turn_keys(turns: list[Any]) -> tuple[str, str]:
    """The role and content keys of a list of turns (``role``/``content``, ``from``/``value``…)."""
    first = next((t for t in turns if isinstance(t, dict)), {})
    role = next((k for k in TURN_ROLE_KEYS if k in first), "role")
    content = next((k for k in TURN_CONTENT_KEYS if k in first), "content")
    return role, content


def normalise_turns(
    turns: list[Any],
    role_key: str,
    content_key: str,
    notes: list[str],
    *,
    declared: set[str] | None = None,
    first_number: int = 1,
) -> list[dict[str, Any]]:
    """Turns as ``{"role", "content"}``, assistant ``tool_calls`` and ``tool`` results kept.

    ``declared`` is the set of tool names the row declares (None: any name is accepted).
    """
    messages: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] | None = None  # the latest calls, while their results follow
    for number, turn in enumerate(turns, first_number):
        where = f"turn {number}"
        if not isinstance(turn, dict):
            raise RowError(f"{where} is not an object with {role_key}/{content_key}")
        role_value = turn.get(role_key)
        if not isinstance(role_value, str):
            raise RowError(f"{where} has no '{role_key}'")
        alias = role_value.strip().lower()
        role = ROLE_ALIASES.get(alias)
        if role is None:
            raise RowError(f"{where} has the unknown role {role_value!r}")
        if alias in CALL_ROLES:
            calls = parse_calls(turn.get(content_key), where, declared)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
                last["tool_calls"] = calls
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": calls})
            continue
        if role == "tool":
            if calls is None:
                raise RowError(
                    f"{where} is a tool result with no tool call before it; "
                    "put the assistant's call (tool_calls or function_call) first"
                )
            content = text_of(turn.get(content_key), f"content in {where}", notes, required=False)
            result: dict[str, Any] = {"role": "tool", "content": content}
            if name := result_name(turn, calls):
                result["name"] = name
            if turn.get("tool_call_id"):
                result["tool_call_id"] = str(turn["tool_call_id"])
            messages.append(result)
            continue
        raw_calls = turn.get("tool_calls") or turn.get("function_call")
        if role == "assistant":
            parts = read_content(
                turn.get(content_key), f"content in {where}", notes,
                required=raw_calls in (None, "", []),
            )  # fmt: skip
            if parts.calls and raw_calls in (None, "", []):
                raw_calls = parts.calls
            reasoning = turn.get("reasoning_content") or turn.get("reasoning") or ""
            if not isinstance(reasoning, str):
                raise RowError(f"{where} has reasoning that is not text")
            answer: dict[str, Any] = {"role": "assistant", "content": parts.text}
            if thought := "\n".join(filter(None, (reasoning.strip(), parts.reasoning.strip()))):
                answer["reasoning"] = thought
            if raw_calls not in (None, "", []):
                calls = parse_calls(raw_calls, where, declared)
                answer["tool_calls"] = calls
            else:
                calls = None
            if not trained(turn, where):
                answer["train"] = False
            messages.append(answer)
            continue
        calls = None
        content = text_of(turn.get(content_key), f"content in {where}", notes)
        messages.append({"role": role, "content": content})
    return messages


WEIGHT_KEYS = ("loss_weight", "weight")


def trained(turn: dict[str, Any], where: str) -> bool:
    """Whether an assistant turn carries loss: its ``loss_weight`` (LLaMA-Factory v1) or
    ``weight`` (ShareGPT) is 1 or absent; 0 leaves the turn out of the loss."""
    key = next((k for k in WEIGHT_KEYS if k in turn), None)
    if key is None or turn[key] is None:
        return True
    value = turn[key]
    if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
        return bool(value)
    raise RowError(f"{where} has {key} {value!r}; expected 0 (no loss) or 1 (loss)")


def check_order(messages: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """System first (optional), then a user turn; user and assistant alternate (tool results
    follow the assistant's calls); it ends on the assistant."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    for number, message in enumerate(body, 2 if body is not messages else 1):
        if message["role"] == "system":
            raise RowError(f"roles out of order: a system message at turn {number}, not first")
    if not any(m["role"] == "assistant" for m in body):
        raise RowError("has no assistant turn, so there is nothing to learn")
    if not any(m["role"] == "assistant" and m.get("train", True) for m in body):
        raise RowError("has loss_weight 0 on every assistant turn, so there is nothing to learn")
    if body[0]["role"] != "user":
        raise RowError("roles out of order: the conversation must start with a user turn")
    for number in range(1, len(body)):
        role = body[number]["role"]
        if role == body[number - 1]["role"] and role != "tool":
            raise RowError(
                f"roles out of order: two {role} turns in a row (turns {number} and {number + 1})"
            )
    if body[-1]["role"] == "user":
        notes.append("the last user turn has no answer and was dropped")
        messages = messages[:-1]
    return messages
