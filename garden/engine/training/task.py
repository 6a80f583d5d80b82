"""One run of a job as the worker and the launcher share it: the ``TrainTask``, the run's carbon
meter, the backend's context and the ``DoneEvent`` that finishes the run.

The worker (one process) and the launcher (the ranks of a distributed run) both import these
from here; neither imports the other's module for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from garden.config import Settings
from garden.engine.training import trackers
from garden.engine.training.backends.context import Emit, TrainContext, TrainOutcome
from garden.engine.training.judge_reward import default_judge
from garden.engine.training.records import (
    CarbonEvent,
    DoneEvent,
    JobResult,
    LogEvent,
    PlannedRun,
    StartedEvent,
)
from garden.engine.training.runfiles import write_run_files
from garden.engine.training.spec import STOP_FLAG, JobSpec
from garden.models import publish_output


@dataclass(frozen=True)
class TrainTask:
    """Everything a worker process needs for one run of a job (a fresh start or a resume)."""

    job_id: str
    spec: JobSpec
    plan: PlannedRun
    settings: Settings
    output_dir: Path
    checkpoint_dir: Path
    log_file: Path
    resume_from: Path | None = None
    prior_energy_kwh: float = 0.0
    prior_emissions_kg: float = 0.0


class _Carbon:
    """The job's energy and CO₂ so far: earlier runs plus this run's meter."""

    def __init__(self, task: TrainTask, emit: Emit) -> None:
        self.task = task
        self.meter = _start_meter(task, emit)

    def so_far(self) -> tuple[float | None, float | None]:
        if self.meter is None or not getattr(self.meter, "available", False):
            return None, None
        reading = self.meter.snapshot()
        return (
            self.task.prior_energy_kwh + reading.energy_kwh,
            self.task.prior_emissions_kg + reading.emissions_kg,
        )

    def stop(self) -> tuple[float | None, float | None]:
        """Stop the meter; the final totals (the last reading when no record was written)."""
        totals = self.so_far()
        meter, self.meter = self.meter, None
        if meter is None:
            return totals
        record = meter.stop()
        if record is None or getattr(record, "energy_kwh", None) is None:
            return totals
        return (
            self.task.prior_energy_kwh + record.energy_kwh,
            self.task.prior_emissions_kg + record.emissions_kg,
        )


def _start_meter(task: TrainTask, emit: Emit) -> Any:
    try:
        from garden.engine.carbon import CarbonMeter
    except ImportError:
        emit(LogEvent(level="WARNING", message="Carbon tracking is not available"))
        return None
    meter = CarbonMeter(
        kind="training", ref_id=task.job_id, label=task.spec.name, settings=task.settings
    )
    meter.start()
    if not meter.available:
        message = f"Carbon tracking unavailable: {meter.unavailable_reason}"
        emit(LogEvent(level="WARNING", message=message))
    else:
        emit(CarbonEvent(emission_id=meter.emission_id))
    return meter


def train_context(
    task: TrainTask, staging: Path, device: str, precision: str, emit: Emit
) -> TrainContext:
    """What the backend gets for this run; it stops when the job's stop flag appears."""
    return TrainContext(
        job_id=task.job_id,
        spec=task.spec,
        model_path=task.plan.model_path,
        train_path=Path(task.plan.train_path),
        eval_path=Path(task.plan.eval_path) if task.plan.eval_path else None,
        data_format=task.plan.data_format,
        output_dir=staging,
        checkpoint_dir=task.checkpoint_dir,
        resume_from=task.resume_from,
        device=device,
        precision=precision,
        emit=emit,
        should_stop=lambda: (task.checkpoint_dir / STOP_FLAG).exists(),
        extra={
            "report_to": trackers.chosen(task.spec, task.settings),
            "judge": default_judge(task.settings),
        },
    )


def finish_run(
    task: TrainTask,
    outcome: TrainOutcome,
    started: StartedEvent,
    carbon: _Carbon,
    staging: Path,
    publish: bool = True,
    tracker_run: trackers.TrackerRun | None = None,
    evaluation: Mapping[str, Any] | None = None,
) -> DoneEvent:
    """The run's result from the backend's outcome and the meter, also logged to the run's
    experiment trackers (with the ``evaluation`` after training); its files published."""
    energy_kwh, emissions_kg = carbon.stop()
    trackers.finish(
        tracker_run,
        step=outcome.steps,
        energy_kwh=energy_kwh,
        emissions_kg=emissions_kg,
        evaluation=evaluation,
        stopped=outcome.stopped,
    )
    adapter_dir = None
    if publish and outcome.adapter_dir:
        adapter_dir = str(task.output_dir / outcome.adapter_dir.relative_to(staging))
    result = JobResult(
        steps=outcome.steps,
        first_loss=outcome.first_loss,
        final_loss=outcome.final_loss,
        final_eval_loss=outcome.final_eval_loss,
        train_tokens=outcome.train_tokens,
        train_seconds=round(outcome.train_seconds, 3),
        tokens_per_second=round(outcome.tokens_per_second, 2),
        energy_kwh=energy_kwh,
        emissions_kg=emissions_kg,
        output_dir=str(task.output_dir),
        adapter_dir=adapter_dir,
        merged=publish and outcome.merged_dir is not None,
        backend=started.backend,
        backend_reason=started.backend_reason,
        device=started.device,
        precision=started.precision,
    )
    status: Literal["completed", "stopped"] = "stopped" if outcome.stopped else "completed"
    if publish:
        write_run_files(task.job_id, task.spec, task.plan, result, status, folder=staging)
        publish_output(staging, task.output_dir)
    return DoneEvent(status=status, result=result)
