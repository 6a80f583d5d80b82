"""Export a fine-tuned run or any listed model (adapter zip, merged safetensors, GGUF, an
Ollama folder with its Modelfile) and push it to the Hugging Face Hub. Front-end agnostic: the
CLI, the Fine-tune tab and the REST API call :func:`export` with an :class:`ExportRequest` and read
an :class:`ExportView` back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

from pydantic import Field

from garden.config import Settings
from garden.engine.evaluation import EvalRequest
from garden.engine.evaluation.plan import request_for_job
from garden.engine.evaluation.quant_cost import QuantCost, quantization_cost
from garden.engine.export import (
    DEFAULT_QUANTS,
    EXPORT_FORMATS,
    GGUF_FORMATS,
    GGUF_QUANTS,
    ExportSource,
    export_source,
    find_source,
)
from garden.engine.training import queries
from garden.errors import ExportError, GardenError
from garden.services import training
from garden.services.base import View, resolve
from garden.store import get_store

__all__ = [
    "DEFAULT_QUANTS",
    "EXPORT_FORMATS",
    "GGUF_QUANTS",
    "ExportRequest",
    "ExportView",
    "QuantCost",
    "WebExportRequest",
    "download_name",
    "download_path",
    "export",
    "export_for_web",
]

ExportFormat = Literal["adapter", "merged", "gguf", "ollama"]
GgufQuant = Literal["f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]


QUANT_HELP = (
    f"GGUF and Ollama only; {DEFAULT_QUANTS['gguf']} for GGUF and {DEFAULT_QUANTS['ollama']} "
    "for Ollama when not given"
)


class ExportRequest(View):
    """What to export and where to send it (no host paths: the CLI passes ``out_dir`` aside)."""

    model: str = Field(description="A fine-tuned run or any listed model id or name")
    format: ExportFormat
    quant: GgufQuant | None = Field(None, description=QUANT_HELP)
    push_to: str | None = Field(None, description="Hugging Face repository id to push to")
    dry_run: bool = Field(False, description="Write the folder a push would send; push nothing")
    private: bool = Field(True, description="Create the Hub repository as private")
    bundle: bool = Field(False, description="Also zip a merged or Ollama export for download")
    check_quality: bool = Field(
        False,
        description="GGUF and Ollama exports of a run: answer the run's held-out prompts with the "
        "unquantized model and the GGUF and report both ROUGE-L",
    )


class ExportView(View):
    """A finished export: its folder (the repository a push sends) and its download."""

    model: str
    format: ExportFormat
    quant: GgufQuant | None = None
    folder: str | None = Field(None, description="Relative to STORAGE_ROOT (None when outside)")
    folder_abs: str
    download: str | None = Field(None, description="File to download, relative to STORAGE_ROOT")
    download_abs: str | None = None
    files: list[str]
    size_bytes: int
    card: dict[str, Any] = Field(description="Facts in the model card (base model, losses, CO₂)")
    pushed_url: str | None = None
    dry_run: bool = False
    commands: list[str] = Field(
        default_factory=list, description="Ollama only: the commands to run in the folder"
    )
    quality: QuantCost | None = Field(
        None, description="With check_quality: ROUGE-L unquantized and quantized, same prompts"
    )


def export(
    request: ExportRequest, *, out_dir: Path | None = None, settings: Settings | None = None
) -> ExportView:
    """Run one export. ``out_dir`` is for the CLI only: the web never passes a typed path."""
    settings = resolve(settings)
    source = find_source(request.model, settings)
    check = _quality_request(source, request, settings) if request.check_quality else None
    footprint = _training_footprint(source, settings)
    options = request.model_dump(include={"quant", "push_to", "dry_run", "private", "bundle"})
    result = export_source(
        source, request.format, settings=settings, out_dir=out_dir, **options, **footprint
    )
    quant = cast("GgufQuant | None", result.quant)  # the engine checked it against GGUF_QUANTS
    root = settings.storage_root.resolve()
    return ExportView(
        model=source.id,
        format=request.format,
        quant=quant,
        folder=_relative(result.folder, root),
        folder_abs=str(result.folder),
        download=_relative(result.download, root),
        download_abs=str(result.download) if result.download else None,
        files=result.files,
        size_bytes=result.size_bytes,
        card=result.card,
        pushed_url=result.pushed_url,
        dry_run=request.dry_run,
        commands=result.notes,
        quality=_quantization_cost(check, result.folder, result.files, quant)
        if check is not None and quant is not None
        else None,
    )


def _quality_request(
    source: ExportSource, request: ExportRequest, settings: Settings
) -> EvalRequest:
    """The evaluation request of the completed run whose held-out prompts measure the
    quantisation; refused up front, before any export work."""
    if request.format not in GGUF_FORMATS:
        raise ExportError(
            f"The quality check compares a GGUF with its source, not a {request.format} export.",
            hint="Use --format gguf or ollama with --check-quality.",
        )
    job_id = source.meta.get("job_id")
    if source.kind == "base" or not job_id:
        raise ExportError(
            f"{source.name} is not a fine-tuned run: it has no held-out prompts to check on.",
            hint="Export a run with --check-quality, or drop the check.",
        )
    job = queries.get_job(get_store(settings.db_path), str(job_id))
    return request_for_job(job, settings)  # a run with no model or no plan is refused here


def _quantization_cost(check: EvalRequest, folder: Path, files: list[str], quant: str) -> QuantCost:
    gguf = next(name for name in files if name.endswith(".gguf"))
    return quantization_cost(check, folder / gguf, quant)


def _training_footprint(source: ExportSource, settings: Settings) -> dict[str, Any]:
    """The run's energy and CO₂ from its CodeCarbon record; the run folder's copy otherwise."""
    meta = source.meta
    energy, emissions = meta.get("energy_kwh"), meta.get("emissions_kg")
    job_id = meta.get("job_id")
    if job_id:
        try:
            job = training.get(str(job_id), settings=settings)
        except GardenError:
            return {"energy_kwh": energy, "emissions_kg": emissions}
        energy = job.energy_kwh if job.energy_kwh is not None else energy
        emissions = job.emissions_kg if job.emissions_kg is not None else emissions
    return {"energy_kwh": energy, "emissions_kg": emissions}


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return None


class WebExportRequest(View):
    """An export asked for over the web: no folder and no push (a push would use the server's
    Hub token; the CLI does that). A merged or Ollama export is always zipped so it can be
    downloaded."""

    model: str = Field(description="A fine-tuned run or any listed model id or name")
    format: ExportFormat
    quant: GgufQuant | None = Field(None, description=QUANT_HELP)
    check_quality: bool = Field(
        False, description="Also report the GGUF's ROUGE-L next to the unquantized run's"
    )

    def request(self) -> ExportRequest:
        return ExportRequest(
            model=self.model,
            format=self.format,
            quant=self.quant,
            bundle=True,
            check_quality=self.check_quality,
        )


DOWNLOAD_SUFFIXES = (".zip", ".gguf")


def download_path(relative: str, *, settings: Settings | None = None) -> Path:
    """The export file ``relative`` (to the exports folder, as in ``ExportView.download``'s tail)
    names; ``ExportError`` for anything else, so the web can only fetch finished exports."""
    root = resolve(settings).exports_root.resolve()
    candidate = (root / relative).resolve()
    if (
        candidate.is_relative_to(root)
        and candidate != root
        and candidate.suffix in DOWNLOAD_SUFFIXES
        and candidate.is_file()
    ):
        return candidate
    raise ExportError(
        f"There is no export file {relative[:80]!r}.",
        hint="POST /api/v1/exports makes one; its `download_url` names the file.",
    )


def download_name(view: ExportView, *, settings: Settings | None = None) -> str | None:
    """The export's download relative to the exports folder (what :func:`download_path` takes)."""
    if view.download_abs is None:
        return None
    return _relative(Path(view.download_abs), resolve(settings).exports_root)


def export_for_web(request: WebExportRequest, *, settings: Settings | None = None) -> ExportView:
    """An export asked for over the web (the tab or the REST API): only a listed model, never a
    folder of the server a visitor names; no push; always a file to download. A public demo
    builds one export at a time."""
    from garden.services import visitors, web

    model = web.check_model(request.model, settings=settings) or request.model
    checked = request.model_copy(update={"model": model})
    with visitors.in_flight("export", settings=settings):
        return export(checked.request(), settings=settings)
