"""Preference pairs (DPO/ORPO) and labelled answers (KTO), normalised to ``kinds.py``'s shapes.

Pairs come as ShareGPT (``conversations`` + ``chosen``/``rejected`` turns), TRL's flat
``prompt``/``chosen``/``rejected`` (strings or message lists), or the implicit-prompt form
(``chosen``/``rejected`` are whole conversations sharing their first turns). Labelled answers
come as OpenAI ``messages`` or ``prompt``/``completion`` with a boolean ``label``.
"""

from __future__ import annotations

import json
from typing import Any

from garden.data.row_errors import RowError
from garden.data.turns import normalise_turns, text_of, turn_keys

TRUE_LABELS = ("true", "yes", "y", "1", "good", "positive")
FALSE_LABELS = ("false", "no", "n", "0", "bad", "negative")


def coerce_label(value: Any) -> bool:
    """A KTO label as a bool: true/false, yes/no and 1/0 are accepted, anything else is not."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (*TRUE_LABELS, *FALSE_LABELS):
        return value.strip().lower() in TRUE_LABELS
    if value is None:
        raise RowError("has no 'label'; give true (a good answer) or false (a bad one)")
    raise RowError(
        f"has the label {value!r}, which is not true or false; "
        "use true/false (yes/no and 1/0 are also accepted)"
    )


def conversation(value: Any, what: str, notes: list[str]) -> list[dict[str, Any]]:
    """A prompt or answer as turns: a string is one turn (user for a prompt, else assistant)."""
    value = json_or_text(value)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(t, dict) for t in value):
        role, content = turn_keys(value)
        return normalise_turns(value, role, content, notes)
    role = "user" if what == "prompt" else "assistant"
    return [{"role": role, "content": text_of(value, what, notes)}]


def json_or_text(value: Any) -> Any:
    """A list or object stored as a JSON string (CSV, Parquet exports), else the value itself."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
    return value


def normalise_preference(row: dict[str, Any], mapping: dict[str, Any]) -> tuple[dict, list[str]]:
    notes: list[str] = []
    answers = []
    for key in ("chosen", "rejected"):
        value = row.get(mapping[key])
        if value in (None, "", []):
            problem = "no" if value is None else "an empty"
            raise RowError(
                f"has {problem} '{mapping[key]}' answer; a preference pair needs a chosen and a "
                "rejected answer"
            )
        answers.append(conversation(value, f"'{mapping[key]}' answer", notes))
    chosen, rejected = answers
    field = mapping.get("prompt") or mapping.get("messages")
    if field and row.get(field) not in (None, "", []):
        prompt = conversation(row[field], "prompt", notes)
        extra = row.get(mapping["input"]) if mapping.get("input") else None
        if isinstance(extra, str) and extra.strip() and prompt[-1]["role"] == "user":
            prompt[-1]["content"] = f"{prompt[-1]['content']}\n\n{extra}"
        chosen, rejected = (
            answer[len(prompt) :] if answer[: len(prompt)] == prompt else answer
            for answer in (chosen, rejected)
        )
    else:
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
        if not prompt:
            raise RowError(
                "has no prompt: give a 'prompt' field, or chosen/rejected conversations that "
                "start with the same user turn"
            )
    system = mapping.get("system")
    if system and row.get(system) not in (None, "") and prompt[0]["role"] != "system":
        prompt.insert(
            0, {"role": "system", "content": text_of(row[system], "system prompt", notes)}
        )
    if prompt[-1]["role"] not in ("user", "tool"):
        raise RowError("the prompt must end with a user turn, the one the answers reply to")
    for what, answer in (("chosen", chosen), ("rejected", rejected)):
        if not answer or answer[0]["role"] != "assistant":
            raise RowError(f"the '{what}' answer must be an assistant turn")
    if chosen == rejected:
        raise RowError("has the same chosen and rejected answer, so there is nothing to prefer")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, notes


def normalise_feedback(row: dict[str, Any], mapping: dict[str, Any]) -> tuple[dict, list[str]]:
    notes: list[str] = []
    label = coerce_label(row.get(mapping["label"]))
    if mapping.get("messages"):
        turns = conversation(row.get(mapping["messages"]), f"'{mapping['messages']}'", notes)
        prompt, completion = turns[:-1], turns[-1:]
    else:
        prompt = conversation(row.get(mapping.get("prompt", "prompt")), "prompt", notes)
        completion = conversation(
            row.get(mapping.get("completion", "completion")), "completion", notes
        )
    if not prompt or completion[0]["role"] != "assistant":
        raise RowError(
            "must be a prompt followed by the one assistant answer that the label judges"
        )
    return {"prompt": prompt, "completion": completion, "label": label}, notes
