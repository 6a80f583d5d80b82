"""Synthesis: a chat dataset written by a teacher model from uploaded documents."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from garden.api.uploads import saved_upload
from garden.api.views import public
from garden.config import get_settings
from garden.services import synthesis
from garden.services.base import View
from garden.services.datasets import DatasetView
from garden.services.synthesis import DocumentSource, SynthesisRequest, SynthesisView

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


class SynthesisResult(View):
    """The pairs the teacher wrote (kept and dropped, with their support scores) and the
    dataset saved from the kept ones (None when none was kept)."""

    synthesis: SynthesisView
    dataset: DatasetView | None


@router.post(
    "/synthesize",
    status_code=201,
    summary="Synthesise a chat dataset from uploaded documents with a teacher model",
)
def synthesize(
    name: Annotated[str, Form(description="The name to save the dataset under")],
    files: Annotated[
        list[UploadFile] | None, File(description=".txt, .md or .pdf documents")
    ] = None,
    bundled: Annotated[
        list[str] | None, Form(description="Bundled example documents, by name")
    ] = None,
    teacher: Annotated[
        str | None, Form(description="A listed model, or an allowed endpoint's URL")
    ] = None,
    teacher_model: Annotated[str | None, Form(description="The endpoint's model")] = None,
    api_key: Annotated[str | None, Form(description="The endpoint's API key")] = None,
    n: Annotated[int, Form(description=f"Pairs wanted, 1 to {synthesis.MAX_N}")] = 50,
    max_new_tokens: Annotated[int, Form()] = 256,
    eval_fraction: Annotated[float, Form(ge=0.0, le=0.5)] = 0.1,
) -> SynthesisResult:
    settings = get_settings()
    with ExitStack() as stack:
        documents: list[DocumentSource | str] = [
            DocumentSource(kind="upload", value=str(stack.enter_context(saved_upload(f, settings))))
            for f in files or []
        ]
        documents += [DocumentSource(kind="bundled", value=value) for value in bundled or []]
        request = SynthesisRequest(
            documents=documents, name=name, n=n, teacher=teacher, teacher_model=teacher_model,
            api_key=api_key, max_new_tokens=max_new_tokens,
        )  # fmt: skip
        view = synthesis.synthesize(request, settings=settings)
        saved = synthesis.save_pairs(view, eval_fraction=eval_fraction) if view.kept else None
    return SynthesisResult(synthesis=view, dataset=public(saved) if saved else None)
