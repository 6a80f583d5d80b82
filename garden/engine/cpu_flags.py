"""The CPU's feature flags, read once from ``/proc/cpuinfo``; the engine's kernel choices
(training precision, attention kernels, onnxruntime threads, serving dtype) all ask here."""

from __future__ import annotations

import functools
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16 = frozenset({"amx_bf16", "avx512_bf16"})


def first_field(cpuinfo: str, name: str) -> str | None:
    """The value of the first ``name`` line (``flags``, ``model name``) that ``cpuinfo``
    (``/proc/cpuinfo``'s text) lists, stripped; None when there is none."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def parse_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor that ``cpuinfo`` (``/proc/cpuinfo``'s text) lists."""
    return frozenset((first_field(cpuinfo, "flags") or "").split())


@functools.cache
def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (none where ``/proc/cpuinfo`` cannot be read)."""
    return parse_flags(_cpuinfo())


def cpu_model_name() -> str | None:
    """This machine's CPU model name, as ``/proc/cpuinfo`` gives it (None where it does not)."""
    return first_field(_cpuinfo(), "model name")


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has bf16 matmul instructions (AMX or AVX-512 BF16)."""
    return bool(NATIVE_BF16 & (cpu_flags() if flags is None else flags))
