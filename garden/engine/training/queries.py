"""Reading jobs back from the store as typed records: jobs, their curves and their logs."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from garden.engine.training.records import JobRecord, StepMetrics
from garden.errors import JobError
from garden.store import Store

METRIC_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "eval_loss",
    "learning_rate",
    "grad_norm",
    "tokens_per_second",
    "energy_kwh",
    "emissions_kg",
)
FOLLOWED_STATUSES = ("running", "stopping", "queued")


class MetricRecord(StepMetrics):
    """One point of a job's curves (a row of ``job_metrics``)."""

    ts: float


class LogRecord(BaseModel):
    """One line of a job's log (a row of ``job_logs``)."""

    id: int
    ts: float
    level: str
    message: str


def get_job(store: Store, job_id: str) -> JobRecord:
    row = store.get("jobs", job_id)
    if row is None:
        raise JobError(
            f"Unknown job {job_id!r}.", hint="Run `model-garden jobs list` to see job ids."
        )
    return JobRecord.from_row(row)


def list_jobs(store: Store, limit: int = 100, status: str | None = None) -> list[JobRecord]:
    where = {"status": status} if status else None
    rows = store.list("jobs", where=where, order_by="created_at DESC", limit=limit)
    return [JobRecord.from_row(row) for row in rows]


def jobs_with_status(store: Store, statuses: Sequence[str]) -> list[JobRecord]:
    marks = ", ".join("?" for _ in statuses)
    rows = store.query(f"SELECT * FROM jobs WHERE status IN ({marks})", tuple(statuses))
    return [JobRecord.from_row(row) for row in rows]


def active_job(store: Store) -> JobRecord | None:
    """The most recent running (or else queued) job, for views that follow one live."""
    for status in FOLLOWED_STATUSES:
        jobs = list_jobs(store, limit=1, status=status)
        if jobs:
            return jobs[0]
    return None


def read_metrics(store: Store, job_id: str) -> list[MetricRecord]:
    columns = ", ".join(("ts", *METRIC_COLUMNS, "data_json"))
    rows = store.query(
        f"SELECT {columns} FROM job_metrics WHERE job_id = ? ORDER BY step, id", (job_id,)
    )
    return [MetricRecord.model_validate({**(row.pop("data_json") or {}), **row}) for row in rows]


def drop_metrics_after(store: Store, job_id: str, step: int) -> int:
    """Forget the points logged after ``step``: a resume from that step's checkpoint trains those
    steps again, so the curve keeps one point per step. Returns how many were dropped."""
    return store.execute("DELETE FROM job_metrics WHERE job_id = ? AND step > ?", (job_id, step))


def read_logs(store: Store, job_id: str, after_id: int = 0, limit: int = 200) -> list[LogRecord]:
    """The last ``limit`` log lines after ``after_id``, oldest first."""
    rows = store.query(
        "SELECT id, ts, level, message FROM job_logs WHERE job_id = ? AND id > ? "
        "ORDER BY id DESC LIMIT ?",
        (job_id, after_id, limit),
    )
    return [LogRecord.model_validate(row) for row in rows[::-1]]
