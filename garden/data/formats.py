"""Format detection and normalisation of rows to the kinds of ``kinds.py``.

A *mapping* says which field plays which part. Its ``format`` key is one of ``FORMATS``; the
other keys depend on it:

- ``openai`` / ``sharegpt``: ``messages`` (the list field), ``role`` and ``content`` (keys of
  each turn), optional ``system`` (a top-level system prompt field) and ``tools``; tool calls
  and results are kept as tool turns.
- ``alpaca``: ``instruction``, ``output``, optional ``input``, ``system``, ``history``.
- ``prompt_completion``: ``prompt``, ``completion``, optional ``system``.
- ``text``: ``text``.
- ``preference``: ``chosen``, ``rejected``, optional ``prompt`` or ``messages`` (the shared
  conversation), ``system``; without a prompt field the shared first turns are the prompt.
- ``feedback``: ``label`` and either ``messages`` or ``prompt``/``completion``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from garden.data.kinds import DatasetKind
from garden.data.preference import coerce_label, normalise_feedback, normalise_preference
from garden.data.row_errors import RowError
from garden.data.tool_calls import parse_tools
from garden.data.turns import (
    TURN_CONTENT_KEYS,
    TURN_ROLE_KEYS,
    check_order,
    normalise_turns,
    text_of,
)
from garden.errors import DatasetError

__all__ = ["RowError", "check_order"]

FORMATS = ("openai", "sharegpt", "alpaca", "prompt_completion", "text", "preference", "feedback")
CHAT_FORMATS = ("openai", "sharegpt", "alpaca", "prompt_completion")
KIND_BY_FORMAT: dict[str, DatasetKind] = {
    "text": "text",
    "preference": "preference",
    "feedback": "feedback",
}
EXPECTED = (
    "messages/conversations, instruction/output, prompt/completion, prompt/chosen/rejected, "
    "messages or prompt/completion with a label, or text"
)

MESSAGE_FIELDS = (
    "messages",
    "conversations",
    "conversation",
    "chat",
    "dialog",
    "dialogue",
    "turns",
)
SYSTEM_FIELDS = ("system", "system_prompt", "instructions_system")
INSTRUCTION_FIELDS = ("instruction", "instructions")
INPUT_FIELDS = ("input", "context")
OUTPUT_FIELDS = ("output", "response", "answer", "completion")
PROMPT_FIELDS = ("prompt", "question", "query", "input")
COMPLETION_FIELDS = ("completion", "response", "answer", "output")
TEXT_FIELDS = ("text", "content", "document", "body")
CANONICAL = {
    "openai": {"messages": "messages", "role": "role", "content": "content"},
    "sharegpt": {"messages": "conversations", "role": "from", "content": "value"},
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion"},
    "text": {"text": "text"},
    "preference": {"chosen": "chosen", "rejected": "rejected"},
    "feedback": {"label": "label"},
}
REQUIRED = {
    "openai": ("messages",),
    "sharegpt": ("messages",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "preference": ("chosen", "rejected"),
    "feedback": ("label",),
}
OPTIONAL = {
    "openai": ("role", "content", "system", "tools"),
    "sharegpt": ("role", "content", "system", "tools"),
    "alpaca": ("input", "system", "history"),
    "prompt_completion": ("system",),
    "text": (),
    "preference": ("prompt", "input", "messages", "system"),
    "feedback": ("messages", "prompt", "completion"),
}


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


# Whole conversations in ``chosen_messages``/``rejected_messages`` (LLaMA-Factory's v1 shape)
# are read like ``chosen``/``rejected`` ones: the turns they share become the prompt.
PAIR_FIELDS = (("chosen", "rejected"), ("chosen_messages", "rejected_messages"))


def _judged_mapping(row: dict[str, Any]) -> dict[str, Any] | None:
    """The mapping of a preference pair or a labelled answer, or None for other rows."""
    pair = next((keys for keys in PAIR_FIELDS if any(row.get(k) is not None for k in keys)), None)
    if pair is not None:
        mapping = {"format": "preference", "chosen": pair[0], "rejected": pair[1]}
        if prompt := _first(row, ("prompt", *INSTRUCTION_FIELDS, "question", "query")):
            mapping["prompt"] = prompt
            if prompt in INSTRUCTION_FIELDS and (extra := _first(row, INPUT_FIELDS)):
                mapping["input"] = extra
        elif conversation := _first(row, MESSAGE_FIELDS):
            mapping["messages"] = conversation
        if system := _first(row, SYSTEM_FIELDS):
            mapping["system"] = system
        return mapping
    chat = _first(row, MESSAGE_FIELDS)
    if "label" in row and (chat or ("prompt" in row and "completion" in row)):
        return {"format": "feedback", "label": "label"} | (
            {"messages": chat} if chat else {"prompt": "prompt", "completion": "completion"}
        )
    return None


def row_mapping(row: dict[str, Any]) -> dict[str, Any] | None:
    """The mapping one row fits best, or None when it fits no known format."""
    if judged := _judged_mapping(row):
        return judged
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
                if row.get("tools") not in (None, "", []):
                    mapping["tools"] = "tools"
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


def seen_fields(rows: list[dict[str, Any]], most: int = 12, longest: int = 30) -> str:
    """The rows' field names for a one-line message: the first ``most``, each cut short."""
    names = sorted({" ".join(str(key).split()) for row in rows for key in row})
    shown = [name if len(name) <= longest else name[: longest - 1] + "…" for name in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return (", ".join(shown) or "none") + more


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
        raise DatasetError(
            f"The format was not recognised: saw fields {seen_fields(rows)}; expected {EXPECTED}.",
            hint="Set the mapping yourself (which field is the prompt and which the answer), "
            "or rename the fields.",
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
        if "chosen" in mapping or "rejected" in mapping:
            fmt = "preference"
        elif "label" in mapping:
            fmt = "feedback"
        elif "messages" in mapping:
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


def normalise(row: dict[str, Any], mapping: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One row in its kind's shape (see ``kinds.py``), plus notes worth a warning."""
    fmt = mapping["format"]
    if fmt == "preference":
        return normalise_preference(row, mapping)
    if fmt == "feedback":
        return normalise_feedback(row, mapping)
    notes: list[str] = []
    if fmt == "text":
        return {"text": text_of(row.get(mapping["text"]), f"'{mapping['text']}'", notes)}, notes
    _refuse_bad_label(row)
    messages: list[dict[str, Any]] = []
    system_field = mapping.get("system")
    if system_field and row.get(system_field) not in (None, ""):
        messages.append(
            {"role": "system", "content": text_of(row[system_field], "system prompt", notes)}
        )
    tools = None
    if fmt in ("openai", "sharegpt"):
        tools = parse_tools(row.get(mapping.get("tools", "tools")))
        turns = _as_list(row.get(mapping["messages"]))
        if turns is None:
            raise RowError(f"has no '{mapping['messages']}' field")
        if not isinstance(turns, list) or not turns:
            raise RowError(f"'{mapping['messages']}' must be a non-empty list of turns")
        declared = {tool["function"]["name"] for tool in tools} if tools else None
        messages += normalise_turns(
            turns, mapping["role"], mapping["content"], notes, declared=declared
        )
    elif fmt == "alpaca":
        messages += _alpaca_turns(row, mapping, notes)
    else:
        prompt, completion = mapping["prompt"], mapping["completion"]
        messages.append({"role": "user", "content": text_of(row.get(prompt), f"'{prompt}'", notes)})
        messages.append(
            {"role": "assistant", "content": text_of(row.get(completion), f"'{completion}'", notes)}
        )
    sample: dict[str, Any] = {"messages": check_order(messages, notes)}
    if tools:
        sample["tools"] = tools
    return sample, notes


def _refuse_bad_label(row: dict[str, Any]) -> None:
    """A row labelled false is a bad example (KTO): it must never become an SFT example."""
    if "label" not in row:
        return
    try:
        good = coerce_label(row["label"])
    except RowError:
        return
    if not good:
        raise RowError(
            "is labelled false (an answer marked bad), so it must not be trained on as an "
            "example; import the file as labelled feedback (KTO) or drop the row"
        )


def _alpaca_turns(row: dict[str, Any], mapping: dict[str, Any], notes: list[str]) -> list[dict]:
    messages: list[dict[str, Any]] = []
    history = row.get(mapping["history"]) if mapping.get("history") else None
    history = _as_list(history)
    if history not in (None, "", []):
        if not isinstance(history, list) or not all(
            isinstance(pair, list | tuple) and len(pair) == 2 for pair in history
        ):
            raise RowError("'history' must be a list of [instruction, answer] pairs")
        for user, answer in history:
            messages.append({"role": "user", "content": text_of(user, "history question", notes)})
            messages.append(
                {"role": "assistant", "content": text_of(answer, "history answer", notes)}
            )
    instruction = text_of(row.get(mapping["instruction"]), f"'{mapping['instruction']}'", notes)
    extra = ""
    if mapping.get("input"):
        extra = text_of(row.get(mapping["input"]), f"'{mapping['input']}'", notes, required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages.append({"role": "user", "content": user})
    output = mapping["output"]
    messages.append(
        {"role": "assistant", "content": text_of(row.get(output), f"'{output}'", notes)}
    )
    return messages
