"""Warm worker starts: one fork server per app that has imported the training stack once.

A fresh "spawn" worker spends 8–15 s of a 2-core CPU importing torch, transformers, TRL and PEFT
before its first step. With ``WARM_WORKERS`` on (the default), workers are forked from
multiprocessing's fork server, which imports that stack once, when the app starts (or at the
first run of a command), so each run after it starts in well under a second.

A fork server keeps the environment it was started with. A forked worker takes the app's
environment as it is when the run starts (``adopt_environment``), but what the C/C++ runtimes
and the hub libraries read once, at import (``ATEN_CPU_CAPABILITY``, ``OMP_NUM_THREADS``,
``CUDA_VISIBLE_DEVICES``, ``HF_HUB_OFFLINE`` …), cannot be changed after it: a worker is spawned
afresh whenever one of those has changed since. Other changes (vLLM sets a few variables when it
is imported) keep the warm start. Where a GPU driver is present, workers are always spawned:
Unsloth must be imported before transformers, and CUDA must not be set up in a process that
forks.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Mapping
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext, SpawnContext
from pathlib import Path

# The fork server imports this module, which loads what a run uses (see its docstring).
PRELOAD = ("garden.engine.training.preload",)
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")

# Variables read once, at import or process start, by torch, oneDNN, OpenMP, MKL, glibc, CUDA,
# Python and the Hugging Face libraries.
IMPORT_TIME_PREFIXES = (
    "ATEN_",
    "ONEDNN_",
    "DNNL_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "MALLOC_",
    "LD_",
    "CUDA_",
    "PYTHON",
    "HF_",
    "TRANSFORMERS_",
    "CODECARBON_",
)
# Set inside a running app by libraries, and harmless to a forked worker: OpenCV's import adds
# its libraries to LD_LIBRARY_PATH (which the loader reads only when a program starts, so it
# reaches the worker's own children through the adopted environment), and Gradio sets
# HF_HUB_DISABLE_TELEMETRY when its analytics are off. Compared, either would make every run
# after it start cold (8-15 s more each).
SET_AT_RUNTIME = frozenset({"LD_LIBRARY_PATH", "HF_HUB_DISABLE_TELEMETRY"})

_lock = threading.Lock()
# What the fork server's imports read, as it was when the server started.
_server_import_env: dict[str, str] | None = None


def warm_starts_possible() -> bool:
    """Linux without an NVIDIA driver: where forking a process that imported torch is safe."""
    return sys.platform.startswith("linux") and not NVIDIA_DRIVER.exists()


def worker_context(enabled: bool) -> SpawnContext | ForkServerContext:
    """The multiprocessing context a training worker starts in: the warm fork server where it
    applies (starting it if needed), a fresh "spawn" process otherwise."""
    global _server_import_env
    spawn = multiprocessing.get_context("spawn")
    if not (enabled and warm_starts_possible()):
        return spawn
    with _lock:
        if _server_import_env is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(PRELOAD))
            forkserver.ensure_running()
            _server_import_env = _import_time(os.environ)
        if _changed_since_server():
            return spawn
    return multiprocessing.get_context("forkserver")


def _changed_since_server() -> list[str]:
    """The import-time variables that differ from the fork server's (none before it starts)."""
    server = _server_import_env
    if server is None:
        return []
    now = _import_time(os.environ)
    return sorted(k for k in set(server) | set(now) if server.get(k) != now.get(k))


def cold_start_reason(enabled: bool) -> str | None:
    """Why a run that asked for a warm start gets a fresh process, for its log; None when warm
    (or when warm starts are off or impossible here, which needs no saying)."""
    if not (enabled and warm_starts_possible()):
        return None
    with _lock:
        changed = _changed_since_server()
    if not changed:
        return None
    return f"{', '.join(changed[:4])} changed since the training stack was imported"


def warm_up_in_background(enabled: bool) -> threading.Thread | None:
    """Start the fork server and its imports now, so the first run starts warm too."""
    if not (enabled and warm_starts_possible()):
        return None
    thread = threading.Thread(
        target=worker_context, args=(enabled,), name="warm-workers", daemon=True
    )
    thread.start()
    return thread


def _import_time(environment: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in environment.items()
        if k.startswith(IMPORT_TIME_PREFIXES) and k not in SET_AT_RUNTIME
    }


def adopt_environment(environment: Mapping[str, str]) -> None:
    """In a worker: the app's environment as it was when the run started, not the fork
    server's (a spawned worker has it already; setting it again changes nothing)."""
    if environment == os.environ:
        return
    os.environ.clear()
    os.environ.update(environment)
