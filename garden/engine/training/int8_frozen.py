"""Frozen base weights multiplied in int8 while a LoRA run trains in fp32 on the CPU.

A LoRA step's big matmuls are the frozen weights': the forward ``x @ W^T`` and the input
gradient ``grad @ W``. Neither needs fp32. Here both run as int8 x int8 -> int32 products
(``torch._int_mm``, oneDNN): activations and gradients quantized per row (per token) to 8 bits
(``ROW_LEVELS``), the weight once, per output channel, to 7 bits (``WEIGHT_LEVELS``). The
backward folds the weight's scales into the gradient before quantizing it, so one int8 copy
(a byte a parameter) serves both ways. AVX2 without VNNI sums pairs of u8 x s8 products in
int16 (``vpmaddubsw``): with 8-bit weights those sums saturate and the product was wrong in one
output in twenty on random rows; with 7-bit weights it is exact, so every CPU class computes the
same step. The weights take no gradient (they are frozen), as in the int8 training recipes that
keep 16 bits only for the weight gradient (SwitchBack, Wortsman et al. 2023).

Only gradient-taking fp32 passes use it: evaluation, generation and bf16 autocast keep the
model's own weights, and the adapter is saved for the fp32 base as it is."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

ROW_LEVELS = 127.0
WEIGHT_LEVELS = 63.0
PACKED_ATTRIBUTE = "_garden_int8_packed"
MARK = "garden_int8_matmuls"  # set on the PEFT LoRA layers whose base weights take this path


@dataclass(frozen=True)
class PackedWeight:
    """One frozen ``[out, in]`` weight in int8, one scale per output channel."""

    values: Any  # int8 [out, in]
    scale: Any  # fp32 [out]


def pack(weight: Any) -> PackedWeight:
    import torch

    w = weight.detach().to(torch.float32)
    scale = w.abs().amax(dim=1).clamp_(min=torch.finfo(torch.float32).tiny).div_(WEIGHT_LEVELS)
    return PackedWeight(torch.div(w, scale[:, None]).round_().to(torch.int8), scale)


def packed_weight(linear: Any) -> PackedWeight:
    """The layer's packed weight, made on first use and kept on the layer (the weight is frozen)."""
    packed = getattr(linear, PACKED_ATTRIBUTE, None)
    if packed is None or packed.values.shape != linear.weight.shape:
        packed = pack(linear.weight)
        setattr(linear, PACKED_ATTRIBUTE, packed)
    return packed


def chosen(spec: Any, device: str, precision: str) -> bool:
    """Whether a run multiplies its frozen weights in int8: SFT with LoRA in fp32 on a CPU,
    unless ``int8_matmuls`` is off."""
    plain = spec.objective == "sft" and spec.method == "lora"
    return spec.int8_matmuls is not False and plain and device == "cpu" and precision == "fp32"


def mark(model: Any) -> int:
    """Send the frozen weights of ``model``'s PEFT LoRA layers through ``frozen_linear`` (with
    ``fused_lora`` installed); returns how many layers."""
    from peft.tuners.lora.layer import Linear

    layers = [module for module in model.modules() if isinstance(module, Linear)]
    for layer in layers:
        setattr(layer, MARK, True)
    return len(layers)


def quantize_rows(x: Any) -> tuple[Any, Any]:
    """``(q, scale)`` with ``x ≈ q * scale[:, None]``: int8 rows, one fp32 scale per row."""
    import torch

    # amax and amin, not aminmax: along rows aminmax is 15-25x slower here (2 ms a 1,024 x 1,536
    # call, against 0.08; it took a tenth of an fp32 step)
    scale = torch.maximum(x.amax(dim=1), x.amin(dim=1).neg_())
    scale.clamp_(min=torch.finfo(torch.float32).tiny).div_(ROW_LEVELS)
    return torch.div(x, scale[:, None]).round_().to(torch.int8), scale


def scaled_product(q: Any, row_scale: Any, b: Any, col_scale: Any | None) -> Any:
    """``(q @ b) * row_scale[:, None] * col_scale`` in fp32 (no ``col_scale``: 1), the product
    in int32."""
    import torch

    product = torch._int_mm(q, b).to(torch.float32).mul_(row_scale[:, None])
    return product if col_scale is None else product.mul_(col_scale)


@functools.cache
def _frozen_linear_function() -> Any:
    import torch

    class FrozenInt8Linear(torch.autograd.Function):
        """``x @ W^T`` and its input gradient ``grad @ W`` as int8 products. The backward folds
        the weight's per-output scale into the gradient's rows before quantizing them, so one
        int8 copy of ``W`` serves both ways."""

        @staticmethod
        def forward(ctx: Any, x: Any, packed: PackedWeight) -> Any:
            ctx.packed = packed
            q, scale = quantize_rows(x)
            return scaled_product(q, scale, packed.values.t(), packed.scale)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
            if not ctx.needs_input_grad[0]:
                return None, None
            packed = ctx.packed
            q, scale = quantize_rows(grad * packed.scale)
            return scaled_product(q, scale, packed.values, None), None

    return FrozenInt8Linear


def applies(linear: Any, x: Any) -> bool:
    """Whether ``frozen_linear`` serves this call: a frozen fp32 CPU weight, an fp32 input that
    takes a gradient, outside autocast."""
    import torch

    weight = linear.weight
    return (
        torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and not weight.requires_grad
        and weight.dtype == torch.float32
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")
    )


def frozen_linear(linear: Any, x: Any) -> Any:
    """``linear(x)`` with the weight's products in int8 (``applies`` must hold)."""
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = _frozen_linear_function().apply(flat, packed_weight(linear))
    if linear.bias is not None:
        out = out.add_(linear.bias)
    return out.view(*x.shape[:-1], out.shape[-1])
