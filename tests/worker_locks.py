"""A machine-wide lock between the suite's pytest-xdist workers (file locks, one set per run).

The newcomer's Quick CPU demo run trains against a time budget, and its recall is checked: it
must get both cores, as on a newcomer's idle machine, or it trains fewer steps and teaches less.
While it trains it holds the machine; every test on the other worker holds it shared, so the test
running there ends first and the next one waits. A waiting holder closes a gate first, so that
the other worker's next test cannot slip in between two of its tests. What the other worker's
tests leave running between them (a module's vLLM host warming up, an app, a job) is suspended
meanwhile: each worker names its pid in the lock folder, and the holder stops that worker's
child processes until it is done.

Outside xdist (``-n 0``) there is no other worker, and nothing is locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psutil

from garden.engine.training.procs import process_tree


def lock_folder(run_id: str) -> Path:
    """Where one xdist run's lock files are (the controller removes it when the run ends)."""
    return Path(tempfile.gettempdir()) / f"garden-tests-{run_id}-locks"


def _lock_files() -> tuple[Path, Path] | None:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return None
    folder = lock_folder(run)
    folder.mkdir(exist_ok=True)
    (folder / f"worker-{os.getpid()}").touch()
    return folder / "gate", folder / "machine"


def _suspend_other_workers_children(folder: Path) -> list[psutil.Process]:
    """Stop every process the other workers started; they are between two tests."""
    stopped = []
    for mark in folder.glob("worker-*"):
        pid = int(mark.name.removeprefix("worker-"))
        if pid == os.getpid():
            continue
        for child in process_tree(pid, include_self=False):
            with contextlib.suppress(psutil.Error):
                child.suspend()
                stopped.append(child)
    return stopped


@contextmanager
def _machine(kind: int) -> Iterator[None]:
    """Pass the gate, then hold the machine lock as ``kind``; an exclusive holder keeps the gate
    closed until it ends, a shared one opens it again at once."""
    files = _lock_files()
    if files is None:
        yield
        return
    with files[0].open("a") as gate, files[1].open("a") as machine:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(machine, kind)
        finally:
            if kind == fcntl.LOCK_SH:
                fcntl.flock(gate, fcntl.LOCK_UN)
        stopped = _suspend_other_workers_children(files[0].parent) if kind == fcntl.LOCK_EX else []
        try:
            yield
        finally:
            for child in stopped:
                with contextlib.suppress(psutil.Error):
                    child.resume()
            fcntl.flock(machine, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)  # no-op where already released


def machine_to_itself() -> AbstractContextManager[None]:
    """Hold both cores: wait for the test running on the other worker, keep its next one out."""
    return _machine(fcntl.LOCK_EX)


def machine_shared() -> AbstractContextManager[None]:
    """Run beside the other worker's tests, but never while it holds the machine to itself."""
    return _machine(fcntl.LOCK_SH)
