"""Rows as token ids for training: a conversation's ids with the mask of the tokens that carry
loss (assistant turns, their loss weights, tool calls), and text documents cut into chunks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from garden.engine.training.tool_template import render_chat


def encode_chat(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    assistant_only: bool,
    tools: list[dict[str, Any]] | None = None,
) -> dict:
    """Token ids of one conversation (with its tools) and a mask of the tokens that carry loss.

    Assistant spans, tool calls included, are found by rendering growing prefixes of the
    conversation with the chat template (``render_chat``); the tool list and tool results carry
    no loss. An assistant turn marked ``"train": false`` (its loss weight was 0) carries none
    either, whether or not the loss is on assistant turns only. A template that does not render
    prefix-consistently falls back to loss on all tokens.
    """
    text = render_chat(tokenizer, messages, tools)
    weighted = any(m.get("train") is False for m in messages)
    spans: list[tuple[int, int, bool]] | None = [] if assistant_only or weighted else None
    if spans is not None:
        for i, message in enumerate(messages):
            if message.get("role") != "assistant" or i == 0:
                continue
            start = render_chat(tokenizer, messages[:i], tools, add_generation_prompt=True)
            end = render_chat(tokenizer, messages[: i + 1], tools)
            if not (text.startswith(start) and text.startswith(end)):
                spans = None
                break
            spans.append((len(start), len(end), message.get("train") is not False))
        if spans is not None and not spans:
            spans = None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    if spans is None:
        mask = [1] * len(ids)
    else:
        mask = [_carries_loss(begin, spans, assistant_only) for begin, _ in enc["offset_mapping"]]
    return {"input_ids": ids, "assistant_masks": mask}


def _carries_loss(begin: int, spans: list[tuple[int, int, bool]], assistant_only: bool) -> int:
    """1 when the token starting at ``begin`` is trained: in a trained assistant span, or (loss
    on every token) outside every untrained one."""
    span = next((s for s in spans if s[0] <= begin < s[1]), None)
    if span is None:
        return 0 if assistant_only else 1
    return int(span[2])


def encode_text(tokenizer: Any, text: str) -> dict:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return {"input_ids": ids, "assistant_masks": [1] * len(ids)}


def read_jsonl(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def tokenize_rows(
    rows: list[dict[str, Any]], tokenizer: Any, max_len: int, assistant_only: bool
) -> list[dict[str, Any]]:
    """Pre-tokenised examples (``input_ids`` + ``assistant_masks``). A conversation is truncated
    to ``max_len``; a text document longer than that is split into consecutive chunks of
    ``max_len`` tokens (continued pre-training's grouping), so none of its text goes unused."""
    out: list[dict[str, list[int]]] = []
    for row in rows:
        if "messages" in row:
            encoded = encode_chat(tokenizer, row["messages"], assistant_only, row.get("tools"))
            chunks = [{key: value[:max_len] for key, value in encoded.items()}]
        else:
            chunks = text_chunks(encode_text(tokenizer, str(row.get("text", ""))), max_len)
        out.extend(c for c in chunks if len(c["input_ids"]) > 1 and any(c["assistant_masks"]))
    return out


def text_chunks(encoded: dict[str, list[int]], max_len: int) -> list[dict[str, list[int]]]:
    """``encoded`` cut into consecutive pieces of at most ``max_len`` tokens; a last piece of
    one token (which teaches nothing) takes one more from the piece before it."""
    total = len(encoded["input_ids"])
    starts = list(range(0, total, max_len))
    if len(starts) > 1 and total - starts[-1] == 1:
        starts[-1] -= 1
    ends = [*starts[1:], total]
    return [
        {key: value[start:end] for key, value in encoded.items()}
        for start, end in zip(starts, ends, strict=True)
    ]
