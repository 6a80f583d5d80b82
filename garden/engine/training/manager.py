"""The job manager: a queue of training jobs, a supervising thread per running job, and commands.

``JobManager.submit`` plans a spec and queues it; at most ``MAX_CONCURRENT_JOBS`` run at once.
Each running job has a supervising thread in this process that starts a worker process (forked
from the warm fork server of ``warm.py``, or spawned) with a ``TrainTask`` and records its events
through a ``Journal``.
Stop, cancel and resume work from any process through flag files and pids.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.engine.training import chat_pause, queries
from garden.engine.training.journal import Journal
from garden.engine.training.plan import JobPlan, plan_job
from garden.engine.training.procs import kill_tree, process_started, same_process
from garden.engine.training.records import DoneEvent, FailedEvent, JobProgress, JobRecord
from garden.engine.training.spec import (
    ACTIVE_STATUSES,
    CANCEL_FLAG,
    RESUMABLE_STATUSES,
    STOP_FLAG,
    TERMINAL_STATUSES,
    JobSpec,
)
from garden.engine.training.task import TrainTask
from garden.engine.training.warm import cold_start_reason, worker_context
from garden.engine.training.worker import worker_main
from garden.errors import JobError
from garden.models import clean_incomplete_outputs
from garden.store import Store, get_store, new_id, now

log = logging.getLogger(__name__)

# How long an app shutdown waits for running workers to save a checkpoint and exit.
SHUTDOWN_GRACE_S = 7.0


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` folder, if any."""
    if not checkpoint_dir.is_dir():
        return None
    found = []
    for entry in checkpoint_dir.glob("checkpoint-*"):
        suffix = entry.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (entry / "trainer_state.json").is_file():
            found.append((int(suffix), entry))
    return max(found)[1] if found else None


def _flags_dir(job: JobRecord) -> Path:
    job.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return job.checkpoint_dir


class JobManager:
    """Process-wide queue and supervisor of training jobs (use ``get_job_manager``)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.settings.ensure_storage()
        self.store: Store = get_store(self.settings.db_path)
        self.journal = Journal(self.store)
        self._lock = threading.RLock()
        self._threads: dict[str, threading.Thread] = {}
        self._procs: dict[str, BaseProcess] = {}
        self._poller: threading.Thread | None = None
        self._closing = False
        self.me = (os.getpid(), process_started(os.getpid()))
        self.recovered = self.recover()
        self.cleaned = clean_incomplete_outputs(self.settings, keep=self._busy_job_ids())

    # --- queries ---------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        return queries.get_job(self.store, job_id)

    def list_jobs(self, limit: int = 100, status: str | None = None) -> list[JobRecord]:
        return queries.list_jobs(self.store, limit, status)

    def metrics(self, job_id: str) -> list[queries.MetricRecord]:
        return queries.read_metrics(self.store, job_id)

    def logs(self, job_id: str, after_id: int = 0, limit: int = 200) -> list[queries.LogRecord]:
        return queries.read_logs(self.store, job_id, after_id, limit)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> JobRecord:
        """Block until the job ends (or ``timeout`` seconds pass); returns it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.status in TERMINAL_STATUSES:
                thread = self._threads.get(job_id)
                if thread is not None:
                    thread.join(timeout=10)
                return self.get(job_id)
            if deadline is not None and time.monotonic() > deadline:
                return job
            time.sleep(poll)

    # --- commands --------------------------------------------------------------------------

    def submit(self, data: JobSpec | Mapping[str, Any]) -> str:
        """Plan and queue a job; returns its id. Raises typed errors for bad specs."""
        plan = plan_job(data, self.settings)
        job_id = new_id("job")
        try:
            self._insert_job(job_id, plan)
        except sqlite3.IntegrityError as exc:  # another process took the name since planning
            raise JobError(
                f"A job named {plan.spec.name!r} is already queued or running.",
                hint="Pick another run name.",
            ) from exc
        self.journal.log(
            job_id, f"Queued {plan.spec.name} ({plan.spec.method} on {plan.model.name})"
        )
        layout = plan.layout_line()
        if layout:
            self.journal.log(job_id, layout)
        for note in plan.notes:
            self.journal.log(job_id, note)
        for warning in plan.warnings:
            self.journal.log(job_id, warning, "WARNING")
        self._schedule()
        return job_id

    def _insert_job(self, job_id: str, plan: JobPlan) -> None:
        self.store.insert(
            "jobs",
            {
                "id": job_id,
                "name": plan.spec.name,
                "kind": "train",
                "status": "queued",
                "spec_json": plan.spec.model_dump(mode="json"),
                "plan_json": plan.planned_run().model_dump(mode="json"),
                "progress_json": JobProgress().model_dump(mode="json"),
                "output_dir": str(plan.output_dir),
                "checkpoint_dir": str(self.settings.checkpoints_path / job_id),
                "owner_pid": self.me[0],
                "owner_started": self.me[1],
                "created_at": now(),
            },
        )

    def stop(self, job_id: str) -> JobRecord:
        """Graceful stop: the worker saves a checkpoint and the adapter, then ends 'stopped'."""
        job = self.get(job_id)
        if job.status == "queued":
            self.journal.update(job_id, status="stopped", finished_at=now())
            self.journal.log(job_id, "Stopped before it started")
            return self.get(job_id)
        if job.status not in ("running", "stopping"):
            raise JobError(
                f"Job {job_id} is {job.status}, not running.", hint="Only running jobs stop."
            )
        (_flags_dir(job) / STOP_FLAG).touch()
        chat_pause.resume_job(job_id)  # a worker paused for a chat answer must see the flag
        self.journal.update(job_id, status="stopping")
        self.journal.log(
            job_id, "Stop requested: finishing the current step and saving a checkpoint"
        )
        return self.get(job_id)

    def cancel(self, job_id: str) -> JobRecord:
        """Hard stop: kill the worker now; nothing more is saved."""
        job = self.get(job_id)
        if job.status in TERMINAL_STATUSES:
            raise JobError(f"Job {job_id} already ended ({job.status}).")
        (_flags_dir(job) / CANCEL_FLAG).touch()
        chat_pause.resume_job(job_id)
        if job.status == "queued":
            # Marked before looking for a worker: a supervisor starting this job right now
            # either is seen below or sees the mark after registering its worker (_supervise).
            self.journal.update(job_id, status="cancelled", finished_at=now())
        proc = self._procs.get(job_id)
        if proc is not None and proc.pid:
            kill_tree(proc.pid, force=True)  # any accelerate ranks first
            proc.kill()  # not through psutil: it would reap the worker, and the supervisor's
            # multiprocessing handle could then never see it end
        elif job.status != "queued" and same_process(job.pid, job.pid_started):
            assert job.pid is not None
            kill_tree(job.pid, include_self=True, force=True)
        self.journal.log(job_id, "Cancelled", "WARNING")
        return self.get(job_id)

    def resume(self, job_id: str) -> JobRecord:
        """Queue a stopped, interrupted or failed job again; it continues from its checkpoint."""
        job = self.get(job_id)
        if job.status not in RESUMABLE_STATUSES:
            raise JobError(
                f"Job {job_id} is {job.status}; only stopped, interrupted or failed jobs resume.",
                hint="Start a new run instead." if job.status == "completed" else None,
            )
        if same_process(job.pid, job.pid_started):
            raise JobError(
                f"Job {job_id} cannot resume yet: its previous worker (process {job.pid}) is "
                "still running.",
                hint="It saves a checkpoint and exits by itself within a few minutes; "
                "try again then, or cancel the job.",
            )
        marks = ", ".join("?" for _ in RESUMABLE_STATUSES)
        changed = self.store.execute(
            "UPDATE jobs SET status = 'queued', owner_pid = ?, owner_started = ?, error = NULL,"
            " error_kind = NULL, finished_at = NULL, result_json = NULL"
            f" WHERE id = ? AND status IN ({marks})",
            (*self.me, job_id, *RESUMABLE_STATUSES),
        )
        if not changed:
            raise JobError(f"Job {job_id} was resumed by someone else.", hint="Refresh the list.")
        checkpoint = last_checkpoint(job.checkpoint_dir)
        where = f"checkpoint {checkpoint.name}" if checkpoint else "the start (no checkpoint yet)"
        kept = int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else 0
        if queries.drop_metrics_after(self.store, job_id, kept):
            where += f"; the points logged after step {kept} are trained again and replaced"
        self.journal.log(job_id, f"Resume queued from {where}")
        self._schedule()
        return self.get(job_id)

    def recover(self) -> list[str]:
        """Mark jobs left active by a dead process 'interrupted' (they can be resumed)."""
        marked = []
        me = self.me[0]
        for job in queries.jobs_with_status(self.store, ACTIVE_STATUSES):
            owner = job.owner_pid
            if owner and owner != me and same_process(owner, job.owner_started):
                continue
            if owner == me and (job.id in self._threads or job.status == "queued"):
                continue
            if same_process(job.pid, job.pid_started) and job.status != "queued":
                with contextlib.suppress(OSError):
                    (job.checkpoint_dir / STOP_FLAG).touch()
            self.journal.end(
                job.id,
                "interrupted",
                "The app stopped while this job was active.",
                "interrupted",
                message="Interrupted: the app stopped; resume to continue",
            )
            marked.append(job.id)
        return marked

    # --- scheduling and supervision --------------------------------------------------------

    def _busy_job_ids(self) -> set[str]:
        """Jobs that are active, or whose worker still lives (it may be saving its outputs)."""
        return {
            job.id
            for job in self.list_jobs(limit=10_000)
            if job.status in ACTIVE_STATUSES or same_process(job.pid, job.pid_started)
        }

    def _queued_here(self) -> list[str]:
        rows = self.store.query(
            "SELECT id FROM jobs WHERE status = 'queued' AND owner_pid = ? ORDER BY created_at",
            (self.me[0],),
        )
        return [str(row["id"]) for row in rows]

    def _claim(self) -> tuple[list[str], bool]:
        """Count running jobs and mark this process's next queued ones running, atomically.

        One ``BEGIN IMMEDIATE`` transaction holds the database's write lock from the count to the
        update, so several processes on one database never run more than MAX_CONCURRENT_JOBS.
        Returns the claimed ids and whether jobs of this process still wait.
        """
        me, started = self.me
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT id, status, owner_pid, owner_started FROM jobs"
                " WHERE status IN ('queued', 'running', 'stopping') ORDER BY created_at"
            ).fetchall()
            running = sum(
                1
                for row in rows
                if row["status"] != "queued"
                and (row["owner_pid"] == me or same_process(row["owner_pid"], row["owner_started"]))
            )
            queued = [
                row["id"] for row in rows if row["status"] == "queued" and row["owner_pid"] == me
            ]
            slots = max(0, self.settings.max_concurrent_jobs - running)
            claimed = queued[:slots]
            for job_id in claimed:
                conn.execute(
                    "UPDATE jobs SET status = 'running', started_at = coalesce(started_at, ?),"
                    " pid = NULL, pid_started = NULL, owner_started = ? WHERE id = ?",
                    (now(), started, job_id),
                )
        return claimed, len(queued) > slots

    def _schedule(self) -> None:
        with self._lock:
            if self._closing:
                return
            claimed, waiting = self._claim()
            for job_id in claimed:
                self._start(job_id)
            if waiting:
                self._ensure_poller()

    def _ensure_poller(self) -> None:
        if self._poller is not None and self._poller.is_alive():
            return

        def poll() -> None:
            while True:
                time.sleep(2.0)
                try:
                    if not self._queued_here():
                        return
                    self._schedule()
                except (sqlite3.Error, OSError) as exc:  # the storage went away under it
                    log.warning(
                        "Stopped polling the job queue of %s: %s", self.settings.db_path, exc
                    )
                    return

        self._poller = threading.Thread(target=poll, name="garden-job-queue", daemon=True)
        self._poller.start()

    def _start(self, job_id: str) -> None:
        job = self.get(job_id)
        flags = _flags_dir(job)
        for flag in (STOP_FLAG, CANCEL_FLAG):
            (flags / flag).unlink(missing_ok=True)
        thread = threading.Thread(
            target=self._supervise, args=(job_id,), name=f"garden-job-{job_id}", daemon=True
        )
        self._threads[job_id] = thread
        thread.start()

    def _task(self, job: JobRecord) -> TrainTask:
        if job.spec is None or job.plan is None or job.output_dir is None:
            raise JobError(f"Job {job.id} has no stored plan.", hint="Start a new run instead.")
        return TrainTask(
            job_id=job.id,
            spec=job.spec,
            plan=job.plan,
            settings=self.settings,
            output_dir=Path(job.output_dir),
            checkpoint_dir=job.checkpoint_dir,
            log_file=self.settings.logs_path / f"{job.id}.log",
            resume_from=last_checkpoint(job.checkpoint_dir),
            prior_energy_kwh=job.progress.energy_kwh or 0.0,
            prior_emissions_kg=job.progress.emissions_kg or 0.0,
        )

    def _supervise(self, job_id: str) -> None:
        ctx = worker_context(self.settings.warm_workers)
        events = ctx.Queue()
        ended = False
        proc = None
        try:
            task = self._task(self.get(job_id))
            proc = ctx.Process(
                target=worker_main,
                args=(task, events, dict(os.environ)),
                name=f"garden-train-{job_id}",
            )
            proc.daemon = True
            proc.start()
            self._procs[job_id] = proc
            job = self.get(job_id)
            if job.status == "cancelled" or (_flags_dir(job) / CANCEL_FLAG).exists():
                proc.kill()  # cancelled while it was being started
            self.journal.update(job_id, pid=proc.pid, pid_started=process_started(proc.pid))
            cold = cold_start_reason(self.settings.warm_workers)
            started = f"started cold ({cold})" if cold else "started"
            self.journal.log(
                job_id, f"Worker process {proc.pid} {started} (raw output: {task.log_file})"
            )
            while True:
                try:
                    event = events.get(timeout=0.5)
                except queue.Empty:
                    if not proc.is_alive():
                        break
                    continue
                except (EOFError, OSError):
                    break
                final = isinstance(event, (DoneEvent, FailedEvent))
                ended = ended or final
                self.journal.record(job_id, event)
                if final and self._closing and self.get(job_id).status != "completed":
                    self._mark_interrupted(job_id, quiet=True)  # stopped by the shutdown
            proc.join(timeout=30)
            if not ended and not self._closing:
                self.journal.worker_died(job_id, proc.exitcode)
        except Exception as exc:  # the supervisor itself must never take the app down
            self.journal.end(job_id, "failed", f"Supervisor error: {exc}", "error")
            if proc is not None and proc.is_alive():
                proc.kill()
        finally:
            self._procs.pop(job_id, None)
            self._threads.pop(job_id, None)
            with contextlib.suppress(Exception):
                events.close()
            self._schedule()

    def shutdown(self, timeout: float = SHUTDOWN_GRACE_S) -> list[str]:
        """For an app exit: every job of this process ends 'interrupted' (resumable), running
        ones first save a checkpoint, and no worker is left. Returns the ids it interrupted.

        The jobs are marked before waiting, so the record is right even if the exit is cut short.
        """
        with self._lock:
            self._closing = True
        me = self.me[0]
        mine = [job for job in self.list_jobs(limit=1000) if job.owner_pid == me]
        mine = [job for job in mine if job.status in ACTIVE_STATUSES]
        for job in mine:
            if job.status != "queued":
                with contextlib.suppress(OSError):
                    (_flags_dir(job) / STOP_FLAG).touch()
            self._mark_interrupted(job.id)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        for job_id, proc in list(self._procs.items()):
            if proc.is_alive() and proc.pid:
                self.journal.log(job_id, "The worker did not stop in time: killed", "WARNING")
                kill_tree(proc.pid, timeout=0.5)
                proc.kill()
        for job in mine:
            checkpoint = last_checkpoint(job.checkpoint_dir)
            if checkpoint is not None:
                self.journal.log(job.id, f"Resume continues from {checkpoint.name}")
        return [job.id for job in mine]

    def _mark_interrupted(self, job_id: str, quiet: bool = False) -> None:
        if quiet:
            error = "The app shut down while this job was active."
            self.journal.update(job_id, status="interrupted", error=error, error_kind="interrupted")
            return
        self.journal.end(
            job_id,
            "interrupted",
            "The app shut down while this job was active.",
            "interrupted",
            message="Interrupted: the app is shutting down (saving a checkpoint); resume later",
        )


def shutdown_managers(timeout: float = SHUTDOWN_GRACE_S) -> list[str]:
    """Shut down every job manager of this process (see ``JobManager.shutdown``)."""
    chat_pause.resume_all()  # a paused worker could neither save its checkpoint nor end
    with _managers_lock:
        managers = list(_managers.values())
    interrupted: list[str] = []
    for manager in managers:
        interrupted.extend(manager.shutdown(timeout))
    return interrupted


_managers: dict[Path, JobManager] = {}
_managers_lock = threading.Lock()


def get_job_manager(settings: Settings | None = None) -> JobManager:
    """The process-wide job manager for ``settings`` (one per database); started on first use."""
    settings = settings or get_settings()
    key = settings.db_path
    with _managers_lock:
        if key not in _managers:
            _managers[key] = JobManager(settings)
        return _managers[key]
