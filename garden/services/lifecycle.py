"""The app's lifecycle: on SIGTERM or Ctrl-C, stop everything within ``SHUTDOWN_BUDGET_S``.

Running training jobs are asked to save a checkpoint and end 'interrupted' (resumable), chat
engines are unloaded (vLLM's host processes included) and, as a backstop, every process still
descending from the app is terminated, then killed. Nothing of the app is left running.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from garden.engine.training.procs import kill_tree

log = logging.getLogger("garden")

SHUTDOWN_BUDGET_S = 10.0
JOBS_GRACE_S = 7.0  # checkpoints first; engines unload meanwhile
ENGINES_GRACE_S = 6.0

_shutdown_lock = threading.Lock()
_shut_down = threading.Event()


def _stop_jobs(grace_s: float) -> None:
    from garden.engine.training.manager import shutdown_managers

    interrupted = shutdown_managers(grace_s)
    if interrupted:
        log.warning("Interrupted %d training job(s); resume them later", len(interrupted))


def _unload_engines() -> None:
    from garden.engine.serving.registry import shutdown_all

    shutdown_all()


def _bounded(target: Callable[[], object], name: str) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except Exception as exc:  # a failing step must not stop the others
            log.error("Shutdown step %s failed: %s", name, exc)

    thread = threading.Thread(target=run, name=f"shutdown-{name}", daemon=True)
    thread.start()
    return thread


def shutdown_everything(budget_s: float = SHUTDOWN_BUDGET_S) -> list[int]:
    """Stop jobs (checkpointed, marked interrupted) and engines, then kill leftover children.

    Runs once per process; returns the pids of the child processes the backstop had to end.
    """
    with _shutdown_lock:
        if _shut_down.is_set():
            return []
        _shut_down.set()
    started = time.monotonic()
    jobs = _bounded(lambda: _stop_jobs(min(JOBS_GRACE_S, budget_s * 0.7)), "jobs")
    engines = _bounded(_unload_engines, "engines")
    jobs.join(max(0.0, budget_s * 0.8 - (time.monotonic() - started)))
    engines.join(max(0.0, min(ENGINES_GRACE_S, budget_s * 0.8) - (time.monotonic() - started)))
    left = max(0.5, budget_s - (time.monotonic() - started) - 0.5)
    killed = kill_tree(os.getpid(), timeout=min(1.5, left / 2))
    if killed:
        log.warning("Ended %d leftover child process(es): %s", len(killed), killed)
    log.info("Shut down in %.1f s", time.monotonic() - started)
    return killed


def _handle(signum: int, frame: FrameType | None) -> None:
    log.warning("Received %s: shutting down", signal.Signals(signum).name)
    shutdown_everything()
    logging.shutdown()
    os._exit(0)


def install_signal_handlers() -> None:
    """Make SIGTERM, SIGINT (Ctrl-C) and SIGHUP shut the app down cleanly (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _handle)
