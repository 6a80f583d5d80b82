"""Format detection and normalisation of rows to chat messages (or plain text).

A *mapping* says which field plays which part. Its ``format`` key is one of ``FORMATS``; the
other keys depend on it:

- ``openai`` / ``sharegpt``: ``messages`` (the list field), ``role`` and ``content`` (keys of
  each turn), optional ``system`` (a top-level system prompt field).
- ``alpaca``: ``instruction``, ``output``, optional ``input``, ``system``, ``history``.
- ``prompt_completion``: ``prompt``, ``completion``, optional ``system``.
- ``text``: ``text``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from garden.errors import DatasetError

FORMATS = ("openai", "sharegpt", "alpaca", "prompt_completion", "text")
CHAT_FORMATS = ("openai", "sharegpt", "alpaca", "prompt_completion")

MESSAGE_FIELDS = (
    "messages",
    "conversations",
    "conversation",
    "chat",
    "dialog",
    "dialogue",
    "turns",
)
TURN_ROLE_KEYS = ("role", "from", "speaker", "author", "sender")
TURN_CONTENT_KEYS = ("content", "value", "text", "message", "utterance")
SYSTEM_FIELDS = ("system", "system_prompt", "instructions_system")
INSTRUCTION_FIELDS = ("instruction", "instructions")
INPUT_FIELDS = ("input", "context")
OUTPUT_FIELDS = ("output", "response", "answer", "completion")
PROMPT_FIELDS = ("prompt", "question", "query", "input")
COMPLETION_FIELDS = ("completion", "response", "answer", "output", "chosen")
TEXT_FIELDS = ("text", "content", "document", "body")
CANONICAL = {
    "openai": {"messages": "messages", "role": "role", "content": "content"},
    "sharegpt": {"messages": "conversations", "role": "from", "content": "value"},
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion"},
    "text": {"text": "text"},
}
REQUIRED = {
    "openai": ("messages",),
    "sharegpt": ("messages",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
OPTIONAL = {
    "openai": ("role", "content", "system"),
    "sharegpt": ("role", "content", "system"),
    "alpaca": ("input", "system", "history"),
    "prompt_completion": ("system",),
    "text": (),
}
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


class RowError(Exception):
    """A row that cannot become a training sample; the message is shown with its location."""


@dataclass
class Detection:
    format: str
    mapping: dict[str, Any]
    confidence: float
    candidates: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""


def _first(row: dict[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        if row.get(name) is not None:
            return name
    return None


def _as_list(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
    return value


def row_mapping(row: dict[str, Any]) -> dict[str, Any] | None:
    """The mapping one row fits best, or None when it fits no known format."""
    for name in MESSAGE_FIELDS:
        turns = _as_list(row.get(name))
        if isinstance(turns, list) and turns and all(isinstance(t, dict) for t in turns):
            role = next((k for k in TURN_ROLE_KEYS if k in turns[0]), None)
            content = next((k for k in TURN_CONTENT_KEYS if k in turns[0]), None)
            if role and content:
                fmt = "sharegpt" if (role, content) == ("from", "value") else "openai"
                mapping: dict[str, Any] = {
                    "format": fmt,
                    "messages": name,
                    "role": role,
                    "content": content,
                }
                if system := _first(row, SYSTEM_FIELDS):
                    mapping["system"] = system
                return mapping
    instruction = _first(row, INSTRUCTION_FIELDS)
    output = _first(row, OUTPUT_FIELDS)
    if instruction and output:
        mapping = {"format": "alpaca", "instruction": instruction, "output": output}
        for key, names in (
            ("input", INPUT_FIELDS),
            ("system", SYSTEM_FIELDS),
            ("history", ("history",)),
        ):
            if found := next((n for n in names if n in row), None):
                mapping[key] = found
        return mapping
    prompt = _first(row, PROMPT_FIELDS)
    completion = _first(row, [c for c in COMPLETION_FIELDS if c != prompt])
    if prompt and completion:
        mapping = {"format": "prompt_completion", "prompt": prompt, "completion": completion}
        if system := _first(row, SYSTEM_FIELDS):
            mapping["system"] = system
        return mapping
    text = next((n for n in TEXT_FIELDS if isinstance(row.get(n), str)), None)
    if text:
        return {"format": "text", "text": text}
    return None


def detect_format(rows: list[dict[str, Any]]) -> Detection:
    """Pick the format most sample rows fit; confidence is the share that fits (x0.9 for aliases)."""
    if not rows:
        raise DatasetError(
            "No row could be read, so the format cannot be detected.",
            hint="Check the validation report for the first unreadable rows.",
        )
    mappings = [row_mapping(row) for row in rows]
    formats = Counter(m["format"] for m in mappings if m)
    if not formats:
        columns = sorted({key for row in rows for key in row})
        raise DatasetError(
            f"The format was not recognised (fields: {', '.join(columns[:20]) or 'none'}).",
            hint="Set the mapping yourself: which field is the instruction/prompt and which the "
            "answer, or rename fields to messages, instruction/output, prompt/completion or text.",
        )
    fmt, hits = formats.most_common(1)[0]
    same = [m for m in mappings if m and m["format"] == fmt]
    mapping: dict[str, Any] = {}
    for key in ("format", *REQUIRED[fmt], *OPTIONAL[fmt]):
        values = Counter(m[key] for m in same if key in m)
        if values:
            mapping[key] = values.most_common(1)[0][0]
    exact = sum(1 for m in same if all(m.get(k) == mapping.get(k) for k in REQUIRED[fmt]))
    canonical = all(mapping.get(k) == v for k, v in CANONICAL[fmt].items() if k in REQUIRED[fmt])
    confidence = round(exact / len(rows) * (1.0 if canonical else 0.9), 3)
    candidates = [{"format": f, "share": round(n / len(rows), 3)} for f, n in formats.most_common()]
    reason = f"{hits} of {len(rows)} sampled rows look like {fmt}"
    return Detection(fmt, mapping, confidence, candidates, reason)


def complete_mapping(mapping: dict[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """Check a user's mapping override; infer ``format`` from its keys when it is missing."""
    mapping = {k: v for k, v in mapping.items() if v not in (None, "")}
    fmt = mapping.get("format")
    if fmt is None:
        if "messages" in mapping:
            fmt = "sharegpt" if mapping.get("role") == "from" else "openai"
        elif "instruction" in mapping:
            fmt = "alpaca"
        elif "prompt" in mapping:
            fmt = "prompt_completion"
        elif "text" in mapping:
            fmt = "text"
        else:
            raise DatasetError(
                f"The mapping {mapping} does not say which field is which.",
                hint='Give e.g. {"instruction": "question", "output": "answer"} or '
                '{"prompt": "q", "completion": "a"} or {"messages": "chat"} or {"text": "body"}.',
            )
    if fmt not in FORMATS:
        raise DatasetError(
            f"Unknown format {fmt!r} in the mapping.", hint=f"Use one of: {', '.join(FORMATS)}."
        )
    mapping["format"] = fmt
    known = set(columns)
    for key in REQUIRED[fmt]:
        if key not in mapping:
            mapping[key] = CANONICAL[fmt][key]
        if known and mapping[key] not in known:
            raise DatasetError(
                f"The mapping says {key} is the field {mapping[key]!r}, but no row has it.",
                hint=f"Fields found: {', '.join(sorted(known)[:20])}.",
            )
    if fmt in ("openai", "sharegpt"):
        mapping.setdefault("role", CANONICAL[fmt]["role"])
        mapping.setdefault("content", CANONICAL[fmt]["content"])
    allowed = {"format", *REQUIRED[fmt], *OPTIONAL[fmt]}
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise DatasetError(
            f"The mapping has keys {unknown} that format {fmt} does not use.",
            hint=f"Keys for {fmt}: {', '.join(sorted(allowed))}.",
        )
    return mapping


# normalisation -----------------------------------------------------------------------


def _text(value: Any, what: str, notes: list[str], *, required: bool = True) -> str:
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
    elif isinstance(value, list) and all(isinstance(p, dict) and "text" in p for p in value):
        text = "\n".join(str(p["text"]) for p in value)
    else:
        kind = {"dict": "an object", "list": "a list"}.get(
            type(value).__name__, type(value).__name__
        )
        raise RowError(f"has {kind} as {what}, expected text")
    if required and not text.strip():
        raise RowError(f"has an empty {what}")
    return text


def normalise(row: dict[str, Any], mapping: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One row as ``{"messages": [...]}`` or ``{"text": ...}``, plus notes worth a warning."""
    notes: list[str] = []
    fmt = mapping["format"]
    if fmt == "text":
        return {"text": _text(row.get(mapping["text"]), f"'{mapping['text']}'", notes)}, notes
    messages: list[dict[str, str]] = []
    system_field = mapping.get("system")
    if system_field and row.get(system_field) not in (None, ""):
        messages.append(
            {"role": "system", "content": _text(row[system_field], "system prompt", notes)}
        )
    if fmt in ("openai", "sharegpt"):
        turns = _as_list(row.get(mapping["messages"]))
        if turns is None:
            raise RowError(f"has no '{mapping['messages']}' field")
        if not isinstance(turns, list) or not turns:
            raise RowError(f"'{mapping['messages']}' must be a non-empty list of turns")
        for number, turn in enumerate(turns, 1):
            if not isinstance(turn, dict):
                raise RowError(
                    f"turn {number} is not an object with {mapping['role']}/{mapping['content']}"
                )
            role_value = turn.get(mapping["role"])
            if not isinstance(role_value, str):
                raise RowError(f"turn {number} has no '{mapping['role']}'")
            role = ROLE_ALIASES.get(role_value.strip().lower())
            if role is None:
                raise RowError(f"turn {number} has the unknown role {role_value!r}")
            content = _text(turn.get(mapping["content"]), f"content in turn {number}", notes)
            if role == "tool":
                notes.append("a tool result was kept as a user turn")
                role, content = "user", f"Tool result:\n{content}"
            messages.append({"role": role, "content": content})
    elif fmt == "alpaca":
        history = row.get(mapping["history"]) if mapping.get("history") else None
        history = _as_list(history)
        if history not in (None, "", []):
            if not isinstance(history, list) or not all(
                isinstance(pair, list | tuple) and len(pair) == 2 for pair in history
            ):
                raise RowError("'history' must be a list of [instruction, answer] pairs")
            for user, answer in history:
                messages.append({"role": "user", "content": _text(user, "history question", notes)})
                messages.append(
                    {"role": "assistant", "content": _text(answer, "history answer", notes)}
                )
        instruction = _text(row.get(mapping["instruction"]), f"'{mapping['instruction']}'", notes)
        extra = ""
        if mapping.get("input"):
            extra = _text(row.get(mapping["input"]), f"'{mapping['input']}'", notes, required=False)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        messages.append({"role": "user", "content": user})
        messages.append(
            {
                "role": "assistant",
                "content": _text(row.get(mapping["output"]), f"'{mapping['output']}'", notes),
            }
        )
    else:
        messages.append(
            {
                "role": "user",
                "content": _text(row.get(mapping["prompt"]), f"'{mapping['prompt']}'", notes),
            }
        )
        messages.append(
            {
                "role": "assistant",
                "content": _text(
                    row.get(mapping["completion"]), f"'{mapping['completion']}'", notes
                ),
            }
        )
    return {"messages": check_order(messages, notes)}, notes


def check_order(messages: list[dict[str, str]], notes: list[str]) -> list[dict[str, str]]:
    """System first (optional), then user and assistant alternating, ending on the assistant."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    for number, message in enumerate(body, 2 if body is not messages else 1):
        if message["role"] == "system":
            raise RowError(f"roles out of order: a system message at turn {number}, not first")
    if not any(m["role"] == "assistant" for m in body):
        raise RowError("has no assistant turn, so there is nothing to learn")
    if body[0]["role"] != "user":
        raise RowError("roles out of order: the conversation must start with a user turn")
    for number in range(1, len(body)):
        if body[number]["role"] == body[number - 1]["role"]:
            raise RowError(
                f"roles out of order: two {body[number]['role']} turns in a row "
                f"(turns {number} and {number + 1})"
            )
    if body[-1]["role"] == "user":
        notes.append("the last user turn has no answer and was dropped")
        messages = messages[:-1]
    return messages
