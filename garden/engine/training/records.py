"""The typed shapes of a job once it exists: its plan, live progress, result, row and events.

A job row in ``jobs`` keeps its ``JobSpec`` in ``spec_json``, its ``PlannedRun`` in
``plan_json``, its ``JobProgress`` in ``progress_json`` and, once a run ends, its ``JobResult``
in ``result_json``. The worker process reports through the ``WorkerEvent`` models below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from garden.engine.training.spec import JobSpec


class PlannedRun(BaseModel):
    """What planning resolved for a job: the model and dataset files it trains on."""

    model_id: str
    model_path: str
    train_path: str
    eval_path: str | None = None
    dataset_id: str
    dataset_name: str
    data_format: str
    strategy: str = Field("single", description="single, ddp, fsdp or deepspeed")
    num_processes: int = Field(1, description="Training processes per machine")
    num_machines: int = 1
    global_batch: int = Field(
        0, description="Examples per optimizer step: batch per process x processes x accumulation"
    )

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_machines


class StepMetrics(BaseModel):
    """What the training loop reports at a logged step (every field but ``step`` optional)."""

    model_config = ConfigDict(extra="ignore")

    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    train_tokens: int = 0
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    eta_s: float | None = None
    energy_kwh: float | None = Field(None, description="Energy so far, all runs of the job")
    emissions_kg: float | None = None
    reward_chosen: float | None = Field(None, description="Preference runs: mean chosen reward")
    reward_rejected: float | None = None
    reward_margin: float | None = Field(None, description="Mean chosen minus rejected reward")
    reward_accuracy: float | None = Field(None, description="Share of pairs ranked right")
    eval_reward_margin: float | None = None
    reward_mean: float | None = Field(None, description="GRPO: mean weighted reward")
    reward_std: float | None = None
    completion_length: float | None = Field(None, description="GRPO: mean completion tokens")
    kl: float | None = None
    rewards_by_function: dict[str, float] | None = Field(
        None, description="GRPO: mean reward of each reward function"
    )
    budget_steps: int | None = Field(None, description="Budgeted runs: the steps fitted")
    forecast_s: float | None = Field(None, description="Budgeted runs: training seconds planned")
    forecast_kwh: float | None = None
    forecast_co2_kg: float | None = None


# TRL's log keys of the preference trainers (DPO, ORPO, KTO), and the metric each one sets.
REWARD_LOG_KEYS = {
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
    "eval_rewards/margins": "eval_reward_margin",
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "completions/mean_length": "completion_length",
    "kl": "kl",
}
REWARD_METRICS = frozenset({*REWARD_LOG_KEYS.values(), "rewards_by_function"})


def reward_metrics(logs: dict[str, Any]) -> dict[str, Any]:
    """The reward metrics a preference or GRPO trainer logged (none for SFT); GRPO's
    ``rewards/<function>/mean`` become ``rewards_by_function``."""
    metrics: dict[str, Any] = {
        name: float(logs[key]) for key, name in REWARD_LOG_KEYS.items() if key in logs
    }
    by_function = {
        key.removeprefix("rewards/").removesuffix("/mean"): float(value)
        for key, value in logs.items()
        if key.startswith("rewards/") and key.endswith("/mean")
    }
    if by_function:
        metrics["rewards_by_function"] = by_function
    return metrics


class JobProgress(StepMetrics):
    """A job's live state: the latest step metrics merged, and its carbon record."""

    emission_id: str | None = None
    updated_at: float | None = None

    def merged(self, update: StepMetrics) -> JobProgress:
        """This progress with the fields ``update`` carries (its unset and empty ones ignored)."""
        changes = update.model_dump(exclude_unset=True, exclude_none=True)
        return self.model_copy(update=changes)


class CompletionSample(BaseModel):
    """One GRPO completion sampled at a logged step, with each reward function's score and the
    weighted total (None where a function gave no score)."""

    step: int
    prompt: str
    completion: str
    rewards: dict[str, float | None] = Field(default_factory=dict)
    total: float | None = None


MAX_SAMPLES = 8  # kept per job: the newest


class JobResult(BaseModel):
    """How a run ended (``completed`` or ``stopped``): losses, throughput, energy, outputs."""

    model_config = ConfigDict(extra="ignore")

    steps: int
    first_loss: float | None = None
    final_loss: float | None = None
    final_eval_loss: float | None = None
    train_tokens: int = 0
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    energy_kwh: float | None = None
    emissions_kg: float | None = None
    output_dir: str
    adapter_dir: str | None = None
    merged: bool = False
    backend: str
    backend_reason: str
    device: str
    precision: str


Model = TypeVar("Model", bound=BaseModel)


def parse_or_none(model: type[Model], data: Any) -> Model | None:
    """``data`` as ``model``, or None when it is missing or was written in another shape."""
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _samples(data: Any) -> list[CompletionSample]:
    if not isinstance(data, list):
        return []
    return [s for s in (parse_or_none(CompletionSample, item) for item in data) if s is not None]


class JobRecord(BaseModel):
    """One row of ``jobs``, typed. ``spec`` is None for rows that other tools wrote."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    status: str
    spec: JobSpec | None = None
    plan: PlannedRun | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    result: JobResult | None = None
    samples: list[CompletionSample] = Field(
        default_factory=list, description="GRPO: the newest sampled completions, newest first"
    )
    backend: str | None = None
    backend_reason: str | None = None
    device: str | None = None
    checkpoint_dir: Path
    output_dir: str | None = None
    pid: int | None = Field(None, description="The worker process")
    pid_started: float | None = Field(None, description="The worker's start time (its identity)")
    owner_pid: int | None = Field(None, description="The app process that queued or runs it")
    owner_started: float | None = Field(None, description="The owner's start time")
    error: str | None = None
    error_kind: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobRecord:
        """A ``jobs`` row as read by ``garden.store`` (its ``*_json`` columns decoded)."""
        return cls.model_validate(
            {
                **row,
                "spec": parse_or_none(JobSpec, row.get("spec_json")),
                "plan": parse_or_none(PlannedRun, row.get("plan_json")),
                "progress": parse_or_none(JobProgress, row.get("progress_json")) or JobProgress(),
                "result": parse_or_none(JobResult, row.get("result_json")),
                "samples": _samples(row.get("samples_json")),
                "checkpoint_dir": row.get("checkpoint_dir") or "",
            }
        )


# Worker events: what the worker process puts on its queue for the supervising thread.


class LogEvent(BaseModel):
    level: str = "INFO"
    message: str


class StartedEvent(BaseModel):
    backend: str
    backend_reason: str
    device: str
    precision: str
    pid: int


class MetricsEvent(BaseModel):
    """A step's metrics; ``logged`` ones are also kept as a point of the job's curves."""

    metrics: StepMetrics
    logged: bool = True


class SamplesEvent(BaseModel):
    """A few completions of the step just logged (GRPO), with their rewards."""

    samples: list[CompletionSample]


class CarbonEvent(BaseModel):
    emission_id: str


class DoneEvent(BaseModel):
    status: Literal["completed", "stopped"]
    result: JobResult


class FailedEvent(BaseModel):
    error_kind: str
    error: str
    hint: str | None = None


WorkerEvent = (
    LogEvent | StartedEvent | MetricsEvent | SamplesEvent | CarbonEvent | DoneEvent | FailedEvent
)
