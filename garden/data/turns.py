"""Turns of a conversation normalised to ``kinds.py``'s chat turns, tool calls and results kept."""

from __future__ import annotations

from typing import Any

from garden.data.media import ONLY_MEDIA, is_media_part, strip_placeholders
from garden.data.row_errors import RowError
from garden.data.tool_calls import parse_calls, result_name

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


def text_of(value: Any, what: str, notes: list[str], *, required: bool = True) -> str:
    """A field as text; content parts are joined and media parts left out (see ``media``)."""
    media = False
    if value is None:
        if required:
            raise RowError(f"has no {what}")
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        raise RowError(f"has a true/false value as {what}, expected text")
    elif isinstance(value, int | float):
        notes.append(f"the number in {what} was used as text")
        text = str(value)
    elif isinstance(value, list) and all(
        isinstance(p, dict) and ("text" in p or is_media_part(p)) for p in value
    ):
        media = any(is_media_part(p) for p in value)
        text = "\n".join(str(p["text"]) for p in value if "text" in p)
    else:
        kind = {"dict": "an object", "list": "a list"}.get(
            type(value).__name__, type(value).__name__
        )
        raise RowError(f"has {kind} as {what}, expected text")
    stripped = strip_placeholders(text)
    media = media or stripped != text
    if required and not stripped.strip():
        raise RowError(ONLY_MEDIA.format(what=what) if media else f"has an empty {what}")
    return stripped


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
        if role == "assistant" and raw_calls not in (None, "", []):
            calls = parse_calls(raw_calls, where, declared)
            content = text_of(turn.get(content_key), f"content in {where}", notes, required=False)
            messages.append({"role": "assistant", "content": content, "tool_calls": calls})
            continue
        calls = None
        content = text_of(turn.get(content_key), f"content in {where}", notes)
        messages.append({"role": role, "content": content})
    return messages


def check_order(messages: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """System first (optional), then a user turn; user and assistant alternate (tool results
    follow the assistant's calls); it ends on the assistant."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    for number, message in enumerate(body, 2 if body is not messages else 1):
        if message["role"] == "system":
            raise RowError(f"roles out of order: a system message at turn {number}, not first")
    if not any(m["role"] == "assistant" for m in body):
        raise RowError("has no assistant turn, so there is nothing to learn")
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
