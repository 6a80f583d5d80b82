"""This machine's share of a distributed run: ``accelerate launch`` under the job's worker.

The worker process starts the ranks with ``accelerate launch`` as its own child, so the carbon
meter running in the worker counts the whole process tree (launcher and every rank) once. Ranks
report over a loopback connection (``multiprocessing.connection`` with a one-run key): each
machine's local rank 0 streams logs, metrics and its outcome; any rank that fails says so.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import secrets
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from garden.engine.training.backends import cuda_present
from garden.engine.training.backends.context import Emit, TrainOutcome
from garden.engine.training.distributed import (
    EVENTS_ADDRESS_ENV,
    EVENTS_KEY_ENV,
    Layout,
    launch_command,
    threads_per_process,
)
from garden.engine.training.procs import die_with_parent
from garden.engine.training.records import (
    DoneEvent,
    FailedEvent,
    LogEvent,
    MetricsEvent,
    SamplesEvent,
    StartedEvent,
)
from garden.engine.training.task import TrainTask, _Carbon, finish_run
from garden.engine.training.trackers import TrackerRun

TASK_FILE = "rank_task.pkl"
# After the launcher exits, how long to wait for the ranks' last messages still in flight.
DRAIN_S = 3.0


@dataclass(frozen=True)
class RankDone:
    """A machine's local rank 0 finished training; ``writes_outputs`` only on global rank 0."""

    rank: int
    started: StartedEvent
    outcome: TrainOutcome
    writes_outputs: bool


@dataclass(frozen=True)
class RankFailure:
    rank: int
    machine_rank: int
    error_kind: str
    error: str
    hint: str | None = None


def _read(conn: Connection, inbox: queue.Queue[Any]) -> None:
    with conn:
        while True:
            try:
                inbox.put(conn.recv())
            except (EOFError, OSError, pickle.UnpicklingError):
                return


def _accept(listener: Listener, inbox: queue.Queue[Any]) -> None:
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError):
            return
        threading.Thread(target=_read, args=(conn, inbox), daemon=True).start()


def _layout(task: TrainTask) -> Layout:
    device = "cuda" if cuda_present() else "cpu"
    plan = task.plan
    return Layout(plan.strategy, plan.num_processes, plan.num_machines, device)


def _start(task: TrainTask, layout: Layout, address: str, key: bytes) -> subprocess.Popen[bytes]:
    task_file = Path(task.checkpoint_dir) / TASK_FILE
    task_file.unlink(missing_ok=True)
    fd = os.open(task_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # settings hold secrets
    with os.fdopen(fd, "wb") as handle:
        pickle.dump(task, handle)
    env = {**os.environ, EVENTS_ADDRESS_ENV: address, EVENTS_KEY_ENV: key.hex()}
    if layout.device == "cpu":
        env["OMP_NUM_THREADS"] = str(threads_per_process(layout))
    command = launch_command(task.spec, layout, task_file)
    print("Launching: " + shlex.join(command), flush=True)
    return subprocess.Popen(command, env=env, preexec_fn=die_with_parent)


def run_distributed(
    task: TrainTask,
    emit: Emit,
    carbon: _Carbon,
    staging: Path,
    tracker_run: TrackerRun | None = None,
) -> DoneEvent | FailedEvent:
    """Run this machine's ranks to the end; the job's final event (also logged to the run's
    experiment trackers, whose ids the ranks inherit through the environment)."""
    layout = _layout(task)
    key = secrets.token_bytes(16)
    inbox: queue.Queue[Any] = queue.Queue()
    with Listener(("127.0.0.1", 0), authkey=key) as listener:
        host, port = listener.address
        threading.Thread(target=_accept, args=(listener, inbox), daemon=True).start()
        proc = _start(task, layout, f"{host}:{port}", key)
        emit(
            LogEvent(
                message=f"accelerate launch (process {proc.pid}) started {layout.num_processes} "
                f"{layout.strategy.upper()} rank(s) on this machine "
                f"(machine {task.spec.machine_rank} of {layout.num_machines})"
            )
        )
        try:
            done, failure = _relay(proc, inbox, emit, carbon)
        finally:
            (Path(task.checkpoint_dir) / TASK_FILE).unlink(missing_ok=True)
    if failure is not None:
        error = f"Rank {failure.rank} (machine {failure.machine_rank}) failed: {failure.error}"
        return FailedEvent(error_kind=failure.error_kind, error=error, hint=failure.hint)
    if done is None:
        return FailedEvent(
            error_kind="crash",
            error=f"accelerate launch exited with code {proc.returncode} before the ranks "
            "reported a result.",
            hint="See the job log for the ranks' output; resume to continue from the last "
            "checkpoint.",
        )
    if not done.writes_outputs:
        emit(LogEvent(message="Machine 0 (global rank 0) writes the model and checkpoints"))
    return finish_run(
        task,
        done.outcome,
        done.started,
        carbon,
        staging,
        done.writes_outputs,
        tracker_run=tracker_run if done.writes_outputs else None,
    )


def _relay(
    proc: subprocess.Popen[bytes], inbox: queue.Queue[Any], emit: Emit, carbon: _Carbon
) -> tuple[RankDone | None, RankFailure | None]:
    """Pass the ranks' reports on until the launcher exits; the outcome and the first failure."""
    done: RankDone | None = None
    failure: RankFailure | None = None
    exited_at: float | None = None
    while exited_at is None or time.monotonic() - exited_at < DRAIN_S:
        try:
            item = inbox.get(timeout=0.5)
        except queue.Empty:
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            continue
        if isinstance(item, MetricsEvent):
            energy, emissions = carbon.so_far()
            if energy is not None:
                metrics = item.metrics.model_copy(
                    update={"energy_kwh": energy, "emissions_kg": emissions}
                )
                item = item.model_copy(update={"metrics": metrics})
            emit(item)
        elif isinstance(item, StartedEvent):
            emit(item.model_copy(update={"pid": os.getpid()}))
        elif isinstance(item, (LogEvent, SamplesEvent)):
            emit(item)
        elif isinstance(item, RankDone):
            done = item
        elif isinstance(item, RankFailure):
            emit(LogEvent(level="ERROR", message=f"Rank {item.rank} failed: {item.error}"))
            failure = failure or item
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    return done, failure
