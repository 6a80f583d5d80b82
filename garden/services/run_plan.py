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
from garden.engine.training import JobSpec
from garden.engine.training.plan import JobPlan, plan_job
from garden.services import training
from garden.services.base import View, resolve


class RunPlanView(View):
    """What a run would do on this machine, planned and not started."""

    name: str | None = Field(None, description="The run's name; None: it is named when it starts")
    method: str
    model: str
    dataset: str
    device: str = Field(description="cpu or cuda")
    layout: str | None = Field(None, description="Processes and global batch; None for one")
    gradient_checkpointing: bool = Field(description="As the memory plan chose it")
    notes: list[str] = Field(description="How it was planned, as the job's log would show it")
    warnings: list[str]

    def lines(self) -> list[str]:
        """The plan as a few lines of text, without its warnings."""
        run = f"Run {self.name}" if self.name else "A run (named when it starts)"
        head = f"{run}: {self.method} of {self.model} on {self.dataset} ({self.device})"
        return [head, *([self.layout] if self.layout else []), *self.notes]


def plan(spec: JobSpec, *, settings: Settings | None = None) -> RunPlanView:
    """Plan ``spec`` as ``training.submit`` would, and queue nothing; raises the same errors.
    A dataset given as a file is imported to be checked, as a submit does, and removed again."""
    settings = resolve(settings)
    training.check_spec(spec, settings)
    source = Path(spec.dataset).expanduser()
    if not source.is_file():
        return _view(spec, plan_job(spec, settings))
    imported = import_dataset(source, f"dry-run-{uuid.uuid4().hex[:12]}", settings=settings)
    try:
        planned = plan_job(spec.model_copy(update={"dataset": imported.id}), settings)
    finally:
        delete_dataset(imported.id, settings)
    return _view(spec, planned, source.name)


def _view(spec: JobSpec, planned: JobPlan, dataset: str | None = None) -> RunPlanView:
    return RunPlanView(
        name=spec.name,
        method=planned.spec.method,
        model=planned.model.name,
        dataset=dataset or planned.dataset.name,
        device=planned.layout.device,
        layout=planned.layout_line(),
        gradient_checkpointing=bool(planned.spec.gradient_checkpointing),
        notes=list(planned.notes),
        warnings=list(planned.warnings),
    )


def plan_from_web(values: Mapping[str, object], *, settings: Settings | None = None) -> RunPlanView:
    """``plan`` of a run typed in a web form, with the web's checks (``training.web_spec``)."""
    return plan(training.web_spec(values, settings=settings), settings=settings)
