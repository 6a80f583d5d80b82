"""Fine-tuning jobs: spec, planning, a queue, supervising threads and worker processes.

A job is a row in ``jobs``. ``spec`` says what a job is, ``plan`` checks it before launch,
``manager`` queues and supervises jobs, ``worker`` trains one run in its own process with a
backend from ``backends``, ``journal`` records what happens, ``queries`` reads it back, and
``records`` holds the typed shapes all of these pass around. A multi-process job is spread by
``distributed`` (strategy, Accelerate config, command), started by ``launcher`` inside the
worker through ``accelerate launch``, and trained by ``rank`` in every process.
"""

from garden.engine.training.manager import JobManager, get_job_manager, last_checkpoint
from garden.engine.training.plan import DatasetRef, JobPlan, estimate_gpu_bytes, plan_job
from garden.engine.training.queries import LogRecord, MetricRecord
from garden.engine.training.records import JobProgress, JobRecord, JobResult, PlannedRun
from garden.engine.training.spec import (
    ACTIVE_STATUSES,
    PRESETS,
    RESUMABLE_STATUSES,
    TERMINAL_STATUSES,
    JobSpec,
    parse_spec,
)

__all__ = [
    "ACTIVE_STATUSES",
    "PRESETS",
    "RESUMABLE_STATUSES",
    "TERMINAL_STATUSES",
    "DatasetRef",
    "JobManager",
    "JobPlan",
    "JobProgress",
    "JobRecord",
    "JobResult",
    "JobSpec",
    "LogRecord",
    "MetricRecord",
    "PlannedRun",
    "estimate_gpu_bytes",
    "get_job_manager",
    "last_checkpoint",
    "parse_spec",
    "plan_job",
]
