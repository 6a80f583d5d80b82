"""Regional ``torch.compile`` of a model's decoder layers for one training run (``torch_compile``).

Each repeated decoder layer is compiled in place (``Module.compile``, the regional recipe of
PyTorch's tutorials), so one compiled graph serves every layer and the parameter names, hence
checkpoints and the saved adapter, stay as they are. On a CPU with native bf16 the fused
element-wise work makes a step about 1.2x faster once the first steps have compiled
(docs/training.md); in fp32 it gains a few percent at most, and on a 2-core AVX-512 Xeon without
BF16 a compiled fp32 run made 0.79x the eager tok/s (docs/benchmarks.md).

``torch_compile`` None (auto, opt-in) compiles a bf16 SFT run on the CPU without a budget once its
first steps show at least ``AUTO_COMPILE_AFTER_S`` of training still to go: long enough to win
back 10-60 s of compiling. Short runs, the budgeted quick demo among them, stay eager. It is not
the default: one 90-step run end to end (bench/compile_auto.py) gained nothing measurable.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

COMPILER_VARIABLE = "CXX"
DEFAULT_COMPILER = "g++"  # what torch's inductor calls on Linux unless CXX names another
AUTO_COMPILE_AFTER_S = 300.0  # eager training still to go that makes auto compile
AUTO_TIMED_STEPS = 3  # steps timed (after the first, which warms up) before auto decides


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


def auto_compiles(spec: Any, device: str, precision: str) -> bool:
    """Whether an unset ``torch_compile`` may compile this run (once it proves long enough)."""
    budgeted = spec.time_budget_s is not None or spec.co2_budget_g is not None
    plain = spec.objective == "sft" and not spec.distributed and not budgeted
    return plain and device == "cpu" and precision == "bf16" and cpp_compiler() is not None


def worth_compiling(seconds_to_go: float) -> bool:
    return seconds_to_go >= AUTO_COMPILE_AFTER_S


class LayerCompiler:
    """Compiles a model's decoder layers for a while, then puts them back to eager."""

    def __init__(self, model: Any, log: Callable[[str], None]) -> None:
        self.model = model
        self.log = log
        self.layers: list[Any] = []

    def compile(self, why: str) -> None:
        self.layers = decoder_layers(self.model)
        for layer in self.layers:
            layer.compile(dynamic=True)
        self.log(
            f"Compiling {len(self.layers)} decoder layers (torch.compile, {why}): the next step "
            "takes 10-60 s longer, the rest run faster"
        )

    def restore(self) -> None:
        """Eager layers again (the Trainer trains without a KV cache, ``use_cache``, whose
        per-layer state would have recompiled every layer; evaluation and saving run eagerly)."""
        for layer in self.layers:
            layer._compiled_call_impl = None  # what Module.compile set; no public undo exists
        self.layers = []


def auto_compile_callback(compiler: LayerCompiler) -> Any:
    """A ``TrainerCallback`` that compiles the layers once the run's first steps show it is
    long enough (``worth_compiling``), and never decides again."""
    from transformers import TrainerCallback

    class AutoCompile(TrainerCallback):
        def __init__(self) -> None:
            self.first_step = -1
            self.t_first = 0.0
            self.decided = False

        def on_step_end(self, args, state, control, **kwargs):
            if self.decided:
                return
            if self.first_step < 0:
                self.first_step, self.t_first = state.global_step, time.monotonic()
                return
            timed = state.global_step - self.first_step
            if timed < AUTO_TIMED_STEPS:
                return
            self.decided = True
            per_step = (time.monotonic() - self.t_first) / timed
            to_go = max(0, state.max_steps - state.global_step) * per_step
            if worth_compiling(to_go):
                compiler.compile(f"auto: ≈{to_go / 60:.0f} min of eager training to go")

    return AutoCompile()
