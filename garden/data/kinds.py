"""The shapes of processed rows (``train.jsonl`` / ``eval.jsonl``) and how to tell them apart.

Every imported dataset is normalised to one of four kinds, following TRL's dataset conventions
and the Hugging Face chat-template conventions, so trainers and templates take rows unchanged:

- ``chat``: ``{"messages": [turn, ...], "tools"?: [tool, ...]}``. A turn is
  ``{"role": "system"|"user"|"assistant"|"tool", "content": str | None}``; an assistant turn may
  carry ``"tool_calls": [{"type": "function", "function": {"name": str, "arguments": dict}}]``
  (``content`` may then be ``None``); a tool turn may carry ``"name"`` and ``"tool_call_id"``.
  A tool is ``{"type": "function", "function": {"name", "description", "parameters"}}``.
- ``text``: ``{"text": str}`` (continued pre-training).
- ``preference``: ``{"prompt": [turn, ...], "chosen": [assistant turn], "rejected": [assistant
  turn]}`` (TRL's conversational preference format; DPO and ORPO).
- ``feedback``: ``{"prompt": [turn, ...], "completion": [assistant turn], "label": bool}``
  (TRL's conversational unpaired preference format; KTO).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

DatasetKind = Literal["chat", "text", "preference", "feedback"]
DATASET_KINDS: tuple[DatasetKind, ...] = ("chat", "text", "preference", "feedback")

OBJECTIVES_BY_KIND: dict[DatasetKind, tuple[str, ...]] = {
    "chat": ("sft", "grpo"),
    "text": ("sft", "grpo"),
    "preference": ("dpo", "orpo"),
    "feedback": ("kto",),
}


def row_kind(row: Mapping[str, Any]) -> DatasetKind:
    """The kind of one processed row, by its keys."""
    if "chosen" in row and "rejected" in row:
        return "preference"
    if "label" in row and "completion" in row:
        return "feedback"
    if "messages" in row:
        return "chat"
    return "text"
