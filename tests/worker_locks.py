"""A machine-wide lock between the suite's pytest-xdist workers (file locks, one set per run).

The newcomer's Quick CPU demo run trains against a time budget, and its recall is checked: it
must get both cores, as on a newcomer's idle machine, or it trains fewer steps and teaches less.
While it trains it holds the machine; every test on the other worker holds it shared, so the test
running there ends first and the next one waits. A waiting holder closes a gate first, so that
the other worker's next test cannot slip in between two of its tests.

Outside xdist (``-n 0``) there is no other worker, and nothing is locked.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path


def lock_folder(run_id: str) -> Path:
    """Where one xdist run's lock files are (the controller removes it when the run ends)."""
    return Path(tempfile.gettempdir()) / f"garden-tests-{run_id}-locks"


def _lock_files() -> tuple[Path, Path] | None:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return None
    folder = lock_folder(run)
    folder.mkdir(exist_ok=True)
    return folder / "gate", folder / "machine"


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
        try:
            yield
        finally:
            fcntl.flock(machine, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)  # no-op where already released


def machine_to_itself() -> AbstractContextManager[None]:
    """Hold both cores: wait for the test running on the other worker, keep its next one out."""
    return _machine(fcntl.LOCK_EX)


def machine_shared() -> AbstractContextManager[None]:
    """Run beside the other worker's tests, but never while it holds the machine to itself."""
    return _machine(fcntl.LOCK_SH)
