"""CPU training steps aside while a chat answer streams on the same machine.

On a CPU a training run and a chat answer each want every core, and two torch processes that
wait by spinning (libgomp's default) slow each other tenfold: a chat answer beside a CLI run
decoded at 0.9 tok/s against 13.4 alone (docs/benchmarks.md). So while answers stream, the
worker processes of this storage's running CPU jobs are suspended (SIGSTOP, through psutil) and
continued when the last answer ends. Training loses only the answer's seconds:

- a pause lasts at most ``MAX_PAUSE_S``, and a new one starts only after the job has trained at
  least as long as the last pause lasted, so a steady stream of answers (an API under load)
  halves a run's speed at worst and never stops it;
- the paused seconds are added up in the job's ``PAUSED`` file, which the time budget's clock
  (``budget.py``) leaves out, so a budgeted run still trains for its whole budget;
- a stop, a cancel or the app's shutdown continues a paused worker first (``resume_job``,
  ``resume_all``), so it can save its checkpoint and end.

``Settings.chat_pauses_training`` turns this off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from garden.config import Settings
from garden.engine.training import queries
from garden.engine.training.journal import Journal
from garden.engine.training.procs import process_tree, same_process
from garden.store import get_store

log = logging.getLogger(__name__)

PAUSED_FILE = "PAUSED"
MAX_PAUSE_S = 60.0


def paused_seconds(flags_dir: Path) -> float:
    """The seconds the job's workers have spent suspended for chat answers so far."""
    try:
        return float((flags_dir / PAUSED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0.0


def _add_paused(flags_dir: Path, seconds: float) -> None:
    total = paused_seconds(flags_dir) + seconds
    staged = flags_dir / f".{PAUSED_FILE}.{os.getpid()}"
    with contextlib.suppress(OSError):
        staged.write_text(f"{total:.3f}", encoding="utf-8")
        staged.replace(flags_dir / PAUSED_FILE)


@dataclass
class _Paused:
    job_id: str
    flags_dir: Path
    db_path: Path
    procs: list[psutil.Process]
    since: float = field(default_factory=time.monotonic)


class _Pauser:
    """Process-wide: counts the answers streaming here and keeps the suspended workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers = 0
        # Keyed by (database, job id): one process may serve several storages.
        self._paused: dict[tuple[Path, str], _Paused] = {}
        self._resumed_at: dict[tuple[Path, str], tuple[float, float]] = {}  # (when, how long)
        self._timer: threading.Timer | None = None

    def enter(self, settings: Settings) -> None:
        with self._lock:
            self._answers += 1
            if self._answers == 1:
                self._pause_jobs(settings)

    def exit(self) -> None:
        with self._lock:
            self._answers = max(0, self._answers - 1)
            if self._answers == 0:
                self._resume(list(self._paused))

    def resume_job(self, job_id: str) -> None:
        with self._lock:
            self._resume([key for key in self._paused if key[1] == job_id])

    def resume_all(self) -> None:
        with self._lock:
            self._resume(list(self._paused))

    def _pause_jobs(self, settings: Settings) -> None:
        store = get_store(settings.db_path)
        now = time.monotonic()
        for job in queries.jobs_with_status(store, ("running",)):
            on_cpu = job.device is None or job.device.startswith("cpu")
            key = (settings.db_path, job.id)
            if key in self._paused or not on_cpu:
                continue
            if not same_process(job.pid, job.pid_started) or job.pid == os.getpid():
                continue
            last = self._resumed_at.get(key)
            if last is not None and now - last[0] < last[1]:
                continue  # it has not yet trained as long as it last waited
            assert job.pid is not None
            procs = process_tree(job.pid)  # the worker, accelerate's ranks, compile workers
            if not procs:
                continue  # gone since, or not ours to signal
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.suspend()
            self._paused[key] = _Paused(job.id, job.checkpoint_dir, settings.db_path, procs)
        if self._paused and self._timer is None:
            self._timer = threading.Timer(MAX_PAUSE_S, self.resume_all)
            self._timer.daemon = True
            self._timer.start()

    def _resume(self, keys: list[tuple[Path, str]]) -> None:
        now = time.monotonic()
        for key in keys:
            paused = self._paused.pop(key, None)
            if paused is None:
                continue
            for proc in paused.procs:
                with contextlib.suppress(psutil.Error):
                    proc.resume()
            seconds = now - paused.since
            self._resumed_at[key] = (now, seconds)
            _add_paused(paused.flags_dir, seconds)
            with contextlib.suppress(Exception):  # the record is a courtesy, never a failure
                Journal(get_store(paused.db_path)).log(
                    paused.job_id, f"Paused {seconds:.1f} s while a chat answer streamed"
                )
        if not self._paused and self._timer is not None:
            self._timer.cancel()
            self._timer = None


_PAUSER = _Pauser()


@contextlib.contextmanager
def training_paused(settings: Settings) -> Iterator[None]:
    """Suspend this storage's running CPU training workers while the block runs (an answer
    streams); nested and concurrent blocks share one pause."""
    if not settings.chat_pauses_training:
        yield
        return
    try:
        _PAUSER.enter(settings)
    except Exception:  # a pause is an optimisation: an answer never fails for it
        log.warning("Could not pause the training runs for a chat answer", exc_info=True)
    try:
        yield
    finally:
        _PAUSER.exit()


def resume_job(job_id: str) -> None:
    """Continue the job's workers now if a chat answer paused them (before a stop or cancel)."""
    _PAUSER.resume_job(job_id)


def resume_all() -> None:
    """Continue every paused worker (the app is shutting down)."""
    _PAUSER.resume_all()
