"""Regional ``torch.compile`` of a model's decoder layers for one training run (``torch_compile``).

Each repeated decoder layer is compiled in place (``Module.compile``, the regional recipe of
PyTorch's tutorials), so one compiled graph serves every layer and the parameter names, hence
checkpoints and the saved adapter, stay as they are. On a CPU with native bf16 the fused
element-wise work makes a step about 1.2x faster once the first steps have compiled
(docs/benchmarks.md); in fp32, where matmuls dominate, the gain is a few percent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

COMPILER_VARIABLE = "CXX"
DEFAULT_COMPILER = "g++"  # what torch's inductor calls on Linux unless CXX names another


def cpp_compiler() -> str | None:
    """The C++ compiler inductor will call, as a path, or None when there is none."""
    return shutil.which(os.environ.get(COMPILER_VARIABLE) or DEFAULT_COMPILER)


def decoder_layers(model: Any) -> list[Any]:
    """The model's repeated blocks: the largest ``ModuleList`` whose items share one class."""
    import torch

    best: list[Any] = []
    for module in model.modules():
        longer = isinstance(module, torch.nn.ModuleList) and len(module) > len(best)
        if longer and len({type(item) for item in module}) == 1:
            best = list(module)
    return best


@contextlib.contextmanager
def compiled_decoder_layers(model: Any, log: Callable[[str], None]) -> Iterator[int]:
    """Train inside: the decoder layers run compiled (the Trainer trains without a KV cache,
    ``TrainingArguments.use_cache``, whose per-layer state would recompile every layer); after
    it they run eagerly again, for evaluation and saving. Yields how many were compiled."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    log(
        f"Compiling {len(layers)} decoder layers (torch.compile): the first steps take "
        "10-60 s longer, the rest run faster"
    )
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer._compiled_call_impl = None  # what Module.compile set; no public undo exists
