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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GB = 2**30
ACTIVATION_BUDGET_BYTES = 1.5 * GB
# A process's peak besides its activations, fitted to bench/train_memory.py's peaks of the
# default model (docs/benchmarks.md): runtime (torch, transformers, TRL, the data), the weights
# twice over in bf16 runs (fp32 and the autocast copies), and a DDP rank's gloo buffers.
RUNTIME_BYTES = 1.2 * GB
DDP_RANK_BYTES = 0.6 * GB
# Recomputing each layer in the backward pass keeps about a quarter of the activations
# (measured: 1 process, 1,024 tokens a micro-batch, 2.95 GB peak without, 1.95 GB with).
CHECKPOINTED_SHARE = 0.25
# An fp32 run (a CPU without bf16) keeps no bf16 copies of the weights but fp32 activations:
# measured on the default model (bench/train_memory.py, 2026-12-07), its peaks ran 0.7-1.3 GB
# above a bf16 run's and up to 0.56 GB above the bf16 fit, at 512-1,024 tokens a micro-batch.
FP32_ACTIVATION_SHARE = 1.8
# The frozen weights' int8 copy (int8_frozen) is a byte a parameter: a quarter of fp32 weights.
INT8_COPY_SHARE = 0.25


def activation_bytes_per_token(config: Mapping[str, Any]) -> float:
    """Bytes a trained token keeps until the backward pass; 0 when the config does not say.

    Per layer, fp32 copies of a few hidden-wide and intermediate-wide tensors; at the end,
    the LM head's logits and their gradient over the vocabulary. The coefficients were fitted
    to the default model's measured peaks (SmolLM2-135M: 1.26 MB a token)."""
    try:
        layers = int(config["num_hidden_layers"])
        hidden = int(config["hidden_size"])
        intermediate = int(config.get("intermediate_size") or 4 * hidden)
        vocab = int(config["vocab_size"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    return 4.0 * (layers * (6 * hidden + 3 * intermediate) + 1.5 * vocab)


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


@dataclass(frozen=True)
class MemoryPlan:
    """What a CPU run's processes on one machine should peak at, against the run's limit."""

    checkpointing: bool
    rank_bytes: float  # the estimated peak of one process, as planned
    processes: int
    limit_bytes: float

    def line(self) -> str:
        """The plan as the job's log shows it."""
        how = "on: activations are recomputed" if self.checkpointing else "off"
        return (
            f"Memory: about {self.rank_bytes / GB:.1f} GB per process, "
            f"{self.rank_bytes * self.processes / GB:.1f} GB in all, of a "
            f"{self.limit_bytes / GB:.1f} GB limit; gradient checkpointing {how}"
        )

    @property
    def fits(self) -> bool:
        return self.rank_bytes * self.processes <= self.limit_bytes


def plan_cpu_memory(
    *,
    batch_size: int,
    max_seq_len: int,
    processes: int,
    config: Mapping[str, Any],
    weight_bytes: int,
    limit_bytes: float,
    checkpointing: bool | None,
    fp32: bool = False,
    int8_copy: bool = False,
) -> MemoryPlan:
    """Gradient checkpointing on when the run's processes would not fit ``limit_bytes`` without
    it (``checkpointing`` given: that choice, estimated; a model whose config does not tell its
    cost per token: off). Micro-batches as the trainer makes them. ``fp32``: the run trains
    without autocast; ``int8_copy``: its frozen weights keep an int8 copy too."""
    per_token = activation_bytes_per_token(config)
    tokens = micro_batch_size(batch_size, max_seq_len, per_token) * max_seq_len
    if str(config.get("dtype") or config.get("torch_dtype")) in ("bfloat16", "float16"):
        weight_bytes *= 2  # trained from fp32 weights
    if fp32:
        weights = weight_bytes * (1 + (INT8_COPY_SHARE if int8_copy else 0.0))
        activations = tokens * per_token * FP32_ACTIVATION_SHARE
    else:
        weights, activations = 2 * weight_bytes, tokens * per_token
    base = RUNTIME_BYTES + weights + (DDP_RANK_BYTES if processes > 1 else 0)

    def peak(recompute: bool) -> float:
        return base + activations * (CHECKPOINTED_SHARE if recompute else 1.0)

    if checkpointing is None:
        checkpointing = per_token > 0 and peak(False) * processes > limit_bytes
    return MemoryPlan(checkpointing, peak(checkpointing), processes, limit_bytes)
