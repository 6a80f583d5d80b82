"""Exports: a run or any listed model as a zipped LoRA adapter, merged safetensors, GGUF or a
zipped Ollama folder (GGUF + Modelfile), with its model card; the file is then downloaded.
Pushing to the Hub is the CLI's (`model-garden export --push`), since it uses the server's
token."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import Field

from garden.api.errors import ApiError
from garden.api.views import find
from garden.errors import ExportError
from garden.services import export, models
from garden.services.base import View
from garden.services.export import WebExportRequest

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])
FILES = "/api/v1/exports/files/"


class ExportDone(View):
    """A finished export as the API shows it: no server paths, a URL to download it from."""

    model: str
    format: str
    quant: str | None
    files: list[str]
    size_bytes: int
    card: dict[str, object]
    download_url: str
    commands: list[str] = Field(
        default_factory=list, description="Ollama only: the commands to run in the unzipped folder"
    )
    quality: export.QuantCost | None = Field(
        None, description="With check_quality: ROUGE-L unquantized and quantized, same prompts"
    )


@router.post("", status_code=201, summary="Export a run or model (adapter, merged, GGUF or Ollama)")
def create(request: WebExportRequest) -> ExportDone:
    find(models.list_models(), request.model, "model", "/api/v1/models")
    done = export.export_for_web(request)
    shown = done.model_dump(
        include={"model", "format", "quant", "files", "size_bytes", "card", "commands", "quality"}
    )
    return ExportDone(**shown, download_url=FILES + (export.download_name(done) or ""))


@router.get("/files/{relative:path}", summary="Download an export's file")
def download(relative: str) -> FileResponse:
    try:
        path = export.download_path(relative)
    except ExportError as exc:
        raise ApiError(404, exc.message, hint=exc.hint) from exc
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")
