"""Bodies of the REST API that no other service defines: what a web client may send, and the
job details and live job events it gets back.

A web client never names a host path: dataset sources are bundled samples, hub ids or imported
datasets (uploads come as files), and runs name imported datasets and listed models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from garden.config import Settings
from garden.errors import ServingError
from garden.services import training
from garden.services.base import View
from garden.services.chat import ChatRequest, GenerationSettings
from garden.services.datasets import DatasetSource, ImportRequest, ReadOptions
from garden.services.training import JobView, MetricPoint


class WebReadOptions(View):
    """How to read a source: a column mapping overriding detection, the sequence length above
    which rows are flagged, the model whose tokenizer counts tokens, a hub split and subset,
    and whether the answers' reasoning traces are kept (trained on) or dropped."""

    mapping: dict[str, Any] | None = None
    max_seq_len: int | None = None
    model: str | None = None
    split: str | None = None
    subset: str | None = None
    reasoning: Literal["keep", "drop"] = "keep"

    def to_options(self) -> ReadOptions:
        return ReadOptions(**self.model_dump())


class WebSource(View):
    """A bundled sample's name, a hub id (``org/name[@subset][:split]``) or an imported
    dataset's id or name."""

    kind: Literal["bundled", "hub", "imported"]
    value: str


class WebImportRequest(View):
    """Import a bundled sample, a hub dataset or an imported dataset under a new name."""

    source: WebSource
    name: str
    options: WebReadOptions = Field(default_factory=WebReadOptions)
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42
    drop_invalid: bool = False

    def to_import(self) -> ImportRequest:
        return _import_request(DatasetSource(kind=self.source.kind, value=self.source.value), self)


class UploadImportRequest(View):
    """Import an uploaded file under ``name``."""

    name: str
    options: WebReadOptions = Field(default_factory=WebReadOptions)
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42
    drop_invalid: bool = False

    def to_import(self, upload: Path) -> ImportRequest:
        return _import_request(DatasetSource(kind="upload", value=str(upload)), self)


def _import_request(
    source: DatasetSource, body: WebImportRequest | UploadImportRequest
) -> ImportRequest:
    return ImportRequest(
        source=source,
        name=body.name,
        options=body.options.to_options(),
        eval_fraction=body.eval_fraction,
        seed=body.seed,
        drop_invalid=body.drop_invalid,
    )


class JobCreated(View):
    """The answer to a new training job."""

    job_id: str
    job: JobView


class JobDetail(View):
    """A job with its logged curve points."""

    job: JobView
    metrics: list[MetricPoint]


class JobEvent(View):
    """One update of a running job, as the Fine-tune tab shows it; ``final`` on the last one."""

    job_id: str
    status: str
    step: int
    total_steps: int | None
    loss: float | None
    eval_loss: float | None = Field(None, description="Latest eval loss logged")
    tokens_per_second: float | None
    eta_s: float | None
    energy_kwh: float | None
    emissions_kg: float | None
    error: str | None = None
    final: bool = False


def job_detail(job_id: str, *, settings: Settings | None = None) -> JobDetail:
    return JobDetail(
        job=training.get(job_id, settings=settings),
        metrics=training.metrics(job_id, settings=settings),
    )


def job_event(job_id: str, *, settings: Settings | None = None) -> JobEvent:
    """The job as it stands now, with its latest eval loss."""
    job = training.get(job_id, settings=settings)
    eval_loss = job.eval_loss
    if eval_loss is None:
        logged = [p.eval_loss for p in training.metrics(job_id, settings=settings)]
        eval_loss = next((loss for loss in reversed(logged) if loss is not None), None)
    own = {"job_id", "eval_loss", "final"}
    shared = job.model_dump(include=set(JobEvent.model_fields) - own)
    return JobEvent(**shared, job_id=job.id, eval_loss=eval_loss, final=job.terminal)


class WebGenerationSettings(GenerationSettings):
    """Generation settings from a request body: a bad value is a validation error (``422``)."""

    @model_validator(mode="after")
    def _valid_for_the_engine(self) -> WebGenerationSettings:
        try:
            self.to_config().validate()
        except ServingError as exc:
            raise ValueError(exc.message) from None
        return self


class WebChatRequest(ChatRequest):
    """What to answer (``model``: a listed model's id or name; default: the embedded one)."""

    generation: WebGenerationSettings = Field(default_factory=WebGenerationSettings)


class HealthView(View):
    """What the open health route says: up, which version, whether the default model is ready."""

    status: Literal["ok"] = "ok"
    version: str
    default_model_ready: bool

    @classmethod
    def current(cls, *, settings: Settings | None = None) -> HealthView:
        from garden import __version__
        from garden.services import models

        return cls(
            version=__version__, default_model_ready=models.is_default_prepared(settings=settings)
        )
