"""Micro-batches that bound a CPU run's activation memory, with the same optimizer steps.

Without gradient checkpointing a step keeps every layer's activations for the backward pass:
on the default model about 1.2 MB per trained token (measured with ``bench/train_memory.py``:
peak RSS 2.5, 3.8 and 7.9 GB for 1,024, 2,048 and 4,096 tokens in a micro-batch). A batch of
8 rows of 512 tokens then needs ~8 GB per process. So on the CPU a batch is split into
micro-batches of at most ~1.5 GB of activations, with gradient accumulation making up the rest:
the same rows per optimizer step and the same loss (the trainer normalises accumulated losses
by the tokens of the whole batch), at the same speed per token (a micro-batch of ~1,000 tokens
already keeps both cores' matmuls busy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

GB = 2**30
ACTIVATION_BUDGET_BYTES = 1.5 * GB


class ModelShape(NamedTuple):
    """What the memory estimates read from a model's ``config.json``."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int


def model_shape(config: Mapping[str, Any]) -> ModelShape | None:
    """Layers, hidden and intermediate sizes, attention heads and vocabulary of ``config``;
    None when it does not tell them."""
    try:
        hidden = int(config["hidden_size"])
        return ModelShape(
            layers=int(config["num_hidden_layers"]),
            hidden=hidden,
            intermediate=int(config.get("intermediate_size") or 4 * hidden),
            heads=int(config.get("num_attention_heads") or 1),
            vocab=int(config["vocab_size"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def activation_bytes_per_token(config: Mapping[str, Any]) -> float:
    """Bytes a trained token keeps until the backward pass; 0 when the config does not say.

    Per layer, fp32 copies of a few hidden-wide and intermediate-wide tensors; at the end,
    the LM head's logits and their gradient over the vocabulary. The coefficients were fitted
    to the default model's measured peaks (SmolLM2-135M: 1.26 MB a token). This sizes the
    micro-batches; ``memory_plan`` estimates a whole process's peak."""
    shape = model_shape(config)
    if shape is None:
        return 0.0
    return 4.0 * (shape.layers * (6 * shape.hidden + 3 * shape.intermediate) + 1.5 * shape.vocab)


def model_config(model_path: str) -> dict[str, Any]:
    """The model folder's ``config.json``; empty when there is none (a hub id, say)."""
    try:
        return dict(json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def micro_batch_size(
    batch_size: int,
    max_seq_len: int,
    bytes_per_token: float,
    budget_bytes: float = ACTIVATION_BUDGET_BYTES,
) -> int:
    """The largest divisor of ``batch_size`` whose rows of ``max_seq_len`` tokens fit the
    budget (at least 1); ``batch_size`` when the cost per token is unknown."""
    if bytes_per_token <= 0 or max_seq_len <= 0:
        return batch_size
    fits = max(1, int(budget_bytes // (bytes_per_token * max_seq_len)))
    return max(d for d in range(1, batch_size + 1) if batch_size % d == 0 and d <= fits)
