"""PEFT's LoRA linear layer with its update folded into one ``addmm`` on the CPU.

PEFT computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``: besides the three matmuls,
a multiply and an add over the layer's whole output, and in the backward one more multiply,
each a pass over a ``[tokens, out_features]`` activation, for seven layers per decoder block.
``torch.addmm(base(x), lora_A(dropout(x)), scaling * B^T)`` gives the same sum in one kernel:
the scaling rides on the matmul, the base output is the addend, and its backward needs no
element-wise pass of that size either. It rounds once instead of three times in bf16.

Its dropout draws the mask from 16 random bits per element, taken from one 64-bit draw per
four elements of torch's generator, where ``torch.nn.functional.dropout`` on a CPU draws one
Bernoulli sample per element: at LoRA's default p = 0.05 that sampling was about 40 % of a bf16
training step (docs/benchmarks.md), and this mask costs about half as much forward + backward.
It keeps a boolean mask for the backward, not one of the input's dtype, zeroes the dropped
values in one pass each way (``torch.where``; ``masked_fill`` copies the input first) and leaves
the ``1 / (1 - p)`` rescaling to the ``addmm``'s ``alpha``, applied to the update's
``[tokens, out_features]`` product instead of the ``[tokens, in_features]`` input, forward and
backward.

Only the plain case is fused: one active vanilla LoRA adapter (no DoRA or other variant), not
merged, adapters enabled, no per-sample ``adapter_names``, on a CPU tensor. Anything else runs
PEFT's own forward.
"""

from __future__ import annotations

from typing import Any


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


def cpu_dropped(x: Any, p: float) -> Any:
    """``x`` with each value zeroed with probability ``p`` (to 1/65,536) and the rest left as
    they are: inverted dropout before its ``1 / (1 - p)`` rescaling. ``0 < p < 1``."""
    import torch

    count = x.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    lanes = words.view(torch.int16)[:count].view(x.shape)
    return torch.where(lanes < -32768 + round(p * 65536), 0, x)


def cpu_dropout(x: Any, p: float) -> Any:
    """Inverted dropout of ``x`` with probability ``p`` (to 1/65,536), for training on a CPU."""
    import torch

    if p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return cpu_dropped(x, p).mul_(1.0 / (1.0 - p))


def _dropout(module: Any, x: Any) -> tuple[Any, float]:
    """What PEFT's ``lora_dropout`` module does to ``x``, as ``(values, rescale)``: the update
    is ``lora_B(lora_A(values)) * rescale``. ``cpu_dropped`` samples the mask and leaves the
    rescaling to the caller; any other module returns its own output and 1.0.

    Under ``torch.compile`` the module's own dropout stays: inductor draws its mask inside the
    fused kernel, and ``random_`` would break the compiled layer's graph in seven places."""
    import torch

    if (
        isinstance(module, torch.nn.Dropout)
        and module.training
        and not module.inplace
        and not torch.compiler.is_compiling()
        and 0.0 < module.p < 1.0
    ):
        return cpu_dropped(x, float(module.p)), 1.0 / (1.0 - float(module.p))
    return module(x), 1.0


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
        result = self.base_layer(x)
        values, rescale = _dropout(
            self.lora_dropout[name], self._cast_input_dtype(x, lora_a.weight.dtype)
        )
        down = lora_a(values)
        fused = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            down.reshape(-1, down.shape[-1]),
            self.lora_B[name].weight.t(),
            alpha=self.scaling[name] * rescale,
        )
        return fused.view(result.shape)

    forward.garden_fused = True  # type: ignore[attr-defined]
    Linear.forward = forward  # type: ignore[method-assign]
