"""Training backends: ``trl_peft`` (CPU and GPU) and ``unsloth`` (CUDA only).

Backends run inside the worker process. They receive a ``TrainContext`` that tells them what to
train and how to report, and return a ``TrainOutcome``. Nothing here imports torch at import time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from garden.engine.training.backends.context import Emit, TrainContext, TrainOutcome

__all__ = [
    "BACKENDS",
    "Emit",
    "TrainContext",
    "TrainOutcome",
    "choose_precision",
    "cpu_supports_bf16",
    "cuda_present",
    "run_backend",
    "select_backend",
    "unsloth_installed",
]

BACKENDS = ("auto", "trl_peft", "unsloth")


def cuda_present() -> bool:
    """A cheap guess (no torch import) whether an NVIDIA GPU driver is visible."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia/version").exists()


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def select_backend(requested: str, method: str, cuda: bool | None = None) -> tuple[str, str]:
    """Pick the backend for a job; returns ``(name, reason)`` shown to the person."""
    cuda = cuda_present() if cuda is None else cuda
    if requested == "trl_peft":
        return "trl_peft", "requested"
    if requested == "unsloth":
        if not cuda:
            return "trl_peft", "Unsloth needs a CUDA GPU and none was found; using TRL + PEFT"
        if not unsloth_installed():
            return (
                "trl_peft",
                "Unsloth is not installed (CUDA variant: `--extra gpu`); using TRL + PEFT",
            )
        return "unsloth", "requested"
    if not cuda:
        return "trl_peft", "auto: no CUDA GPU, so TRL + PEFT (runs on the CPU)"
    if not unsloth_installed():
        return "trl_peft", "auto: CUDA GPU found but Unsloth is not installed, so TRL + PEFT"
    return "unsloth", "auto: CUDA GPU and Unsloth available"


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul instructions (AMX or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def choose_precision(requested: str, device: str) -> tuple[str, str]:
    """Resolve ``auto`` to bf16/fp16/fp32 for the device; returns ``(precision, reason)``."""
    if requested != "auto":
        return requested, "requested"
    if device == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16", "GPU supports bf16"
        return "fp16", "GPU lacks bf16, using fp16 mixed precision"
    if cpu_supports_bf16():
        return "bf16", "CPU has native bf16 (AMX / AVX-512 BF16): bf16 autocast"
    return "fp32", "CPU lacks native bf16: fp32"


def run_backend(name: str, ctx: TrainContext) -> TrainOutcome:
    if name == "unsloth":
        from garden.engine.training.backends import unsloth

        return unsloth.train(ctx)
    if ctx.spec.objective == "grpo":
        from garden.engine.training.backends import grpo

        return grpo.train(ctx)
    if ctx.spec.objective != "sft":
        from garden.engine.training.backends import preference

        return preference.train(ctx)
    from garden.engine.training.backends import trl_peft

    return trl_peft.train(ctx)
