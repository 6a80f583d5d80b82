"""Datasets: list, inspect an upload, import (a file, a bundled sample, a hub id), get, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import ValidationError

from garden.api.errors import ApiError
from garden.api.uploads import saved_upload
from garden.api.views import find, public, public_list
from garden.config import get_settings
from garden.services import datasets
from garden.services.datasets import BundledSample, DatasetSource, DatasetView, InspectView
from garden.services.rest import UploadImportRequest, WebImportRequest, WebReadOptions

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

OPTIONS_HELP = (
    'How to read the file, as JSON: {"mapping": …, "max_seq_len": …, "model": …, '
    '"reasoning": "keep" | "drop"}'
)


def find_dataset(id_or_name: str) -> DatasetView:
    return find(datasets.list_datasets(), id_or_name, "dataset", "/api/v1/datasets")


def read_options(text: str | None) -> WebReadOptions:
    try:
        return WebReadOptions.model_validate_json(text or "{}")
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "options"
        raise ApiError(
            422, f"Invalid options: {where}: {problem['msg']}.", hint=OPTIONS_HELP
        ) from None


@router.get("", summary="List imported datasets, newest first")
def list_datasets() -> list[DatasetView]:
    return public_list(datasets.list_datasets())


@router.get("/samples", summary="List the bundled sample datasets")
def samples() -> list[BundledSample]:
    return datasets.bundled_samples()


@router.post(
    "/inspect",
    summary="Inspect an uploaded file without saving it",
)
def inspect_upload(
    file: Annotated[UploadFile, File(description="JSON, JSONL, CSV, Parquet or text (.gz too)")],
    options: Annotated[str | None, Form(description=OPTIONS_HELP)] = None,
    rendered_samples: Annotated[int, Form(ge=0, le=50)] = 10,
) -> InspectView:
    read = read_options(options).to_options()
    with saved_upload(file, get_settings()) as path:
        source = DatasetSource(kind="upload", value=str(path))
        return public(datasets.inspect(source, read, rendered_samples=rendered_samples))


@router.post("", status_code=201, summary="Import a bundled sample, a hub dataset or a copy")
def import_dataset(request: WebImportRequest) -> DatasetView:
    return public(datasets.import_dataset(request.to_import()))


@router.post(
    "/upload",
    status_code=201,
    summary="Import an uploaded file",
)
def import_upload(
    file: Annotated[UploadFile, File(description="JSON, JSONL, CSV, Parquet or text (.gz too)")],
    name: Annotated[str, Form(description="The name to save it under")],
    options: Annotated[str | None, Form(description=OPTIONS_HELP)] = None,
    eval_fraction: Annotated[float, Form(ge=0.0, lt=1.0)] = 0.1,
    seed: Annotated[int, Form()] = 42,
    drop_invalid: Annotated[bool, Form()] = False,
) -> DatasetView:
    body = UploadImportRequest(
        name=name,
        options=read_options(options),
        eval_fraction=eval_fraction,
        seed=seed,
        drop_invalid=drop_invalid,
    )
    with saved_upload(file, get_settings()) as path:
        return public(datasets.import_dataset(body.to_import(path)))


@router.get("/{dataset_id}", summary="Get an imported dataset")
def get_dataset(dataset_id: str) -> DatasetView:
    return public(find_dataset(dataset_id))


@router.delete("/{dataset_id}", summary="Delete an imported dataset and its files")
def delete_dataset(dataset_id: str) -> DatasetView:
    return public(datasets.delete_dataset(find_dataset(dataset_id).id))
