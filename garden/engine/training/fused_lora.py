"""PEFT's LoRA linear layer with its update folded into one ``addmm`` on the CPU.

PEFT computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: besides the three matmuls,
a multiply and an add over the layer's whole output, and in the backward one more multiply,
each a pass over a ``[tokens, out_features]`` activation, for seven layers per decoder block.
``torch.addmm(base(x), lora_A(dropout(x)), scaling * B^T)`` gives the same sum in one kernel:
the scaling rides on the matmul, the base output is the addend, and its backward needs no
element-wise pass of that size either. It rounds once instead of three times in bf16.

Its dropout draws only the positions it drops. ``torch.nn.functional.dropout`` on a CPU draws
one Bernoulli sample per element (about 40 % of a bf16 step at LoRA's default p = 0.05,
docs/benchmarks.md). Here the dropped positions are drawn as a Bernoulli process by its gaps
(geometric, one uniform each), so the draws number about ``p`` per element, not one; the kept
copy is a plain copy with those positions zeroed, and the backward zeroes the same positions of
the input's gradient in place, where a mask would take one more pass over it each way. The
``1 / (1 - p)`` rescaling rides on the ``addmm``'s ``alpha``, applied to the update's
``[tokens, out_features]`` product instead of the ``[tokens, in_features]`` input.

Only the plain case is fused: one active vanilla LoRA adapter (no DoRA or other variant), not
merged, adapters enabled, no per-sample ``adapter_names``, on a CPU tensor. Anything else runs
PEFT's own forward.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from garden.engine.training import int8_frozen


def _fusable_adapter(layer: Any, x: Any, kwargs: dict[str, Any]) -> str | None:
    """The one active adapter the fused path can serve, else None (PEFT's forward)."""
    import torch

    if x.device.type != "cpu" or layer.disable_adapters or layer.merged or kwargs:
        return None
    active = layer.active_adapters
    if len(active) != 1 or active[0] not in layer.lora_A or active[0] in layer.lora_variant:
        return None
    name = active[0]
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    if lora_b.bias is not None:
        return None
    # Outside autocast, bf16 base weights with fp32 adapters give outputs of two dtypes.
    same_dtype = layer.get_base_layer().weight.dtype == lora_a.weight.dtype == lora_b.weight.dtype
    return name if same_dtype or torch.is_autocast_enabled("cpu") else None


def dropped_positions(count: int, p: float) -> Any:
    """The ascending flat indices that a dropout with probability ``p`` (``0 < p < 1``) zeroes
    among ``count`` values: each index independently with probability ``p``, drawn as the
    Bernoulli process's gaps (geometric: ``1 + floor(log(1 - u) / log(1 - p))``, one uniform
    each), so the work grows with ``p * count``. Seeded by torch's CPU generator."""
    import torch

    expected = count * p
    draws = int(expected + 8 * math.sqrt(expected * (1 - p)) + 64)
    per_log = 1.0 / math.log1p(-p)
    parts, last = [], -1
    while last < count:  # 8 standard deviations past the mean: rarely a second round
        uniform = torch.rand(draws, dtype=torch.float32)
        gaps = uniform.neg_().log1p_().mul_(per_log).floor_().to(torch.int64).add_(1)
        ends = gaps.cumsum_(0).add_(last)
        parts.append(ends)
        last = int(ends[-1])
    positions = parts[0] if len(parts) == 1 else torch.cat(parts)
    return positions[: int(torch.searchsorted(positions, count))]


@functools.cache
def _dropped_down_function() -> Any:
    import torch

    class DroppedDown(torch.autograd.Function):
        """``dropout(x) @ A^T`` without its ``1 / (1 - p)``, for a 2-D contiguous ``x``; the
        matmul runs in the dtype autocast picks, the gradients come back in the inputs'."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, p: float) -> Any:
            positions = dropped_positions(x.numel(), p)
            kept = x.clone()
            kept.view(-1).index_fill_(0, positions, 0)
            ctx.save_for_backward(kept, weight, positions)
            return kept @ weight.t()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, Any, None]:
            kept, weight, positions = ctx.saved_tensors
            grad_x = grad_weight = None
            if ctx.needs_input_grad[0]:
                grad_x = grad @ weight.to(grad.dtype)
                grad_x.view(-1).index_fill_(0, positions, 0)
                grad_x = grad_x.to(kept.dtype)
            if ctx.needs_input_grad[1]:
                grad_weight = (grad.t() @ kept.to(grad.dtype)).to(weight.dtype)
            return grad_x, grad_weight, None

    return DroppedDown


def dropped_down(x: Any, weight: Any, p: float) -> Any:
    """``(x * keep) @ weight^T`` for an ``x`` of any leading shape, ``keep`` zero at
    ``dropped_positions(x.numel(), p)``: LoRA's down projection of an inverted dropout before
    its ``1 / (1 - p)``. ``0 < p < 1``."""
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    down = _dropped_down_function().apply(flat, weight, p)
    return down.view(*x.shape[:-1], down.shape[-1])


def _down(dropout: Any, lora_a: Any, x: Any) -> tuple[Any, float]:
    """What ``lora_A(lora_dropout(x))`` gives, as ``(down, rescale)``: the update is
    ``lora_B(down) * rescale``. A training dropout goes through ``dropped_down``; any other
    module runs as it is, with rescale 1.0.

    Under ``torch.compile`` the module's own dropout stays: inductor draws its mask inside the
    fused kernel, and the sampling here would break the compiled layer's graph."""
    import torch

    if (
        isinstance(dropout, torch.nn.Dropout)
        and dropout.training
        and not dropout.inplace
        and not torch.compiler.is_compiling()
        and 0.0 < dropout.p < 1.0
        and lora_a.bias is None
    ):
        p = float(dropout.p)
        return dropped_down(x, lora_a.weight, p), 1.0 / (1.0 - p)
    return lora_a(dropout(x)), 1.0


def install() -> None:
    """Route ``peft``'s ``lora.Linear.forward`` through the fused path where it applies
    (idempotent; the process keeps it)."""
    import torch
    from peft.tuners.lora.layer import Linear

    original = Linear.forward
    if getattr(original, "garden_fused", False):
        return

    def forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        name = None if args else _fusable_adapter(self, x, kwargs)
        if name is None:
            return original(self, x, *args, **kwargs)
        lora_a = self.lora_A[name]
        base = self.base_layer
        if getattr(self, int8_frozen.MARK, False) and int8_frozen.applies(base, x):
            result = int8_frozen.frozen_linear(base, x)
        else:
            result = base(x)
        down, rescale = _down(
            self.lora_dropout[name], lora_a, self._cast_input_dtype(x, lora_a.weight.dtype)
        )
        fused = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            down.reshape(-1, down.shape[-1]),
            self.lora_B[name].weight.t(),
            alpha=self.scaling[name] * rescale,
        )
        return fused.view(result.shape)

    forward.garden_fused = True  # type: ignore[attr-defined]
    Linear.forward = forward  # type: ignore[method-assign]
