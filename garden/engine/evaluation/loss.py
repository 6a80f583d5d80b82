"""Held-out loss and perplexity: the mean token loss over answer tokens (all tokens of text
rows), as in training, in batches without gradients."""

from __future__ import annotations

import math
from typing import Any

from garden.engine.training.encoding import tokenize_rows

BATCH_SIZE = 4


def held_out_loss(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_len: int
) -> tuple[float | None, int]:
    """``(mean token loss, rows scored)``; ``(None, 0)`` when no row has a token to score."""
    import torch

    examples = tokenize_rows(rows, tokenizer, max_len, assistant_only=True)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), BATCH_SIZE):
            batch = examples[start : start + BATCH_SIZE]
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            attention = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for i, example in enumerate(batch):
                size = len(example["input_ids"])
                ids[i, :size] = torch.tensor(example["input_ids"])
                attention[i, :size] = 1
                mask = torch.tensor(example["assistant_masks"], dtype=torch.bool)
                labels[i, :size] = torch.where(mask, ids[i, :size], -100)
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
            shifted = labels[:, 1:].to(device)
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                shifted.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(losses)
            count += int((shifted != -100).sum())
    if count == 0:
        return None, 0
    return total / count, len(examples)


def perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(min(loss, 50.0))
