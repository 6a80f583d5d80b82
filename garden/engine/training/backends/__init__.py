"""Training backends: ``trl_peft`` (CPU and GPU) and ``unsloth`` (CUDA only).

Backends run inside the worker process. They receive a ``TrainContext`` that tells them what to
train and how to report, and return a ``TrainOutcome``. Nothing here imports torch at import time.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

from garden.engine.cpu_flags import has_native_bf16, parse_flags
from garden.engine.training.backends.context import Emit, TrainContext, TrainOutcome

__all__ = [
    "BACKENDS",
    "Emit",
    "TrainContext",
    "TrainOutcome",
    "bf16_capped",
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


# Kernel caps below the bf16 instructions: oneDNN's ISA names, and ATen's (its "default" is
# scalar code; oneDNN's "DEFAULT" means no cap and is not listed).
ONEDNN_CAPS_WITHOUT_BF16 = frozenset(
    {"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni"}
)
ATEN_CAPS_WITHOUT_BF16 = frozenset({"default", "avx2"})


def bf16_capped(environ: Mapping[str, str] | None = None) -> str | None:
    """The variable that holds torch's CPU kernels below the bf16 instructions, as
    ``NAME=value`` (None when nothing does): with oneDNN capped at AVX2, bf16 is emulated and
    slower than fp32, as on a CPU without it."""
    env = os.environ if environ is None else environ
    for name, capped in (
        ("ONEDNN_MAX_CPU_ISA", ONEDNN_CAPS_WITHOUT_BF16),
        ("DNNL_MAX_CPU_ISA", ONEDNN_CAPS_WITHOUT_BF16),
        ("ATEN_CPU_CAPABILITY", ATEN_CAPS_WITHOUT_BF16),
    ):
        value = env.get(name, "").strip()
        if value.lower() in capped:
            return f"{name}={value}"
    return None


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU (``cpuinfo``: ``/proc/cpuinfo``'s text; this machine's by default) has
    native bf16 matmul instructions (AMX or AVX-512 BF16)."""
    return has_native_bf16(None if cpuinfo is None else parse_flags(cpuinfo))


def choose_precision(requested: str, device: str) -> tuple[str, str]:
    """Resolve ``auto`` to bf16/fp16/fp32 for the device; returns ``(precision, reason)``."""
    if requested != "auto":
        return requested, "requested"
    if device == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16", "GPU supports bf16"
        return "fp16", "GPU lacks bf16, using fp16 mixed precision"
    if not cpu_supports_bf16():
        return "fp32", "CPU lacks native bf16: fp32"
    capped = bf16_capped()
    if capped:
        return "fp32", f"CPU kernels capped below bf16 ({capped}): fp32"
    return "bf16", "CPU has native bf16 (AMX / AVX-512 BF16): bf16 autocast"


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
