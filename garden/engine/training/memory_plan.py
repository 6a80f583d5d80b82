"""What a CPU run's processes will peak at, and whether they need gradient checkpointing.

A process's peak, without checkpointing, is the sum of:

- a fixed part: torch, transformers, TRL, the data, and what the precision's kernels allocate;
- the weights, as a multiple of their fp32 size: frozen bf16 weights under bf16, fp32 ones (and
  their int8 copy, ``int8_frozen``) in fp32 runs, and for a full fine-tune Adam's two moments
  (and under bf16 fp32 master weights with their autocast copies);
- the layers' activations: per token and layer, bytes in proportion to ``4 * hidden +
  intermediate`` (the tensors a layer keeps for its backward pass are mostly hidden-wide);
- the LM head's kept exponentials (``cpu_lm_head.KEPT_BYTES`` at most), and under bf16 the
  attention weights the plain kernels keep for sequences shorter than
  ``packed_attention.plain_kernels_below()``: ``heads * 2 * length`` bytes a token and layer,
  counted at the longest length a sequence can have.

The coefficients were fitted, with no run above its estimate, to ``bench/train_memory.py``'s
peaks of three models (SmolLM2-135M, an fp32 checkpoint; a SmolLM2-360M and a Qwen2.5-0.5B
configuration, bf16 checkpoints) at 256 to 2,048 tokens a micro-batch, with and without
gradient checkpointing, on an AVX-512 BF16 CPU in bf16 and with AVX2 emulated in fp32
(docs/benchmarks.md, 2026-12-07): the estimates ran 0.1-0.8 GB (bf16) and 0.06-1.1 GB (fp32)
over the measured peaks. Recomputed layers keep far more than their inputs in fp32 (half the
activations of the 360M shape, a tenth of the default model's), so that share is fitted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from garden.engine.training.cpu_lm_head import KEPT_BYTES
from garden.engine.training.micro_batch import (
    GB,
    activation_bytes_per_token,
    micro_batch_size,
    model_shape,
)
from garden.engine.training.packed_attention import plain_kernels_below


@dataclass(frozen=True)
class PrecisionCosts:
    """The fitted parts of a process's peak in one training precision."""

    fixed_bytes: float
    weights_share: float  # of the fp32 weights' size: frozen LoRA base weights
    layer_bytes: float  # a token's bytes per layer per unit of 4 * hidden + intermediate
    full_share: float  # what a full fine-tune adds, of the fp32 weights' size
    checkpointed_share: float  # of the layers' activations, kept when they are recomputed


BF16_COSTS = PrecisionCosts(
    fixed_bytes=0.9 * GB,
    weights_share=1.25,
    layer_bytes=8.8,
    full_share=3.5,
    checkpointed_share=0.25,
)
# Measured with the int8 copy; a run without it keeps a quarter of the fp32 weights less.
FP32_COSTS = PrecisionCosts(
    fixed_bytes=1.6 * GB,
    weights_share=1.1,
    layer_bytes=21.0,
    full_share=2.0,
    checkpointed_share=0.55,
)
INT8_COPY_SHARE = 0.25  # the frozen weights' int8 copy: a byte a parameter
DDP_RANK_BYTES = 0.6 * GB  # a DDP rank's gloo buffers


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
    full: bool = False,
) -> MemoryPlan:
    """Gradient checkpointing on when the run's processes would not fit ``limit_bytes`` without
    it (``checkpointing`` given: that choice, estimated; a model whose config does not tell its
    shape: off). Micro-batches as the trainer makes them. ``fp32``: the run trains without
    autocast; ``int8_copy``: its frozen weights keep an int8 copy too; ``full``: every weight
    trains (no LoRA)."""
    if str(config.get("dtype") or config.get("torch_dtype")) in ("bfloat16", "float16"):
        weight_bytes *= 2  # the fp32 size of a half-precision checkpoint
    costs = FP32_COSTS if fp32 else BF16_COSTS
    share = costs.weights_share - (INT8_COPY_SHARE if fp32 and not int8_copy else 0.0)
    share += costs.full_share if full else 0.0
    base = costs.fixed_bytes + share * weight_bytes + (DDP_RANK_BYTES if processes > 1 else 0)
    shape = model_shape(config)
    layers_bytes = head_bytes = 0.0
    if shape is not None:
        layers, hidden, intermediate, heads, vocab = shape
        rows = micro_batch_size(batch_size, max_seq_len, activation_bytes_per_token(config))
        tokens = rows * max_seq_len
        layers_bytes = tokens * layers * costs.layer_bytes * (4 * hidden + intermediate)
        if not fp32:
            longest = min(max_seq_len, plain_kernels_below() - 1)
            layers_bytes += tokens * layers * heads * 2 * longest
        head_bytes = min(tokens * 4 * vocab, KEPT_BYTES)

    def peak(recompute: bool) -> float:
        return base + head_bytes + layers_bytes * (costs.checkpointed_share if recompute else 1.0)

    if checkpointing is None:
        checkpointing = shape is not None and peak(False) * processes > limit_bytes
    return MemoryPlan(checkpointing, peak(checkpointing), processes, limit_bytes)
