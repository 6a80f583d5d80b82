"""What a backend gets and gives back: ``TrainContext`` in, ``TrainOutcome`` out.

The backends (``trl_peft``, ``preference``, ``unsloth``) and the package that dispatches to them
both import these types from here, so no backend imports the package that imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garden.engine.training.records import LogEvent, StepMetrics, WorkerEvent
from garden.engine.training.spec import JobSpec

Emit = Callable[[WorkerEvent], None]


@dataclass
class TrainContext:
    """Everything a backend needs for one run of a job (a fresh start or a resume)."""

    job_id: str
    spec: JobSpec
    model_path: str
    train_path: Path
    eval_path: Path | None
    data_format: str
    output_dir: Path
    checkpoint_dir: Path
    resume_from: Path | None
    device: str
    precision: str
    emit: Emit
    should_stop: Callable[[], bool]
    carbon: Callable[[], tuple[float | None, float | None]] = lambda: (None, None)
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str, level: str = "INFO") -> None:
        self.emit(LogEvent(level=level, message=message))


@dataclass
class TrainOutcome:
    stopped: bool
    steps: int
    first_loss: float | None
    final_loss: float | None
    final_eval_loss: float | None
    train_tokens: int
    train_seconds: float
    adapter_dir: Path | None
    merged_dir: Path | None
    history: list[StepMetrics] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else 0.0
