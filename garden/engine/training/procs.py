"""Processes as identities: a pid plus its start time, so a reused pid is never mistaken.

Also the backstops that tie a worker's life to its parent (Linux ``PR_SET_PDEATHSIG``) and the
tree kill used when the app shuts down.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

import psutil

PR_SET_PDEATHSIG = 1
# psutil's start times are rounded from clock ticks; two readings of one process agree within this.
START_TIME_TOLERANCE_S = 0.05


def process_started(pid: int | None) -> float | None:
    """The start time of live process ``pid`` (seconds since the epoch), or None."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def same_process(pid: int | None, started: float | None) -> bool:
    """True when ``pid`` is alive and (when ``started`` is known) is the process that started then."""
    actual = process_started(pid)
    if actual is None:
        return False
    return started is None or abs(actual - started) <= START_TIME_TOLERANCE_S


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent thread ends (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def process_tree(pid: int, include_self: bool = True) -> list[psutil.Process]:
    """Every descendant of ``pid``, then ``pid`` itself when asked; empty when it is gone or
    not ours to read (a reused pid of another user's process: nothing we could signal)."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True)
    except psutil.Error:
        return []
    return [*procs, root] if include_self else procs


def kill_tree(
    pid: int, timeout: float = 2.0, include_self: bool = False, force: bool = False
) -> list[int]:
    """Terminate then kill every descendant of ``pid`` (and ``pid`` itself when asked);
    ``force`` kills at once, without asking them to end first.

    Returns the pids that were still alive when the kill started.
    """
    procs = process_tree(pid, include_self)
    if not force:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=0 if force else timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=1.0)
    return [proc.pid for proc in procs]
