"""Shared pieces of the fault tests: an app storage with an imported dataset, waiting, processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

FACTS = Path(__file__).resolve().parent.parent.parent / "assets" / "datasets" / "garden_facts.jsonl"
# A short LoRA run of the default model: checkpoints every 2 steps, far more steps than needed.
RUN = {
    "batch_size": 2,
    "max_seq_len": 128,
    "lora_r": 8,
    "lora_alpha": 16,
    "warmup_ratio": 0.0,
    "learning_rate": 1e-3,
    "checkpoint_interval": 2,
    "max_steps": 400,
}

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, poll: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def app_env(settings: Any) -> dict[str, str]:
    """An app on ``settings``' storage, with warm workers as users get them."""
    return {
        "STORAGE_ROOT": str(settings.storage_root),
        "MODELS_DIR": str(settings.models_path),
        "WARM_WORKERS": "true",
    }


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running (a zombie counts as gone: it holds no memory)."""
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def describe(procs: list[psutil.Process]) -> list[str]:
    names = []
    for proc in procs:
        try:
            names.append(f"{proc.pid} {proc.name()} {' '.join(proc.cmdline())[:80]}")
        except psutil.Error:
            names.append(str(proc.pid))
    return names


def job_record(settings: Any, job_id: str) -> Any:
    """The job's row as the engine types it, read straight from the app's database."""
    from garden.engine.training import queries
    from garden.store import get_store

    return queries.get_job(get_store(settings.db_path), job_id)
