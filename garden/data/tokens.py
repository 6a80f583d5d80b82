"""Rendering samples through a model's chat template and counting their tokens.

Only the tokenizer is loaded (lazily, once per model), never the weights. A model folder with a
``tokenizer.json`` gets ``LightTokenizer`` (the ``tokenizers`` package and Jinja2: no torch, so
``model-garden data inspect`` starts in a second); other models get transformers' tokenizer.
"""

from __future__ import annotations

import json
import statistics
from functools import lru_cache
from typing import Any

from garden.config import Settings, get_settings
from garden.data.kinds import row_kind
from garden.data.light_tokenizer import LightTokenizer, has_tokenizer_json
from garden.errors import DatasetError, GardenError

SAMPLE_OVERHEAD_BYTES = 64  # chat-template markup per message, an upper bound in bytes


@lru_cache(maxsize=4)
def _load_tokenizer(ref: str) -> Any:
    if has_tokenizer_json(ref):
        return LightTokenizer(ref)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ref)


def get_tokenizer(model: str | None, settings: Settings) -> Any:
    """The tokenizer of ``model`` (default: the embedded default model)."""
    from garden.models import resolve_model

    try:
        info = resolve_model(model, settings)
        return _load_tokenizer(info.path or info.id)
    except GardenError:
        raise
    except Exception as exc:
        raise DatasetError(
            f"Could not load the tokenizer of {model or 'the default model'} ({exc}).",
            hint="Pick a model that is available offline, e.g. the default model.",
        ) from exc


def render_messages(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = False,
) -> str:
    """A conversation as the trainer renders it: the chat template, tools natively or in the
    Hermes fallback (``engine.training.tool_template``) when the template ignores them."""
    if getattr(tokenizer, "chat_template", None):
        from garden.engine.training.tool_template import render_chat

        return render_chat(tokenizer, messages, tools, add_generation_prompt=add_generation_prompt)
    return "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in messages)


def conversation(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """The longest conversation a processed sample trains on (a pair: with its longer answer)."""
    kind = row_kind(sample)
    if kind == "preference":
        longer = max(sample["chosen"], sample["rejected"], key=lambda turns: len(json.dumps(turns)))
        return [*sample["prompt"], *longer]
    if kind == "feedback":
        return [*sample["prompt"], *sample["completion"]]
    return list(sample["messages"])


def render(tokenizer: Any, sample: dict[str, Any]) -> str:
    """A sample as the model will see it in training."""
    if row_kind(sample) == "text":
        return str(sample["text"])
    return render_messages(tokenizer, conversation(sample), sample.get("tools"))


def count_tokens(tokenizer: Any, samples: list[dict[str, Any]]) -> list[int]:
    if not samples:
        return []
    texts = [render(tokenizer, sample) for sample in samples]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def byte_bound(sample: dict[str, Any]) -> int:
    """An upper bound on a sample's token count (byte-level BPE never has more tokens than bytes)."""
    if row_kind(sample) == "text":
        return len(sample["text"].encode("utf-8")) + SAMPLE_OVERHEAD_BYTES
    tools = len(json.dumps(sample["tools"]).encode("utf-8")) if sample.get("tools") else 0
    return tools + sum(
        len(json.dumps(m, ensure_ascii=False).encode("utf-8")) + SAMPLE_OVERHEAD_BYTES
        for m in conversation(sample)
    )


def token_stats(
    lengths: list[int], rows: int, max_seq_len: int | None = None, *, chunked: bool = False
) -> dict[str, Any]:
    """Summary of token lengths; ``sampled`` is true when they come from a sample of the rows.

    With ``max_seq_len``: how many rows are longer (``over_max_seq_len``, scaled to all rows).
    Conversations over it are truncated in training; text documents (``chunked``) are split
    into consecutive chunks instead, and ``chunks_estimate`` says how many examples they make."""
    if not lengths:
        return {"count": 0, "rows": rows, "sampled": False}
    ordered = sorted(lengths)
    mean = statistics.fmean(ordered)
    stats: dict[str, Any] = {
        "count": len(ordered),
        "rows": rows,
        "sampled": len(ordered) < rows,
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(mean, 1),
        "median": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "total_estimate": round(mean * rows),
    }
    if max_seq_len:
        scale = rows / len(ordered)
        stats["over_max_seq_len"] = round(sum(n > max_seq_len for n in ordered) * scale)
        if chunked:
            chunks = sum(-(-n // max_seq_len) for n in ordered)
            stats["chunks_estimate"] = round(chunks * scale)
    return stats


def render_samples(
    samples: list[dict[str, Any]], model: str | None = None, settings: Settings | None = None
) -> list[str]:
    """Samples rendered through ``model``'s chat template, as training will see them."""
    tokenizer = get_tokenizer(model, settings or get_settings())
    return [render(tokenizer, sample) for sample in samples]
