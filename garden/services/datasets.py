"""Datasets: inspect a source, import it for fine-tuning, and list, find or delete imports.

The web front ends name a source with a ``DatasetSource`` (an upload, a bundled sample, a hub
id or an imported dataset); the CLI, the machine owner's tool, may also pass a local path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from garden import data, units
from garden.config import Settings
from garden.data import DatasetKind
from garden.data import ReadOptions as ReadOptions  # how to read a source; front ends use it
from garden.errors import DatasetError
from garden.services import visitors, web
from garden.services.base import View, resolve
from garden.services.dataset_registry import RegistryImportView as RegistryImportView
from garden.services.dataset_registry import import_registry as import_registry

Progress = Callable[[float, str], None]
SourceKind = Literal["upload", "bundled", "hub", "imported"]


class DatasetSource(View):
    """A source the web may read: never a host path typed by a visitor.

    ``value`` is the uploaded file's path (as saved by the web server), a bundled sample's
    name, a hub id (``org/name[@subset][:split]``) or an imported dataset's id or name.
    """

    kind: SourceKind
    value: str | None = None


class Issue(View):
    """One problem or warning: what kind, what it says, and where (``line 7``)."""

    kind: str
    message: str
    location: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class TokenStats(View):
    """Token lengths as the model sees the rows; from a random sample of ``count`` rows when
    ``sampled``. Without a tokenizer ``count`` is 0 and the figures are unknown."""

    count: int = 0
    rows: int = 0
    sampled: bool = False
    min: int | None = None
    max: int | None = None
    mean: float | None = None
    median: int | None = None
    p95: int | None = None
    total_estimate: int | None = None
    over_max_seq_len: int | None = Field(
        None, description="rows longer than max_seq_len (conversations are truncated there)"
    )
    chunks_estimate: int | None = Field(
        None, description="text only: examples once long documents are split at max_seq_len"
    )


class FormatCandidate(View):
    """A format some of the sampled rows fit, and the share of them that fit it."""

    format: str
    share: float


class SamplePreview(View):
    """A processed sample as a person checks it: ``rendered`` through the model's chat template
    (tools passed); a pair's ``prompt`` (last turn), ``chosen`` and ``rejected`` answers; a
    labelled answer's ``chosen`` text and ``label``; a tool conversation's tools and calls."""

    kind: DatasetKind
    rendered: str
    prompt: str = ""
    chosen: str = ""
    rejected: str = ""
    rendered_prompt: str = ""
    label: bool | None = None
    tools: list[str] = Field(default_factory=list)
    calls: list[str] = Field(default_factory=list)
    reasoning: str = Field("", description="the answers' reasoning traces, one paragraph each")


class InspectView(View):
    """What a source holds and what is wrong with it (nothing is saved). ``kind`` is what its
    rows become (``chat``, ``text``, ``preference`` or ``feedback``)."""

    source: str
    source_kind: str
    file_type: str | None
    format: str
    kind: DatasetKind
    confidence: float
    detection: str
    mapping: dict[str, str]
    candidates: list[FormatCandidate]
    columns: list[str]
    rows: int
    valid_rows: int
    invalid_rows: int
    usable: bool
    problem: str | None
    error_counts: dict[str, int]
    errors: list[Issue]
    warning_counts: dict[str, int]
    warnings: list[Issue]
    max_seq_len: int | None
    token_stats: TokenStats
    token_lengths: list[int]
    raw_preview: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    rendered: list[str]
    previews: list[SamplePreview] = Field(default_factory=list)
    reasoning_rows: int = Field(0, description="usable rows whose answers carry reasoning")
    reasoning: Literal["keep", "drop"] = "keep"


class DatasetView(View):
    """An imported dataset: its train/eval split as JSONL files, ready for fine-tuning, and the
    kind of its rows (which training objectives fit it: ``garden.data.kinds``)."""

    id: str
    name: str
    source: str
    format: str
    kind: DatasetKind
    mapping: dict[str, str]
    rows: int
    train_rows: int
    eval_rows: int
    eval_fraction: float
    seed: int
    token_stats: TokenStats
    path: str
    train_path: str
    eval_path: str
    created_at: float
    raw_path: str | None
    warnings: list[str]
    teacher: str | None = Field(
        None, description="The teacher of a dataset synthesised from documents"
    )
    synthesis_emission_id: str | None = None
    synthesis_energy_kwh: float | None = Field(None, description="None: unknown (remote teacher)")
    synthesis_emissions_kg: float | None = None

    synthesis_energy: str | None = Field(
        None, description="The synthesis's energy and CO₂, or why unknown (remote teacher)"
    )


class ImportRequest(View):
    """What to import and how: the source, the name to save it under, how to read it, and
    how to split it (``eval_fraction`` of the rows, chosen by ``seed``, go to eval)."""

    source: DatasetSource | str
    name: str
    options: ReadOptions = Field(default_factory=ReadOptions)
    eval_fraction: float = 0.1
    seed: int = 42
    drop_invalid: bool = False


class BundledSample(View):
    """A sample dataset shipped with Model Garden."""

    name: str
    description: str


def bundled_samples() -> list[BundledSample]:
    return [BundledSample(name=b.name, description=b.description) for b in data.list_bundled()]


def list_datasets(*, settings: Settings | None = None) -> list[DatasetView]:
    """Every imported dataset, newest first."""
    return [_dataset_view(record) for record in data.list_datasets(resolve(settings))]


def dataset_choices(*, settings: Settings | None = None) -> list[tuple[str, str]]:
    """``(label, id)`` pairs of the imported datasets for a dropdown, newest first."""
    return data.dataset_choices(resolve(settings))


def get_dataset(id_or_name: str, *, settings: Settings | None = None) -> DatasetView:
    return _dataset_view(data.get_dataset(id_or_name, resolve(settings)))


def delete_dataset(
    id_or_name: str | None,
    *,
    settings: Settings | None = None,
    visitor: visitors.Visitor | None = None,
) -> DatasetView:
    """Remove an imported dataset: its processed files, its raw copy and its record. A public
    demo's ``visitor`` may remove only a dataset it imported."""
    if not id_or_name:
        raise DatasetError("No dataset chosen.", hint="Pick the dataset to delete in the list.")
    settings = resolve(settings)
    record = data.get_dataset(id_or_name, settings)
    visitors.check_may_change("dataset", record.id, visitor, settings=settings)
    return _dataset_view(data.delete_dataset(record.id, settings))


def model_choices(*, settings: Settings | None = None) -> list[str]:
    """The models whose tokenizer and chat template can count and render samples."""
    from garden.models import list_models

    return [model.id for model in list_models(resolve(settings))]


def inspect(
    source: DatasetSource | str | Path,
    options: ReadOptions | None = None,
    *,
    rendered_samples: int = 10,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> InspectView:
    """Detect, validate and summarise a source without saving anything.

    Raises ``DatasetError`` when the source cannot be read at all; problems of single rows
    are in the view, with their locations. The first ``rendered_samples`` samples are
    rendered with the model's chat template.
    """
    settings = resolve(settings)
    options = _web_options(source, options, settings)
    report = data.inspect_source(
        _source_ref(source, settings), options, settings=settings, progress=progress,
        rendered_samples=rendered_samples,
    )  # fmt: skip
    previews: list[SamplePreview] = []
    if report.rendered:  # the tokenizer loaded
        shown = report.samples[:rendered_samples]
        model = options.model if options else None
        previews = render_preview(shown, model=model, settings=settings)
    return InspectView.model_validate(report.to_dict() | {"previews": previews})


def import_dataset(
    request: ImportRequest,
    *,
    progress: Progress | None = None,
    settings: Settings | None = None,
    visitor: visitors.Visitor | None = None,
) -> DatasetView:
    """Normalise, validate and split a source and save it under the requested name.

    Rows that cannot be used make the import fail, naming them, unless ``drop_invalid``. A
    public demo's ``visitor`` may import only ``PUBLIC_DEMO_MAX_DATASETS_PER_VISITOR``.
    """
    settings = resolve(settings)
    options = _web_options(request.source, request.options, settings)
    with visitors.adding("dataset", visitor, settings=settings) as claim:
        record = data.import_dataset(
            _source_ref(request.source, settings), request.name, options,
            eval_fraction=request.eval_fraction, seed=request.seed,
            drop_invalid=request.drop_invalid, settings=settings, progress=progress,
        )  # fmt: skip
        claim(record.id)
    return _dataset_view(record)


def render_samples(
    samples: list[dict[str, Any]], *, model: str | None = None, settings: Settings | None = None
) -> list[str]:
    """Samples as ``model`` sees them in training (rendered with its chat template)."""
    return data.render_samples(samples, model, resolve(settings))


def render_preview(
    samples: list[dict[str, Any]], *, model: str | None = None, settings: Settings | None = None
) -> list[SamplePreview]:
    """Processed samples as previews: pairs split into prompt, chosen and rejected, tool
    conversations rendered through ``model``'s chat template with their tools passed."""
    previews = data.preview_samples(samples, model, resolve(settings))
    return [SamplePreview.model_validate(preview) for preview in previews]


def _dataset_view(record: data.DatasetRecord) -> DatasetView:
    return DatasetView.model_validate(record.to_dict() | {"synthesis_energy": _cost(record)})


def _cost(record: data.DatasetRecord) -> str | None:
    """A synthesised dataset's energy and CO₂, or why they are unknown; None otherwise."""
    if record.teacher is None:
        return None
    if record.synthesis_energy_kwh is None:
        return "unknown: remote teacher" if "://" in record.teacher else "unknown: not metered"
    energy, co2 = (
        units.energy(record.synthesis_energy_kwh),
        units.co2(record.synthesis_emissions_kg),
    )
    return f"{energy}, {co2} CO₂e"


def _web_options(
    source: DatasetSource | str | Path, options: ReadOptions | None, settings: Settings
) -> ReadOptions | None:
    """For a web source, the tokenizer model too must be a listed model or a hub id."""
    if not isinstance(source, DatasetSource) or options is None or not options.model:
        return options
    return dataclasses.replace(options, model=web.check_model(options.model, settings=settings))


def _upload_path(value: str) -> Path:
    """The uploaded file: a regular file the web server saved, never a link or a folder."""
    if not value:
        raise DatasetError(
            "No file uploaded yet.",
            hint="Drop a .jsonl, .json, .csv or .parquet file (optionally .gz) in the upload box.",
        )
    path = Path(value)
    if not path.is_absolute() or path.is_symlink() or not path.is_file():
        raise DatasetError(
            f"The upload {path.name!r} is not an uploaded file.", hint="Upload the file again."
        )
    return path


def _source_ref(source: DatasetSource | str | Path, settings: Settings) -> str | Path:
    """What the engine reads for ``source``; a path or ref string (CLI) is passed on as it is.

    A ``DatasetSource`` (the web) never names a host path: hub ids are checked strictly.
    """
    if not isinstance(source, DatasetSource):
        return source
    value = (source.value or "").strip()
    if source.kind == "upload":
        return _upload_path(value)
    if source.kind == "bundled":
        if not value:
            raise DatasetError("No bundled sample chosen.", hint="Pick one in the list.")
        return f"bundled:{value}"
    if source.kind == "hub":
        return f"hub:{web.check_hub_dataset(value)}"
    if not value:
        raise DatasetError(
            "No imported dataset chosen.", hint="Import one first, or pick another source."
        )
    return str(data.get_dataset(value, settings).train_path)
