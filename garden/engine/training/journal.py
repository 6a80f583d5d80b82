"""Writing what happens to a job into the store: its status, progress, curves, logs and end."""

from __future__ import annotations

import signal
from typing import Any

from garden.engine.training.procs import process_started
from garden.engine.training.queries import METRIC_COLUMNS, get_job
from garden.engine.training.records import (
    MAX_SAMPLES,
    REWARD_METRICS,
    CarbonEvent,
    DoneEvent,
    FailedEvent,
    JobProgress,
    LogEvent,
    MetricsEvent,
    SamplesEvent,
    StartedEvent,
    WorkerEvent,
)
from garden.engine.training.spec import CANCEL_FLAG
from garden.store import Store, now

EXTRA_METRICS = {"eta_s", "train_tokens", "total_steps", *REWARD_METRICS}


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Journal:
    """Persists a job's events; every method is one small write (safe from several threads)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def log(self, job_id: str, message: str, level: str = "INFO") -> None:
        self.store.insert(
            "job_logs", {"job_id": job_id, "ts": now(), "level": level, "message": message}
        )

    def update(self, job_id: str, **fields: Any) -> None:
        self.store.update("jobs", job_id, fields)

    def set_progress(self, job_id: str, progress: JobProgress) -> None:
        progress = progress.model_copy(update={"updated_at": now()})
        self.update(job_id, progress_json=progress.model_dump(mode="json"))

    def end(
        self, job_id: str, status: str, error: str, error_kind: str, message: str | None = None
    ) -> None:
        """Mark a job ended without a result, and log why (``message``, else ``error``)."""
        self.update(job_id, status=status, error=error, error_kind=error_kind, finished_at=now())
        self.log(job_id, message or error, "ERROR" if status == "failed" else "WARNING")

    def record(self, job_id: str, event: WorkerEvent) -> None:
        """Apply one worker event to the job."""
        if isinstance(event, LogEvent):
            self.log(job_id, event.message, event.level)
        elif isinstance(event, StartedEvent):
            self.update(
                job_id,
                backend=event.backend,
                backend_reason=event.backend_reason,
                device=f"{event.device} ({event.precision})",
                pid=event.pid,
                pid_started=process_started(event.pid),
            )
        elif isinstance(event, MetricsEvent):
            progress = get_job(self.store, job_id).progress.merged(event.metrics)
            self.set_progress(job_id, progress)
            if event.logged:
                point = event.metrics.model_dump(include=set(METRIC_COLUMNS))
                extra = event.metrics.model_dump(include=EXTRA_METRICS)
                self.store.insert(
                    "job_metrics", {"job_id": job_id, "ts": now(), **point, "data_json": extra}
                )
        elif isinstance(event, SamplesEvent):
            kept = [*event.samples, *get_job(self.store, job_id).samples][:MAX_SAMPLES]
            self.update(job_id, samples_json=[s.model_dump(mode="json") for s in kept])
        elif isinstance(event, CarbonEvent):
            progress = get_job(self.store, job_id).progress
            self.set_progress(
                job_id, progress.model_copy(update={"emission_id": event.emission_id})
            )
        elif isinstance(event, DoneEvent):
            self._done(job_id, event)
        elif isinstance(event, FailedEvent):
            error = event.error + (f" {event.hint}" if event.hint else "")
            self.end(job_id, "failed", error, event.error_kind, message=f"Failed: {error}")

    def _done(self, job_id: str, event: DoneEvent) -> None:
        result = event.result
        progress = get_job(self.store, job_id).progress.model_copy(
            update={
                "step": result.steps,
                "energy_kwh": result.energy_kwh,
                "emissions_kg": result.emissions_kg,
                "eta_s": 0.0,
                "updated_at": now(),
            }
        )
        self.update(
            job_id,
            status=event.status,
            result_json=result.model_dump(mode="json"),
            progress_json=progress.model_dump(mode="json"),
            finished_at=now(),
        )
        self.log(job_id, f"Job {event.status} at step {result.steps}")

    def worker_died(self, job_id: str, exitcode: int | None) -> None:
        """The worker ended without a final event: cancelled, killed or crashed."""
        job = get_job(self.store, job_id)
        if exitcode is not None and exitcode < 0:
            how = f"killed by {_signal_name(exitcode)}"
        else:
            how = f"exited with code {exitcode}"
        if (job.checkpoint_dir / CANCEL_FLAG).exists():
            self.end(job_id, "cancelled", f"Cancelled (worker {how})", "cancelled")
            return
        hint = (
            " It was probably out of memory (the kernel OOM killer) or killed by someone;"
            " try a smaller batch size or max sequence length, then resume."
            if exitcode == -signal.SIGKILL
            else " See the job log; resume to continue from the last checkpoint."
        )
        kind = "killed" if exitcode and exitcode < 0 else "crash"
        self.end(job_id, "failed", f"The training worker process died ({how}).{hint}", kind)
