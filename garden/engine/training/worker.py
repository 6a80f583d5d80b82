"""The worker process: trains one run of a job under a carbon meter and reports through a queue.

The supervising thread (``garden.engine.training.manager``) starts ``worker_main`` with a
``TrainTask`` in a fresh "spawn" process, so a crash or out-of-memory there never takes the app
down. Every report is a ``WorkerEvent``; the last one is a ``DoneEvent`` or a ``FailedEvent``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from garden.engine.training import trackers
from garden.engine.training.backends import choose_precision, run_backend, select_backend
from garden.engine.training.backends.context import Emit
from garden.engine.training.distributed import physical_cores
from garden.engine.training.procs import die_with_parent
from garden.engine.training.records import FailedEvent, LogEvent, StartedEvent, WorkerEvent
from garden.engine.training.spec import STOP_FLAG
from garden.engine.training.task import TrainTask, _Carbon, finish_run, train_context
from garden.engine.training.warm import adopt_environment
from garden.errors import GardenError, JobError, OutOfMemoryError
from garden.models import staging_dir


def classify_error(exc: BaseException) -> tuple[str, str, str | None]:
    """``(kind, message, hint)`` for a failure inside the worker."""
    if isinstance(exc, GardenError):
        return exc.kind, exc.message, exc.hint
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in lowered or "outofmemory" in lowered:
        oom = OutOfMemoryError(
            "Training ran out of memory.",
            hint="Lower the batch size or max sequence length, use LoRA instead of full "
            "fine-tuning, or QLoRA on a GPU.",
        )
        return oom.kind, oom.message, oom.hint
    if _is_disk_full(exc):
        return (
            "disk_full",
            f"Writing to disk failed: no space left or a file-size limit was hit ({text[:300]}).",
            "Free some space (or raise the limit) and resume the job: it continues from the "
            "last complete checkpoint.",
        )
    if isinstance(exc, (KeyError, ValueError)) and ("messages" in lowered or "token" in lowered):
        return "bad_data", text, "Check the dataset in the Data tab and import it again."
    return "error", text, "See the job log for details."


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
DISK_FULL_TEXT = ("no space left", "file too large", "disk quota", "file write failed")
# Tests set this to cap the size of every file the worker writes (RLIMIT_FSIZE): a full disk.
MAX_FILE_BYTES_ENV = "GARDEN_FAULT_MAX_FILE_BYTES"


def _is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a full disk or size limit."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        if any(part in str(seen).lower() for part in DISK_FULL_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _limit_file_size() -> None:
    limit = os.environ.get(MAX_FILE_BYTES_ENV)
    if not limit:
        return
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))


def discard_incomplete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Remove ``checkpoint-*`` folders that a crash or a full disk left without their state."""
    removed = []
    for entry in checkpoint_dir.glob("checkpoint-*"):
        if entry.is_dir() and not (entry / "trainer_state.json").is_file():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _stop_on_signal(flags_dir: Path) -> None:
    """SIGTERM (also sent by the kernel when the app dies) asks the loop to save and stop."""

    def handler(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):
            (flags_dir / STOP_FLAG).touch()

    signal.signal(signal.SIGTERM, handler)
    die_with_parent(signal.SIGTERM)


def _watch_parent(flags_dir: Path) -> None:
    """If the app process dies, ask the training loop to save and stop (then exit anyway)."""
    parent = os.getppid()
    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            (flags_dir / STOP_FLAG).touch()
            time.sleep(180.0)
            os._exit(3)


def _redirect_output(log_file: Path) -> None:
    """Send the libraries' prints (and C-level output) to the job's log file, not the terminal."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _log_to(emit: Emit) -> Any:
    return lambda level, message: emit(LogEvent(level=level, message=message))


def worker_main(task: TrainTask, events: Any, environment: Mapping[str, str] | None = None) -> None:
    """Entry of the worker process: train one run of a job and report through ``events``,
    in the app's ``environment`` (a worker forked from the warm fork server has the server's)."""
    if environment is not None:
        adopt_environment(environment)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def emit(event: WorkerEvent) -> None:
        events.put(event)

    _stop_on_signal(task.checkpoint_dir)
    threading.Thread(target=_watch_parent, args=(task.checkpoint_dir,), daemon=True).start()
    carbon: _Carbon | None = None
    staging = staging_dir(task.output_dir, task.job_id)
    try:
        _redirect_output(task.log_file)
        _limit_file_size()
        for stale in discard_incomplete_checkpoints(task.checkpoint_dir):
            emit(LogEvent(level="WARNING", message=f"Removed incomplete {stale.name}"))
        shutil.rmtree(staging, ignore_errors=True)
        tracker_run = trackers.start(
            task.job_id,
            task.spec,
            task.plan,
            task.settings,
            staging,
            _log_to(emit),
            previous=task.output_dir if task.resume_from is not None else None,
        )
        if task.plan.world_size > 1:
            from garden.engine.training.launcher import run_distributed

            carbon = _Carbon(task, emit)
            emit(run_distributed(task, emit, carbon, staging, tracker_run))
            return
        spec = task.spec
        backend, reason = select_backend(spec.backend, spec.method)
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if spec.method == "qlora" and device != "cuda":
            raise JobError("QLoRA needs a CUDA GPU.", hint="Choose LoRA on the CPU.")
        precision, precision_reason = choose_precision(spec.precision, device)
        if device == "cpu":
            torch.set_num_threads(physical_cores())
        emit(
            StartedEvent(
                backend=backend,
                backend_reason=reason,
                device=device,
                precision=precision,
                pid=os.getpid(),
            )
        )
        emit(
            LogEvent(
                message=f"Backend {backend} ({reason}); device {device}; precision "
                f"{precision} ({precision_reason}); {torch.get_num_threads()} torch threads"
            )
        )
        carbon = _Carbon(task, emit)
        ctx = train_context(task, staging, device, precision, emit)
        ctx.carbon = carbon.so_far
        outcome = run_backend(backend, ctx)
        evaluation = None
        if not outcome.stopped:
            from garden.engine.evaluation.after_training import evaluate_after_training

            evaluation = evaluate_after_training(
                task.job_id, spec, task.plan, staging, task.settings, _log_to(emit)
            )
        started = StartedEvent(
            backend=backend, backend_reason=reason, device=device, precision=precision, pid=0
        )
        emit(
            finish_run(
                task,
                outcome,
                started,
                carbon,
                staging,
                tracker_run=tracker_run,
                evaluation=evaluation.model_dump() if evaluation is not None else None,
            )
        )
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        kind, message, hint = classify_error(exc)
        emit(LogEvent(level="ERROR", message=traceback.format_exc()[-4000:]))
        emit(FailedEvent(error_kind=kind, error=message, hint=hint))
    finally:
        if carbon is not None:
            with contextlib.suppress(Exception):
                carbon.stop()
        events.close()
        if os.getppid() == parent:
            events.join_thread()
        else:  # nobody reads the queue any more: never block on a full pipe
            events.cancel_join_thread()
