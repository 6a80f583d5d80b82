"""A run planned without starting it: what ``training.submit`` would queue, as people read it.

The same checks and plan as a submit (model, dataset, lengths, budgets, disk, the processes'
layout, the CPU memory plan), and nothing queued: ``model-garden train --dry-run`` and
``POST /api/v1/training/plan``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from garden.config import Settings
from garden.data import delete_dataset, import_dataset
from garden.engine.training import JobSpec, queries
from garden.engine.training.budget import has_budget
from garden.engine.training.forecast import (
    Forecast,
    forecast,
    past_pace,
    planned_steps,
    planned_tokens,
    unit_of,
)
from garden.engine.training.plan import JobPlan, plan_job
from garden.services import training
from garden.services.base import View, resolve
from garden.store import get_store

PAST_JOBS_READ = 200  # the newest completed jobs searched for runs like the planned one


class RunPlanView(View):
    """What a run would do on this machine, planned and not started."""

    name: str | None = Field(None, description="The run's name; None: it is named when it starts")
    method: str
    objective: str = Field("sft", description="sft, dpo, orpo, kto or grpo")
    model: str
    dataset: str
    device: str = Field(description="cpu or cuda")
    layout: str | None = Field(None, description="Processes and global batch; None for one")
    gradient_checkpointing: bool = Field(description="As the memory plan chose it")
    notes: list[str] = Field(description="How it was planned, as the job's log would show it")
    forecast: str = Field(description="What the run should take, or why there is no forecast")
    forecast_tokens: int | None = Field(
        None, description="SFT: the non-padding tokens it would train on"
    )
    forecast_steps: int | None = Field(
        None, description="Preference and GRPO runs: the optimizer steps it would take"
    )
    forecast_s: float | None = Field(None, description="Training seconds, from earlier runs' pace")
    forecast_kwh: float | None = None
    forecast_co2_kg: float | None = Field(None, description="kg CO₂-equivalent")
    warnings: list[str]

    def lines(self) -> list[str]:
        """The plan as a few lines of text, without its warnings."""
        run = f"Run {self.name}" if self.name else "A run (named when it starts)"
        head = f"{run}: {_kind(self.method, self.objective)} of {self.model} on {self.dataset}"
        head += f" ({self.device})"
        return [head, *([self.layout] if self.layout else []), self.forecast, *self.notes]


def plan(spec: JobSpec, *, settings: Settings | None = None) -> RunPlanView:
    """Plan ``spec`` as ``training.submit`` would, and queue nothing; raises the same errors.
    A dataset given as a file is imported to be checked, as a submit does, and removed again."""
    settings = resolve(settings)
    training.check_spec(spec, settings)
    source = Path(spec.dataset).expanduser()
    if not source.is_file():
        planned = plan_job(spec, settings)
        return _view(spec, planned, _forecast(planned, settings))
    imported = import_dataset(source, f"dry-run-{uuid.uuid4().hex[:12]}", settings=settings)
    try:
        planned = plan_job(spec.model_copy(update={"dataset": imported.id}), settings)
    finally:
        delete_dataset(imported.id, settings)
    return _view(spec, planned, _forecast(planned, settings), source.name)


def _forecast(planned: JobPlan, settings: Settings) -> Forecast | str:
    """The run's forecast from earlier runs here, or the line that says why there is none."""
    spec, stats, layout = planned.spec, planned.dataset.token_stats, planned.layout
    rows = planned.dataset.train_rows or int(stats.get("rows") or 0)
    unit = unit_of(spec)
    if unit == "tokens":
        amount = planned_tokens(spec, rows, float(stats.get("mean") or 0), layout.world_size)
        uncounted = "has no token counts"
    else:
        amount = planned_steps(spec, rows, layout.world_size)
        uncounted = "has no rows to count steps from"
    if amount is None:
        return f"No forecast: {planned.dataset.name} {uncounted}."
    jobs = queries.list_jobs(get_store(settings.db_path), PAST_JOBS_READ, "completed")
    pace = past_pace(jobs, spec, planned.model.id, layout.device, layout.world_size)
    if pace is not None:
        return forecast(spec, amount, pace)
    kind = _kind(spec.method, spec.objective)
    missing = f"No forecast yet: no completed {kind} run of {planned.model.name} here"
    if has_budget(spec):
        return f"{missing}; the run measures its pace in its first steps and fits the budget."
    return f"{missing} to take the pace from (about {amount:,} {unit} to train)."


def _view(
    spec: JobSpec, planned: JobPlan, told: Forecast | str, dataset: str | None = None
) -> RunPlanView:
    numbers = told if isinstance(told, Forecast) else None
    in_tokens = numbers is not None and numbers.pace.unit == "tokens"
    return RunPlanView(
        name=spec.name,
        method=planned.spec.method,
        objective=planned.spec.objective,
        model=planned.model.name,
        dataset=dataset or planned.dataset.name,
        device=planned.layout.device,
        layout=planned.layout_line(),
        gradient_checkpointing=bool(planned.spec.gradient_checkpointing),
        notes=list(planned.notes),
        forecast=told
        if isinstance(told, str)
        else told.line(planned.model.name, _kind(spec.method, spec.objective)),
        forecast_tokens=numbers.amount if numbers and in_tokens else None,
        forecast_steps=numbers.amount if numbers and not in_tokens else None,
        forecast_s=numbers.seconds if numbers else None,
        forecast_kwh=numbers.kwh if numbers else None,
        forecast_co2_kg=numbers.co2_kg if numbers else None,
        warnings=list(planned.warnings),
    )


def _kind(method: str, objective: str) -> str:
    """``lora``, or ``lora ORPO`` for a run of another objective than SFT."""
    return method if objective == "sft" else f"{method} {objective.upper()}"


def plan_from_web(values: Mapping[str, object], *, settings: Settings | None = None) -> RunPlanView:
    """``plan`` of a run typed in a web form, with the web's checks (``training.web_spec``)."""
    return plan(training.web_spec(values, settings=settings), settings=settings)
